// The export dialog: a camera and a span (prefilled from the timeline's selection, or typed as local
// start and end times), a preview that plays the span, and a download: the export route
// (clip.mp4?start=&end=, remuxed, cut at keyframes) fetched with its progress shown, then a link
// that saves the file. A refusal (429, 507) shows the server's own words.

import { ApiError } from "./api.js";
import { bytes, duration, h, setText } from "./ui.js";

const MAX_S = 3600; // the server's MAX_EXPORT_S
const pad = (n) => String(n).padStart(2, "0");

/** A datetime-local value (local time, to the second) from epoch seconds. */
export function localValue(t) {
  const d = new Date(Math.round(t) * 1000);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

const epoch = (v) => (v ? new Date(v).getTime() / 1000 : NaN);

/** { el, open({camera, start, end}), destroy(), onPick } — `play(camera, start, end)` previews a span. */
export function createExportDialog({ cameras, play }) {
  const camera = h("select", { id: "ex-camera", name: "camera" });
  const start = h("input", { type: "datetime-local", id: "ex-start", name: "start", step: "1" });
  const end = h("input", { type: "datetime-local", id: "ex-end", name: "end", step: "1" });
  const length = h("p", { class: "ex-length muted" });
  const preview = h("button", { type: "button", class: "ex-preview", text: "Preview" });
  const download = h("button", { type: "submit", class: "ex-download primary", text: "Download" });
  const close = h("button", { type: "button", class: "ex-close", "aria-label": "Close the export dialog", text: "×" });
  const progress = h("progress", { class: "ex-progress", max: "1", hidden: true });
  const status = h("p", { class: "ex-status", role: "status" });
  const link = h("a", { class: "ex-link button primary", hidden: true, text: "Save the file" });
  const form = h("form", { class: "export-form" },
    h("div", { class: "field" }, h("label", { for: "ex-camera", text: "Camera" }), camera),
    h("div", { class: "field field-date" }, h("label", { for: "ex-start", text: "Start" }), start),
    h("div", { class: "field field-date" }, h("label", { for: "ex-end", text: "End" }), end),
    length,
    h("div", { class: "ex-actions" }, preview, download),
    progress, status, link);
  const el = h("section", { class: "export-dialog panel", role: "dialog", "aria-labelledby": "ex-title", hidden: true },
    h("div", { class: "ex-head" }, h("h2", { id: "ex-title", text: "Export a span" }), close), form);
  let url = null;
  let abort = null;
  const api = { el, open, destroy, onPick: null };

  function span() {
    return [epoch(start.value), epoch(end.value)];
  }

  function check() {
    const [a, b] = span();
    const ok = Number.isFinite(a) && Number.isFinite(b) && b > a && b - a <= MAX_S;
    setText(length, ok ? `Length: ${duration(b - a)}` : Number.isFinite(a) && Number.isFinite(b) && b - a > MAX_S
      ? `At most ${duration(MAX_S)} at once` : "The end must be after the start");
    length.classList.toggle("ex-bad", !ok);
    preview.disabled = !ok;
    download.disabled = !ok;
    return ok ? [a, b] : null;
  }

  function reset() {
    abort?.abort();
    abort = null;
    if (url) URL.revokeObjectURL(url);
    url = null;
    link.hidden = true;
    progress.hidden = true;
    setText(status, "");
  }

  function open({ camera: cam, start: a, end: b }) {
    reset();
    const ids = cameras();
    camera.replaceChildren(...ids.map((c) => h("option", { value: c, text: c })));
    if (cam) camera.value = cam;
    start.value = localValue(a);
    end.value = localValue(b);
    check();
    el.hidden = false;
    el.scrollIntoView({ block: "nearest" });
  }

  form.addEventListener("input", () => {
    reset();
    const s = check();
    if (s && api.onPick) api.onPick(s);
  });
  preview.addEventListener("click", () => { const s = check(); if (s) play(camera.value, s[0], s[1]); });
  close.addEventListener("click", () => { reset(); el.hidden = true; });
  el.addEventListener("keydown", (ev) => { if (ev.key === "Escape") { reset(); el.hidden = true; } });

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const s = check();
    if (!s) return;
    reset();
    const [a, b] = s;
    const cam = camera.value;
    const ctl = new AbortController();
    abort = ctl;
    download.disabled = true;
    setText(status, "Making the export…");
    try {
      const href = `/api/cameras/${encodeURIComponent(cam)}/clip.mp4?start=${a}&end=${b}`;
      const resp = await fetch(href, { signal: ctl.signal });
      if (!resp.ok) {
        const body = await resp.json().catch(() => null);
        throw new ApiError(resp.status, body || { detail: resp.status === 404 ? "Nothing was recorded in that span." : `HTTP ${resp.status}` });
      }
      const total = Number(resp.headers.get("Content-Length")) || 0;
      const reader = resp.body.getReader();
      const chunks = [];
      let got = 0;
      progress.hidden = false;
      if (!total) progress.removeAttribute("value");
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        chunks.push(value);
        got += value.length;
        if (total) progress.value = got / total;
        setText(status, `Downloading… ${bytes(got)}${total ? ` of ${bytes(total)}` : ""}`);
      }
      url = URL.createObjectURL(new Blob(chunks, { type: "video/mp4" }));
      link.href = url;
      link.download = `${cam}-${localValue(a).replace(/[:T]/g, "-")}.mp4`;
      link.hidden = false;
      progress.value = 1;
      setText(status, `Ready: ${duration(b - a)}, ${bytes(got)}.`);
      link.focus();
    } catch (err) {
      if (err.name === "AbortError") return;
      progress.hidden = true;
      setText(status, `Cannot export: ${err.message}`);
    } finally {
      if (abort === ctl) abort = null;
      download.disabled = false;
    }
  });

  function destroy() {
    reset();
    el.remove();
  }
  return api;
}

// The review timeline: one row per camera over a chosen span (1 h, 6 h or 24 h, panned by the day),
// recordings as bars with their gaps left empty, events as marks at least MIN_MARK_PX wide (hover
// or focus one for its label, time and duration; click it to play it), and a "now" line.
//
// Clicking or dragging on a row plays that camera's recording at that moment: the player loads the
// recording that covers it and seeks to the offset inside it, following the pointer while it drags;
// the arrow keys move the playhead. Dragging on the time axis (or with Shift on a row) picks a span,
// which opens the export dialog. Times are the browser's local time.
//
// What is shown is loaded again every REFRESH_MS while the page is visible (never while hidden), and
// soon after the live feed says an event ended (a recording was finished).

import { api } from "./api.js";
import { createExportDialog } from "./exportdialog.js";
import { subscribe } from "./feed.js";
import { duration, h, query, setText } from "./ui.js";

export const ZOOMS = [["1 h", 3600], ["6 h", 21600], ["24 h", 86400]];
const DAY_S = 86400;
const REFRESH_MS = 15000;
const FEED_DELAY_MS = 1500; // an ended event's recording is finished a moment later
const TAP_TIP_MS = 4000;
const MAX_EVENTS = 500; // the most /api/events gives at once (web/events.py MAX_LIMIT)
const nowS = () => Date.now() / 1000;
const pad = (n) => String(n).padStart(2, "0");

/** "14:02:31" (local). */
export function hms(t) {
  const d = new Date(t * 1000);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** "Mon 7 Dec" (local). */
function day(t) {
  return new Date(t * 1000).toLocaleDateString(undefined, { weekday: "short", day: "numeric", month: "short" });
}

const recEnd = (r) => r.end_time ?? nowS();

/** The recording of `recs` covering t, else null. */
export function covering(recs, t) {
  return recs.find((r) => r.start_time <= t && t < recEnd(r)) || null;
}

/** The clip URL of a span of a camera's recordings. */
export const clipUrl = (camera, start, end) =>
  `/api/cameras/${encodeURIComponent(camera)}/clip.mp4${query({ start: start.toFixed(3), end: end.toFixed(3) })}`;

/**
 * A timeline in `root`. cameras: ids, or null for every camera /api/cameras lists.
 * Returns { refresh(), destroy() }.
 */
export function createTimeline(root, { cameras = null, zoom = 3600, refreshMs = REFRESH_MS } = {}) {
  let span = zoom;
  let end = nowS(); // the right edge; `live`: it follows now
  let live = true;
  let ids = cameras || [];
  const recs = new Map(); // camera -> recordings, oldest first
  let events = new Map(); // id -> event
  let playhead = null; // { camera, t }
  let selection = null; // [start, end]
  let loading = false;
  let timer = null;
  let feedTimer = null;
  let gen = 0;
  let tipTimer = null;
  let dragging = false; // a scrub or a selection: the span holds still under the pointer

  const zoomButtons = ZOOMS.map(([text, s]) => h("button", { type: "button", class: "tl-zoom", dataset: { zoom: s },
    "aria-pressed": String(s === span), text }));
  const earlier = h("button", { type: "button", class: "tl-earlier", text: "‹ Day before" });
  const later = h("button", { type: "button", class: "tl-later", text: "Day after ›" });
  const toNow = h("button", { type: "button", class: "tl-now-btn", text: "Now" });
  const exportBtn = h("button", { type: "button", class: "tl-export-btn", text: "Export…" });
  const spanText = h("p", { class: "tl-span muted", "aria-live": "polite" });
  const rows = h("div", { class: "tl-rows" });
  const axis = h("div", { class: "tl-axis", role: "group", "aria-label": "Time axis: drag to pick a span to export",
    title: "Drag here to pick a span to export" });
  const tip = h("div", { class: "tl-tip", role: "tooltip", id: `tl-tip-${Math.random().toString(36).slice(2)}`, hidden: true });
  const video = h("video", { class: "tl-video", controls: true, muted: true, playsinline: true, preload: "auto" });
  video.muted = true;
  const caption = h("p", { class: "tl-caption muted", role: "status", text: "Click or drag on a camera's row to play it." });
  const player = h("div", { class: "tl-player" }, video, caption);
  const dialog = createExportDialog({ cameras: () => ids, play: previewSpan });
  const section = h("div", { class: "timeline" },
    h("div", { class: "tl-toolbar" },
      h("div", { class: "tl-group", role: "group", "aria-label": "Zoom" }, ...zoomButtons),
      h("div", { class: "tl-group", role: "group", "aria-label": "Move" }, earlier, later, toNow),
      exportBtn),
    spanText,
    h("div", { class: "tl-body" }, rows, h("div", { class: "tl-axis-row" }, h("span", { class: "tl-name" }), axis), tip),
    h("p", { class: "tl-legend muted" }, h("span", { class: "tl-key tl-key-rec" }), " recorded ",
      h("span", { class: "tl-key tl-key-gap" }), " not recorded ", h("span", { class: "tl-key tl-key-event" }), " event"),
    player, dialog.el);
  root.append(section);

  const t0 = () => end - span;
  const pct = (t) => ((t - t0()) / span) * 100;

  /** The time under clientX on `el` (clamped to the span). */
  function timeAt(el, clientX) {
    const r = el.getBoundingClientRect();
    const f = Math.min(1, Math.max(0, (clientX - r.left) / Math.max(1, r.width)));
    return t0() + f * span;
  }

  // drawing
  function row(camera) {
    let el = rows.querySelector(`[data-camera="${CSS.escape(camera)}"]`);
    if (!el) {
      const track = h("div", { class: "tl-track", tabindex: "0", role: "slider", "aria-label": `Timeline of ${camera}`,
        "aria-valuemin": "0", "aria-valuemax": "100", dataset: { camera } });
      el = h("div", { class: "tl-row", dataset: { camera } }, h("span", { class: "tl-name", text: camera, title: camera }), track);
      wireTrack(track, camera);
      rows.append(el);
    }
    return el;
  }

  function draw() {
    const now = nowS();
    if (live && !dragging) end = now;
    const from = t0();
    Object.assign(section.dataset, { from: String(from), to: String(end), playhead: playhead ? String(playhead.t) : "" });
    setText(spanText, `${day(from)} ${hms(from).slice(0, 5)} – ${day(end) === day(from) ? "" : `${day(end)} `}${hms(end).slice(0, 5)}`
      + (live ? " (now)" : ""));
    later.disabled = live;
    for (const b of zoomButtons) b.setAttribute("aria-pressed", String(Number(b.dataset.zoom) === span));
    for (const el of [...rows.children]) if (!ids.includes(el.dataset.camera)) el.remove();
    if (!ids.length) rows.replaceChildren(h("p", { class: "muted tl-empty", text: "No cameras." }));
    else rows.querySelector(".tl-empty")?.remove();
    for (const camera of ids) {
      const track = row(camera).lastChild;
      const parts = [];
      for (const r of recs.get(camera) || []) {
        const a = Math.max(r.start_time, from);
        const b = Math.min(recEnd(r), end);
        if (b <= a) continue;
        const bar = h("span", { class: `tl-rec${r.in_progress ? " tl-rec-open" : ""}` });
        bar.style.left = `${pct(a)}%`;
        bar.style.width = `${((b - a) / span) * 100}%`;
        parts.push(bar);
      }
      for (const e of events.values()) {
        if (e.camera !== camera) continue;
        const eEnd = e.end_time ?? now;
        if (eEnd < from || e.start_time > end) continue;
        parts.push(mark(e, Math.max(e.start_time, from), Math.min(eEnd, end)));
      }
      if (!parts.length) parts.push(h("span", { class: "tl-none muted", text: "Nothing recorded in this span" }));
      if (now >= from && now <= end + 1) {
        const line = h("span", { class: "tl-nowline", "aria-hidden": "true" });
        line.style.left = `${pct(Math.min(now, end))}%`;
        parts.push(line);
      }
      if (selection && selection[1] > from && selection[0] < end) {
        const sel = h("span", { class: "tl-sel", "aria-hidden": "true" });
        sel.style.left = `${pct(Math.max(selection[0], from))}%`;
        sel.style.width = `${((Math.min(selection[1], end) - Math.max(selection[0], from)) / span) * 100}%`;
        parts.push(sel);
      }
      const head = h("span", { class: "tl-playhead", "aria-hidden": "true", hidden: !(playhead && playhead.camera === camera) });
      if (playhead) head.style.left = `${pct(playhead.t)}%`;
      parts.push(head);
      track.replaceChildren(...parts);
      track.setAttribute("aria-valuenow", String(playhead && playhead.camera === camera ? Math.round(pct(playhead.t)) : 0));
      track.setAttribute("aria-valuetext", playhead && playhead.camera === camera ? `${day(playhead.t)} ${hms(playhead.t)}` : "no time chosen");
    }
    drawAxis(from);
  }

  function drawAxis(from) {
    const step = { 3600: 600, 21600: 3600, 86400: 4 * 3600 }[span] || span / 6;
    const ticks = [];
    const off = -new Date(from * 1000).getTimezoneOffset() * 60; // ticks on the local hour (a +5:30 zone too)
    const first = Math.ceil((from + off) / step) * step - off;
    for (let t = first; pct(t) < 96; t += step) { // none cut off at the right edge
      const tick = h("span", { class: "tl-tick", text: hms(t).slice(0, 5) });
      tick.style.left = `${pct(t)}%`;
      ticks.push(tick);
    }
    if (selection) {
      const sel = h("span", { class: "tl-sel", "aria-hidden": "true" });
      sel.style.left = `${pct(Math.max(selection[0], from))}%`;
      sel.style.width = `${Math.max(0, (Math.min(selection[1], end) - Math.max(selection[0], from)) / span) * 100}%`;
      ticks.push(sel);
    }
    axis.replaceChildren(...ticks);
  }

  function mark(e, a, b) {
    const label = String(e.label ?? "event").slice(0, 80);
    const length = (e.end_time ?? nowS()) - e.start_time;
    const text = `${label} on ${e.camera}, ${day(e.start_time)} ${hms(e.start_time)}, ${e.end_time ? duration(length) : "in progress"}`;
    const el = h("button", { type: "button", class: `tl-event${e.end_time ? "" : " active"}`, "aria-label": text,
      "aria-describedby": tip.id, dataset: { id: e.id } });
    el.style.left = `${pct(a)}%`;
    el.style.width = `${((b - a) / span) * 100}%`;
    const show = () => {
      tip.replaceChildren(h("strong", { text: label }), h("span", { text: `${hms(e.start_time)} · ${e.end_time ? duration(length) : "in progress"}` }),
        h("span", { class: "muted", text: e.camera }));
      tip.hidden = false;
      place(el);
    };
    const hide = () => { clearTimeout(tipTimer); tip.hidden = true; };
    el.addEventListener("pointerenter", (ev) => {
      show();
      clearTimeout(tipTimer); // a finger leaves as it lifts: a tap's tip stays TAP_TIP_MS
      if (ev.pointerType === "touch") tipTimer = setTimeout(() => { tip.hidden = true; }, TAP_TIP_MS);
    });
    el.addEventListener("focus", show);
    el.addEventListener("pointerleave", (ev) => { if (ev.pointerType !== "touch") hide(); });
    el.addEventListener("blur", hide);
    el.addEventListener("pointerdown", (ev) => ev.stopPropagation()); // a click on a mark is not a scrub
    el.addEventListener("click", () => seek(e.camera, e.start_time, true));
    return el;
  }

  /** The tip above the mark's row (clear of the marks and the playhead under a finger), centred on the
   * mark but kept inside the timeline's box and the viewport; .tl-body's padding leaves it room. */
  function place(el) {
    const box = el.getBoundingClientRect();
    const body = tip.parentElement.getBoundingClientRect();
    const track = (el.closest(".tl-track") || el).getBoundingClientRect();
    tip.style.left = "0px"; // measured at full width, not squeezed by where it was last
    const width = tip.offsetWidth;
    const lo = Math.max(0, -body.left);
    const hi = Math.min(body.width, document.documentElement.clientWidth - body.left) - width;
    tip.style.left = `${Math.max(lo, Math.min(box.left - body.left + box.width / 2 - width / 2, hi))}px`;
    tip.style.top = `${Math.max(0, track.top - body.top - tip.offsetHeight - 6)}px`;
  }

  // playing
  function seek(camera, t, start = false) {
    playhead = { camera, t };
    const r = covering(recs.get(camera) || [], t);
    draw();
    if (!r) {
      video.pause();
      video.removeAttribute("src"); // a gap: the last recording's frames would tell a wrong time
      video.load();
      Object.assign(video.dataset, { key: "", camera: "", start: "" });
      setText(caption, `${camera} · ${day(t)} ${hms(t)}: nothing recorded then`);
      return;
    }
    const key = `${camera} ${r.start_time}`;
    const offset = Math.max(0, t - r.start_time);
    setText(caption, `${camera} · ${day(t)} ${hms(t)}`);
    if (video.dataset.key !== key) {
      Object.assign(video.dataset, { key, camera, start: String(r.start_time), span: "" });
      video.src = clipUrl(camera, r.start_time, r.end_time ?? nowS());
      video.addEventListener("loadedmetadata", () => {
        if (video.dataset.key === key) video.currentTime = Math.max(0, (playhead?.t ?? t) - r.start_time);
        if (start) video.play().catch(() => {});
      }, { once: true });
    } else {
      video.currentTime = offset;
      if (start) video.play().catch(() => {});
    }
  }

  function previewSpan(camera, a, b) {
    Object.assign(video.dataset, { key: `span ${camera} ${a} ${b}`, camera, start: String(a), span: "1" });
    video.src = clipUrl(camera, a, b);
    setText(caption, `Preview: ${camera} · ${hms(a)} – ${hms(b)}`);
    video.play().catch(() => {});
  }

  video.addEventListener("timeupdate", () => {
    if (!video.dataset.camera || video.seeking || dragging) return;
    playhead = { camera: video.dataset.camera, t: Number(video.dataset.start) + video.currentTime };
    const head = rows.querySelector(`[data-camera="${CSS.escape(playhead.camera)}"] .tl-playhead`);
    if (head) { head.hidden = false; head.style.left = `${pct(playhead.t)}%`; }
  });

  // pointer and keyboard
  function wireTrack(track, camera) {
    track.addEventListener("pointerdown", (ev) => {
      if (ev.button !== 0) return;
      if (ev.shiftKey) { selectFrom(track, ev); return; }
      ev.preventDefault();
      track.focus({ preventScroll: true });
      track.setPointerCapture(ev.pointerId);
      dragging = true;
      video.pause();
      seek(camera, timeAt(track, ev.clientX));
      const move = (m) => seek(camera, timeAt(track, m.clientX));
      const up = (u) => {
        dragging = false;
        track.removeEventListener("pointermove", move);
        seek(camera, timeAt(track, u.clientX), true);
      };
      track.addEventListener("pointermove", move);
      track.addEventListener("pointerup", up, { once: true });
      track.addEventListener("pointercancel", () => { dragging = false; track.removeEventListener("pointermove", move); }, { once: true });
    });
    track.addEventListener("keydown", (ev) => {
      const dir = { ArrowLeft: -1, ArrowRight: 1 }[ev.key];
      if (!dir) return;
      ev.preventDefault();
      const base = playhead && playhead.camera === camera ? playhead.t : end - span / 2;
      const t = Math.min(nowS(), Math.max(t0(), base + dir * span * (ev.shiftKey ? 0.1 : 0.01)));
      seek(camera, t, true);
    });
  }

  function selectFrom(el, ev) {
    ev.preventDefault();
    el.setPointerCapture(ev.pointerId);
    const a = timeAt(el, ev.clientX);
    dragging = true;
    selection = [a, a];
    const move = (m) => { const b = timeAt(el, m.clientX); selection = [Math.min(a, b), Math.max(a, b)]; draw(); };
    el.addEventListener("pointermove", move);
    el.addEventListener("pointerup", (u) => {
      el.removeEventListener("pointermove", move);
      move(u);
      dragging = false;
      if (selection[1] - selection[0] < 1) { selection = null; draw(); return; }
      selection = [Math.round(selection[0]), Math.round(selection[1])];
      draw();
      dialog.open({ camera: el.dataset.camera || playhead?.camera || ids[0], start: selection[0], end: selection[1] });
    }, { once: true });
  }
  axis.addEventListener("pointerdown", (ev) => { if (ev.button === 0) selectFrom(axis, ev); });

  for (const b of zoomButtons) b.addEventListener("click", () => {
    const s = Number(b.dataset.zoom);
    const focus = playhead && playhead.t >= t0() && playhead.t <= end ? playhead.t : null;
    span = s;
    if (focus !== null && !live) end = Math.min(nowS(), focus + s / 2);
    load();
  });
  earlier.addEventListener("click", () => { end -= DAY_S; live = false; load(); });
  later.addEventListener("click", () => { end += DAY_S; if (end >= nowS() - 1) live = true; load(); });
  toNow.addEventListener("click", () => { live = true; load(); });
  exportBtn.addEventListener("click", () => {
    const s = selection || (playhead ? [Math.round(playhead.t), Math.round(Math.min(nowS(), playhead.t + 120))]
      : [Math.round(end - 120), Math.round(end)]);
    dialog.open({ camera: playhead?.camera || ids[0], start: s[0], end: s[1] });
  });
  dialog.onPick = (s) => { selection = s; draw(); };

  // loading: bounded (one at a time, every REFRESH_MS), never while the page is hidden
  let again = false;
  let destroyed = false;
  async function load() {
    draw();
    if (loading) { again = true; return; } // once the one in flight answers: a new span, or fresher figures
    loading = true;
    again = false;
    const g = ++gen;
    clearTimeout(timer);
    try {
      if (!cameras) ids = (await api("/api/cameras")).map((c) => c.id);
      if (live && !dragging) end = nowS();
      const after = Math.floor(end - span);
      const before = Math.ceil(end);
      const [evs, ...lists] = await Promise.all([
        api(`/api/events${query({ camera: cameras?.length === 1 ? cameras[0] : undefined, after: after - 3600, before,
          limit: MAX_EVENTS })}`).catch(() => ({ events: [] })),
        ...ids.map((c) => api(`/api/cameras/${encodeURIComponent(c)}/recordings${query({ after, before })}`)
          .then((d) => d.recordings || []).catch(() => [])),
      ]);
      if (g !== gen) return;
      events = new Map(evs.events.filter((e) => !cameras || cameras.includes(e.camera)).map((e) => [e.id, e]));
      ids.forEach((c, i) => recs.set(c, lists[i]));
      section.dataset.loaded = String(Number(section.dataset.loaded || 0) + 1);
    } catch { /* kept as it was; the next round tries again */ } finally {
      loading = false;
      draw();
      if (again && !destroyed) load();
      else if (!destroyed) schedule();
    }
  }
  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(() => { if (!document.hidden) load(); }, refreshMs);
  }
  const onVisible = () => { if (!document.hidden) load(); };
  document.addEventListener("visibilitychange", onVisible);
  const stopFeed = subscribe((kind, e) => {
    if (cameras && !cameras.includes(e.camera)) return;
    if (kind === "deleted") events.delete(e.id);
    else events.set(e.id, { ...events.get(e.id), ...e });
    draw();
    if (kind === "end") { clearTimeout(feedTimer); feedTimer = setTimeout(() => { if (!document.hidden) load(); }, FEED_DELAY_MS); }
  });
  const nowTick = setInterval(() => { if (!document.hidden && live) draw(); }, 10000);

  load();
  return {
    refresh: load,
    destroy() {
      destroyed = true;
      gen += 1;
      clearTimeout(timer);
      clearTimeout(feedTimer);
      clearTimeout(tipTimer);
      clearInterval(nowTick);
      stopFeed();
      document.removeEventListener("visibilitychange", onVisible);
      dialog.destroy();
      video.removeAttribute("src");
      video.load();
      section.remove();
    },
  };
}

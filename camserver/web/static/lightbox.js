// The event lightbox (#/events/<id>): the clip when the event has one (it opens on it, the
// snapshot as its poster), the full snapshot with its box (toggle), details, previous/next, download and delete. A modal <dialog>: focus stays in
// it, Escape closes it, the arrow keys go to the previous and next event, Delete asks to delete.

import { ApiError, api, write } from "./api.js";
import { cameraName } from "./cameras.js";
import { dateTime, eventDuration, eventState, eventText, h, isolate, setText, short, snapshotUrl, stateBlock, title } from "./ui.js";

/** A label as part of a file name: letters, digits, "-", "_" and ".", at most 32 of them. */
function fileLabel(label) {
  return String(label ?? "").replace(/[^\w.-]+/g, "_").slice(0, 32) || "event";
}

function fileStamp(t) {
  const d = new Date(t * 1000);
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}${p(d.getMonth() + 1)}${p(d.getDate())}-${p(d.getHours())}${p(d.getMinutes())}${p(d.getSeconds())}`;
}

export function createLightbox({ lookup, neighbours, loadMore, deleted, closed, reviewHash }) {
  let current = null;
  let bbox = true;
  let showClip = false;
  let navigateOnClose = true;
  let destroyed = false;
  // whether the page itself navigated here (a card, a camera's event): closing then goes Back
  // to it; otherwise (the address was opened directly) closing shows the review list
  const self = { fromApp: false };

  const heading = h("h2", { id: "lb-title" });
  const img = h("img", { alt: "" });
  const video = h("video", { controls: true, preload: "metadata", playsinline: true, hidden: true });
  const media = h("div", { class: "lb-media" }, img, video);
  const loadingState = h("div", { class: "lb-state" });
  const tabs = h("div", { class: "lb-tabs", role: "group", "aria-label": "Show", hidden: true });
  const details = h("dl", { class: "lb-details" });
  const boxToggle = h("input", { type: "checkbox", id: "lb-box", checked: true });
  const prev = h("button", { type: "button", text: "← Previous", "aria-keyshortcuts": "ArrowLeft" });
  const next = h("button", { type: "button", text: "Next →", "aria-keyshortcuts": "ArrowRight" });
  const download = h("a", { class: "button", text: "Download" });
  const downloadClip = h("a", { class: "button", text: "Download clip", hidden: true });
  const del = h("button", { type: "button", class: "danger", text: "Delete…", "aria-keyshortcuts": "Delete" });
  const confirmYes = h("button", { type: "button", class: "danger", text: "Delete" });
  const confirmNo = h("button", { type: "button", text: "Keep it" });
  const confirmBox = h("div", { class: "lb-confirm", role: "group", "aria-labelledby": "lb-confirm-text", hidden: true },
    h("p", { id: "lb-confirm-text" }),
    h("div", { class: "row-actions" }, confirmYes, confirmNo));
  const message = h("p", { class: "form-message", role: "status" });
  const closeButton = h("button", { type: "button", class: "icon-button", "aria-label": "Close", text: "×" });
  const dialog = h("dialog", { class: "lightbox", "aria-labelledby": "lb-title" },
    h("div", { class: "lb-head" }, heading, closeButton),
    h("div", { class: "lb-body" },
      h("div", { class: "lb-view" }, media, loadingState, tabs),
      h("div", { class: "lb-side" }, details,
        h("label", { class: "switch", for: "lb-box" }, boxToggle, " Show the box"),
        h("div", { class: "row-actions" }, prev, next),
        h("div", { class: "row-actions" }, download, downloadClip, del),
        confirmBox, message)));
  document.body.append(dialog);

  function detail(label, value) {
    return [h("dt", { text: label }), h("dd", { text: value })];
  }

  function render() {
    const e = current;
    heading.textContent = `${isolate(title(short(e.label)))} · ${cameraName(e.camera)}`;
    details.replaceChildren(
      ...detail("Started", dateTime(e.start_time)),
      ...detail("Duration", eventDuration(e)),
      ...detail("State", eventState(e)),
      ...detail("Score", `${Math.round(e.score * 100)}% (best ${Math.round((e.top_score ?? e.score) * 100)}%)`),
      ...detail("Zones", (e.entered_zones || []).map((z) => isolate(short(z))).join(", ") || "none"),
      ...(e.stationary ? detail("Moving", "no: standing still") : []));
    const clip = Boolean(e.has_clip);
    tabs.hidden = !clip;
    tabs.replaceChildren(...(clip ? [
      h("button", { type: "button", "aria-pressed": String(!showClip), text: "Snapshot", onclick: () => { showClip = false; render(); } }),
      h("button", { type: "button", "aria-pressed": String(showClip), text: "Clip", onclick: () => { showClip = true; render(); } }),
    ] : []));
    const clipUrl = `/api/events/${encodeURIComponent(e.id)}/clip.mp4`;
    const playing = clip && showClip;
    video.hidden = !playing;
    if (playing && video.getAttribute("src") !== clipUrl) video.src = clipUrl;
    if (!playing && video.getAttribute("src")) { video.pause(); video.removeAttribute("src"); video.load(); }
    img.hidden = playing || !e.has_snapshot;
    // the clip opens on the event's best frame until it plays
    const poster = e.has_snapshot ? snapshotUrl(e, { bbox }) : "";
    if (video.getAttribute("poster") !== poster) { if (poster) video.poster = poster; else video.removeAttribute("poster"); }
    confirmBox.querySelector("p").textContent =
      `Delete this event${clip ? ", its snapshot and its clip" : " and its snapshot"}? This cannot be undone.`;
    if (e.has_snapshot) {
      const src = snapshotUrl(e, { bbox });
      if (img.getAttribute("src") !== src) img.src = src;
      img.alt = `${eventText(e)}${bbox ? ", its box drawn" : ""}`;
      loadingState.replaceChildren();
    } else if (!playing) {
      loadingState.replaceChildren(stateBlock("empty", "No picture for this event"));
    }
    download.hidden = !e.has_snapshot;
    download.href = snapshotUrl(e, { bbox });
    download.download = `${e.camera}-${fileLabel(e.label)}-${fileStamp(e.start_time)}.jpg`;
    downloadClip.hidden = !clip;
    downloadClip.href = clipUrl;
    downloadClip.download = `${e.camera}-${fileLabel(e.label)}-${fileStamp(e.start_time)}.mp4`;
    const n = neighbours(e.id);
    prev.disabled = !n.prev;
    next.disabled = !n.next && !n.more;
  }

  let opening = 0; // the latest open(): an answer for an earlier one is dropped

  async function open(id) {
    const ticket = ++opening;
    confirmBox.hidden = true;
    setText(message, "");
    const known = lookup(id);
    if (!dialog.open) dialog.showModal();
    const fresh = !current || current.id !== id;  // another event: it opens on its clip when it has one
    if (known) {
      current = known;
      if (fresh) showClip = Boolean(current.has_clip);
      render();
    } else {
      heading.textContent = "Event";
      img.hidden = true;
      loadingState.replaceChildren(stateBlock("loading", "Loading the event…"));
    }
    // the stored record: what the live feed does not carry (the clip) and the latest state
    try {
      const stored = await api(`/api/events/${encodeURIComponent(id)}`);
      if (ticket !== opening || !dialog.open) return;
      const hadClip = Boolean(known && known.has_clip);
      current = known ? Object.assign(known, stored) : stored;
      if (fresh && !hadClip) showClip = Boolean(current.has_clip);
      render();
    } catch (err) {
      if (ticket !== opening || known) return; // the known record stays on screen
      current = null;
      const gone = err instanceof ApiError && err.status === 404;
      loadingState.replaceChildren(stateBlock("error", gone ? "This event no longer exists" : "Cannot load the event", gone ? "" : err.message));
    }
  }

  async function go(step) {
    if (!current) return;
    let n = neighbours(current.id);
    if (step > 0 && !n.next && n.more) {
      await loadMore();
      n = neighbours(current.id);
    }
    const target = step > 0 ? n.next : n.prev;
    if (!target) return;
    open(target.id); // at once: a second key press must step from here, before the route catches up
    location.replace(`#/events/${encodeURIComponent(target.id)}`);
  }

  async function remove() {
    if (!current) return;
    const e = current;
    // where to go next, before the request: the live feed's `delete` may drop it from the list first
    const n = neighbours(e.id);
    const target = n.next || n.prev;
    confirmYes.disabled = true;
    setText(message, "Deleting…");
    try {
      const done = await write(`/api/events/${encodeURIComponent(e.id)}`, { method: "DELETE" });
      if (done === null) { setText(message, "Not deleted."); return; }
      deleted(e);
      confirmBox.hidden = true;
      if (target) location.replace(`#/events/${encodeURIComponent(target.id)}`);
      else close(true);
    } catch (err) {
      setText(message, `Not deleted: ${err.message}`);
    } finally {
      confirmYes.disabled = false;
    }
  }

  /** Close; `navigate` puts the review list back in the address bar (not when the route closed it). */
  function close(navigate = true) {
    if (!dialog.open) return;
    navigateOnClose = navigate;
    dialog.close();
  }

  // every way of closing ends here: the close button, Escape, a route change, a delete
  dialog.addEventListener("close", () => {
    video.pause();
    if (destroyed) return;
    if (navigateOnClose) {
      if (self.fromApp) history.back(); // previous/next replaced the entry: Back leaves the lightbox
      else location.replace(reviewHash());
    }
    navigateOnClose = true;
    self.fromApp = false;
    closed(current && current.id);
  });
  closeButton.addEventListener("click", () => close(true));
  prev.addEventListener("click", () => go(-1));
  next.addEventListener("click", () => go(1));
  boxToggle.addEventListener("change", () => { bbox = boxToggle.checked; if (current) render(); });
  del.addEventListener("click", () => { confirmBox.hidden = false; confirmNo.focus(); });
  confirmNo.addEventListener("click", () => { confirmBox.hidden = true; del.focus(); });
  confirmYes.addEventListener("click", remove);
  dialog.addEventListener("keydown", (ev) => {
    if (ev.target.closest("input, select, textarea, video")) return;
    if (ev.key === "ArrowLeft") { ev.preventDefault(); go(-1); }
    else if (ev.key === "ArrowRight") { ev.preventDefault(); go(1); }
    else if (ev.key === "Delete") { ev.preventDefault(); confirmBox.hidden = false; confirmNo.focus(); }
  });

  return Object.assign(self, {
    open,
    close,
    isOpen: () => dialog.open,
    refresh(e) { if (current && current.id === e.id && dialog.open) { current = e; render(); } }, // e: merged by the list
    destroy() { destroyed = true; if (dialog.open) dialog.close(); dialog.remove(); },
  });
}

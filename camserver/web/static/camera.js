// The camera view: the large stream (boxes on/off, zones over it), what is detected now, the
// camera's figures, its recent events and its timeline (timeline.js, the Review view's, for this one
// camera: 24 h at first, events as marks, recordings' gaps, scrubbing, the export dialog); the board's
// settings and the recordings appear when the server has those APIs.

import { api, on, optional } from "./api.js";
import { cameraState, pollCameras, stopImage, streamUrl } from "./cameras.js";
import { onResync, subscribe } from "./feed.js";
import { settingsPanel } from "./settings.js";
import { createTimeline } from "./timeline.js";
import { NONE, bytes, clock, eventDuration, eventText, h, isNum, labelEl, num, now, query, setText, snapshotUrl, stateBlock,
  when } from "./ui.js";
import { zoneOverlay } from "./zones.js";

const DAY_S = 86400;
const RECENT = 8;

/** Signal strength in words (ESP32 RSSI in dBm; 0 means the board did not say). */
function rssiText(rssi) {
  if (!isNum(rssi) || rssi === 0) return NONE;
  const word = rssi >= -60 ? "good" : rssi >= -75 ? "fair" : "weak";
  return `${rssi} dBm (${word})`;
}

/** Motion as /api/cameras gives it: a boolean, or an object with `active` and the moving share. */
function motionText(motion) {
  if (motion === undefined || motion === null) return null;
  if (typeof motion === "boolean") return motion ? "yes" : "none";
  const active = motion.active ?? motion.motion ?? motion.detected;
  const share = motion.share ?? motion.area ?? motion.ratio;
  if (!active) return "none";
  return typeof share === "number" ? `${Math.round(share * 100)}% of the frame moves` : "yes";
}

const RECORDINGS_MS = 15000;

export function create(root, route, app) {
  const id = route.arg;
  const enc = encodeURIComponent(id);
  let raw = false;
  let reconnects = 0;
  let known = false;
  const events = new Map();

  const badge = h("span", { class: "badge" });
  const title = h("h1", { id: "cam-title", text: id });
  const img = h("img", { alt: `Live picture of ${id}, with detection boxes` });
  const overlay = zoneOverlay();
  const frame = h("div", { class: "frame frame-large" }, img, overlay.el);
  const boxes = h("input", { type: "checkbox", id: "opt-boxes", checked: true });
  const zonesToggle = h("input", { type: "checkbox", id: "opt-zones" });
  const zonesLabel = h("label", { class: "switch", for: "opt-zones", hidden: true }, zonesToggle, " Zones");
  const nowList = h("p", { class: "detections live-figure" }, "–");
  const motionRow = h("p", { class: "motion live-figure", hidden: true });
  const figures = h("dl", { class: "figures live-figure" });
  const recent = h("ul", { class: "mini-events" });
  const recentStatus = h("div", {}, stateBlock("loading", "Loading events…"));
  const timelinePanel = h("section", { class: "panel", "aria-labelledby": "tl-title" },
    h("h2", { id: "tl-title", text: "Timeline" }));
  let timeline = null; // created once the camera is known (an unknown one's recordings would only answer 404)
  const recordings = h("section", { class: "panel", "aria-labelledby": "rec-title", hidden: true },
    h("h2", { id: "rec-title", text: "Recordings" }));
  const settings = h("section", { class: "panel", "aria-labelledby": "settings-title", hidden: true });
  const notFound = h("div", {});

  root.append(h("section", { class: "view view-camera", "aria-labelledby": "cam-title" },
    h("div", { class: "view-head" },
      h("a", { class: "back", href: "#/live", text: "← Live" }),
      title, badge),
    notFound,
    h("div", { class: "camera-layout" },
      h("div", { class: "camera-main" },
        frame,
        h("div", { class: "toolbar" },
          h("label", { class: "switch", for: "opt-boxes" }, boxes, " Boxes"),
          zonesLabel,
          h("a", { class: "button", href: `#/zones/${enc}`, text: "Zones and masks" }),
          h("a", { class: "button", href: streamUrl(id, { snapshot: true }), download: `${id}.jpg`, text: "Snapshot" })),
        timelinePanel,
        recordings),
      h("div", { class: "camera-side" },
        h("section", { class: "panel", "aria-labelledby": "now-title" },
          h("h2", { id: "now-title", text: "Now" }), nowList, motionRow),
        h("section", { class: "panel", "aria-labelledby": "fig-title" },
          h("h2", { id: "fig-title", text: "Figures" }), figures),
        h("section", { class: "panel", "aria-labelledby": "recent-title" },
          h("h2", { id: "recent-title", text: "Recent events" }), recentStatus, recent,
          h("a", { href: `#/review?camera=${enc}`, text: `All events of ${id} →` })),
        settings))));

  function play() {
    img.src = streamUrl(id, { raw, n: reconnects });
    img.alt = `Live picture of ${id}${raw ? "" : ", with detection boxes"}`;
  }
  boxes.addEventListener("change", () => { raw = !boxes.checked; if (known) play(); });
  zonesToggle.addEventListener("change", () => overlay.show(zonesToggle.checked));

  const figureRows = new Map();
  function figure(label, value) {
    let row = figureRows.get(label);
    if (!row) {
      const dd = h("dd");
      figures.append(h("dt", { text: label }), dd);
      row = dd;
      figureRows.set(label, row);
    }
    setText(row, value);
  }

  function renderCamera(cams, error) {
    if (error) return;
    const cam = cams.find((c) => c.id === id);
    if (!cam) {
      if (!known) notFound.replaceChildren(stateBlock("error", `No camera “${id}”`, "It may have been forgotten, or the link is wrong."));
      return;
    }
    if (!known) {  // not before: an unknown camera's stream, settings and recordings would only answer 404
      play();
      settingsPanel(settings, id);
      loadRecordings();
      timeline = createTimeline(timelinePanel, { cameras: [id], zoom: DAY_S });
    }
    known = true;
    notFound.replaceChildren();
    setText(title, cam.name || cam.id);
    title.title = cam.name && cam.name !== cam.id ? `camera id: ${cam.id}` : "";
    const state = cameraState(cam);
    setText(badge, state.text);
    badge.className = `badge badge-${state.key}`;
    if (cam.width && cam.height) frame.style.setProperty("--ar", String(cam.width / cam.height));
    const status = cam.status || {};
    figure("Frames in", num(cam.fps_in, 1, "fps"));
    figure("Frames out", num(cam.fps_out, 1, "fps"));
    figure("Inference", num(cam.inference_ms, 1, "ms"));
    figure("Received", num(cam.frames_received));
    if (cam.frames_detected !== undefined) figure("Detected", num(cam.frames_detected));
    figure("Processed", num(cam.frames_processed));
    figure("Dropped", num(cam.frames_dropped));
    figure("Rejected", num(cam.frames_rejected));
    figure("Viewers", num(cam.viewers));
    figure("Picture", isNum(cam.width) && isNum(cam.height) ? `${cam.width} × ${cam.height}` : NONE);
    // the board's own figures: whatever its status said, so each is shown only when it is a number
    figure("Signal", rssiText(status.rssi));
    figure("Free heap", status.free_heap ? bytes(status.free_heap) : NONE);
    figure("Board sends", num(status.fps_sent, 1, "fps"));
    if (status.reconnects !== undefined) figure("Reconnects", num(status.reconnects));
    // the firmware's status: its version, a rolled-back update, a quality its frame buffer cannot take
    if (typeof status.firmware === "string") {
      figure("Firmware", status.ota === "rolled_back" ? `${status.firmware} (the last update was rolled back)` : status.firmware);
    }
    if (status.quality_refused !== undefined) {
      figure("JPEG quality", `${status.quality} (${status.quality_refused} does not fit the board's frame buffer)`);
    } else if (figureRows.has("JPEG quality")) {
      figure("JPEG quality", status.quality !== undefined ? String(status.quality) : "–");  // no longer refused
    }
    const motion = motionText(cam.motion);
    motionRow.hidden = motion === null;
    if (motion !== null) setText(motionRow, `Motion: ${motion}`);
    refreshDetections(cam);
  }

  let shownDetections = "";
  async function refreshDetections(cam) {
    if (!cam.connected) { shownDetections = ""; setText(nowList, "Camera not connected"); return; }
    try {
      const d = await api(`/api/cameras/${enc}/detections`);
      const key = JSON.stringify(d.detections.map((x) => [x.class_name, Math.round(x.confidence * 100)]));
      if (key === shownDetections) return;  // no needless layout work on every poll
      shownDetections = key;
      if (!d.detections.length) { nowList.textContent = "Nothing detected"; return; }
      // each label in its own <bdi>: a right-to-left override in one does not turn the line around
      nowList.replaceChildren("Detected: ", ...d.detections.flatMap((x, i) => [i ? ", " : "",
        labelEl(x.class_name, {}, false), ` ${num(x.confidence * 100)}%`]));
    } catch { /* the next poll tries again */ }
  }

  // recent events and the timeline
  function renderEvents() {
    const list = [...events.values()].sort((a, b) => b.start_time - a.start_time);
    recent.replaceChildren(...list.slice(0, RECENT).map((e) => h("li", {},
      h("a", { href: `#/events/${encodeURIComponent(e.id)}` },
        h("span", { class: "thumb" }, e.has_snapshot
          ? h("img", { src: snapshotUrl(e, { crop: true, height: 96 }), alt: eventText(e), loading: "lazy" })
          : h("span", { class: "no-thumb", text: "no picture" })),
        h("span", { class: "mini-text" },
          h("strong", {}, labelEl(e.label)), ` ${when(e.start_time)}`,
          h("span", { class: "muted", text: e.end_time ? ` · ${eventDuration(e)}` : " · in progress" }))))));
    if (!list.length) recentStatus.replaceChildren(stateBlock("empty", "No events yet"));
    else recentStatus.replaceChildren();
  }

  async function loadEvents() {
    if (!app.info.events_enabled) {
      recentStatus.replaceChildren(stateBlock("empty", "Events are off (events.enabled = false)"));
      return;
    }
    try {
      const data = await api(`/api/events${query({ camera: id, after: Math.floor(now() - DAY_S), limit: 500 })}`);
      for (const e of data.events) events.set(e.id, e);
      if (!data.events.length) {
        const older = await api(`/api/events${query({ camera: id, limit: RECENT })}`);
        for (const e of older.events) events.set(e.id, e);
      }
      renderEvents();
    } catch (err) {
      recentStatus.replaceChildren(stateBlock("error", "Cannot load events", err.message));
    }
  }

  // recordings (the recording API): the latest segments as a list (the timeline draws them all)
  async function loadRecordings() {
    const after = Math.floor(now() - DAY_S);
    let data;
    try {
      data = await optional(`/api/cameras/${enc}/recordings${query({ after, before: Math.ceil(now()) })}`,
        "/api/cameras/{}/recordings");
    } catch { return; }
    if (data === null) return;
    const segments = Array.isArray(data) ? data : data.recordings || data.segments || [];
    recordings.hidden = false;
    const items = segments.slice(-10).reverse().map((s) => {
      const from = s.start ?? s.start_time;
      const to = s.end ?? s.end_time;
      const href = s.url || `/api/cameras/${enc}/clip.mp4${query({ start: from, end: to })}`;
      return h("li", {}, h("a", { href, target: "_blank", rel: "noopener", text: `${when(from)} – ${to ? clock(to) : "now"}` }));
    });
    recordings.replaceChildren(h("h2", { id: "rec-title", text: "Recordings" }),
      items.length ? h("ul", { class: "plain-list" }, ...items) : stateBlock("empty", "Nothing recorded in the last 24 hours"));
  }

  async function loadZones() {
    try {
      const shapes = await api(`/api/zones?camera=${enc}`);
      overlay.setShapes(shapes);
      zonesLabel.hidden = !(shapes.zones || []).length;
    } catch { /* no overlay */ }
  }

  const stopPoll = pollCameras(renderCamera);
  const stopFeed = subscribe((kind, e) => {
    if (e.camera !== id) return;
    if (kind === "deleted") events.delete(e.id); else events.set(e.id, e);
    renderEvents();
    if (kind === "end" && known) loadRecordings();
  });
  const stopConn = on("connection", (online) => {
    if (!online || !known) return;
    reconnects += 1;
    play();
  });
  // recordings grow while the page is open: a new segment shows within RECORDINGS_MS (and at once when an event ends)
  const recTick = setInterval(() => { if (known && !document.hidden) loadRecordings(); }, RECORDINGS_MS); // not while hidden
  // the feed reconnected (a restart, a dropped link): what it missed is loaded again
  const stopResync = onResync(() => {
    loadEvents();
    if (!known) return;
    loadRecordings();
    timeline?.refresh();
    settingsPanel(settings, id, { keepEdits: true });
  });
  loadEvents();
  loadZones();

  return {
    unmount() {
      stopPoll();
      stopFeed();
      stopConn();
      clearInterval(recTick);
      stopResync();
      timeline?.destroy();
      stopImage(img);
    },
  };
}

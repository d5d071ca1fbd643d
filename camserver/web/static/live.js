// Live: every camera as a tile (picture, name, state, fps, latest event), 1 to 16 of them.
//
// A browser opens at most 6 connections to one server over HTTP/1.1, and every MJPEG stream holds
// one for as long as it plays. So up to MAX_STREAMS tiles play their MJPEG stream; with more
// cameras every tile shows the camera's snapshot, refreshed each SNAPSHOT_MS, which leaves room
// for the page's own requests and its event feed.

import { api, connection, on } from "./api.js";
import { cameraState, pollCameras, stopImage, streamUrl } from "./cameras.js";
import { subscribe } from "./feed.js";
import { allMute, cameraMute } from "./mute.js";
import { eventDuration, h, labelEl, num, setText, stateBlock, title, when } from "./ui.js";

const MAX_STREAMS = 3; // with the event feed, 4 of the 6 connections; 2 stay free for requests
const SNAPSHOT_MS = 500;

export function create(root, _route, app) {
  const tiles = new Map(); // id -> tile record
  const latest = new Map(); // id -> latest event
  let reconnects = 0;
  let streaming = null; // whether the tiles play MJPEG (decided by the camera count)

  const count = h("p", { class: "view-sub", role: "status" });
  let stopPoll = null;
  const refresh = () => { stopPoll?.(); stopPoll = pollCameras(render); }; // a mute changed: show it now
  const muteAll = allMute(refresh);
  const grid = h("div", { class: "grid", "aria-live": "off" });
  const status = h("div", {}, stateBlock("loading", "Loading cameras…"));
  root.append(h("section", { class: "view view-live", "aria-labelledby": "live-title" },
    h("div", { class: "view-head" }, h("h1", { id: "live-title", text: "Live" }), count, muteAll.el),
    status, grid));

  function tileFor(cam) {
    let t = tiles.get(cam.id);
    if (t) return t;
    const href = `#/camera/${encodeURIComponent(cam.id)}`;
    const img = h("img", { alt: `Live picture of ${cam.id}`, decoding: "async" });
    const frame = h("div", { class: "frame" }, img);
    const badge = h("span", { class: "badge" });
    const fps = h("span", { class: "tile-fps live-figure" });
    const event = h("p", { class: "tile-event" }, h("span", { class: "muted", text: "No events yet" }));
    const mute = cameraMute(cam.id, refresh);
    const el = h("article", { class: "tile", dataset: { camera: cam.id } },
      h("a", { class: "tile-media", href, tabindex: "-1", "aria-hidden": "true" }, frame),
      h("div", { class: "tile-body" },
        h("h2", { class: "tile-name" }, h("a", { href, text: cam.id })), badge, mute.badge, fps),
      h("div", { class: "tile-foot" }, event, mute.menu));
    t = { el, img, frame, badge, fps, event, mute, timer: null, mode: null };
    tiles.set(cam.id, t);
    return t;
  }

  // the latest event of each camera: one request for the recent ones, then one at a time for
  // cameras still without (never a burst of requests that would hold every connection)
  let latestLoading = false;
  async function loadLatest(ids) {
    if (!app.info.events_enabled || latestLoading) return;
    latestLoading = true;
    try {
      const recent = await api("/api/events?limit=100");
      for (const e of recent.events.reverse()) showLatest(e);
      for (const id of ids) {
        if (latest.has(id) || !tiles.has(id)) continue;
        const data = await api(`/api/events?camera=${encodeURIComponent(id)}&limit=1`);
        if (data.events.length) showLatest(data.events[0]);
        else latest.set(id, null);
      }
    } catch { /* the tiles keep "No events yet"; the feed fills them in */ }
    latestLoading = false;
  }

  function showLatest(e) {
    const prev = latest.get(e.camera);
    if (prev && prev.id !== e.id && prev.start_time > e.start_time) return;
    latest.set(e.camera, e);
    const t = tiles.get(e.camera);
    if (!t) return;
    t.event.replaceChildren(
      h("a", { href: `#/events/${encodeURIComponent(e.id)}` },
        h("strong", {}, labelEl(e.label)), ` ${when(e.start_time)}`),
      e.end_time ? h("span", { class: "muted", text: ` · ${eventDuration(e)}` })
        : h("span", { class: "badge badge-active", text: "in progress" }));
  }

  function play(t, id) {
    clearTimeout(t.timer);
    if (streaming) {
      t.img.onload = t.img.onerror = null;
      t.img.src = streamUrl(id, { n: reconnects });
      return;
    }
    // snapshot mode: the next picture loads off screen and replaces the shown one once it is
    // decoded (no blank frame in between); then the one after is asked for
    t.img.onload = t.img.onerror = null;
    const next = () => {
      if (!tiles.has(id) || !connection.online) return;
      const pre = new Image();
      pre.src = streamUrl(id, { snapshot: true, n: Date.now() });
      pre.decode()
        .then(() => { if (tiles.get(id) === t && !streaming) t.img.src = pre.src; })
        .catch(() => {})
        .finally(() => { clearTimeout(t.timer); if (!streaming) t.timer = setTimeout(next, SNAPSHOT_MS); });
    };
    next();
  }

  function render(cams, error) {
    if (error) {
      if (!tiles.size) status.replaceChildren(stateBlock("error", "Cannot load the cameras", error.message));
      return;
    }
    status.replaceChildren();
    setText(count, cams.length === 1 ? "1 camera" : cams.length ? `${cams.length} cameras` : "");
    if (!cams.length) {
      const port = app.info.ingest_port || 3001;
      status.replaceChildren(stateBlock("empty", "No camera yet",
        `Point a camera at ws://${location.hostname}:${port}/ws/<camera_id> (the firmware's config.h), ` +
        "or start a simulated one: python -m camserver.sim"));
    }
    const wantStreams = cams.length <= MAX_STREAMS;
    const modeChanged = streaming !== wantStreams;
    streaming = wantStreams;
    grid.dataset.count = String(Math.min(cams.length, 16));
    muteAll.update(cams);
    const seen = new Set();
    cams.forEach((cam, i) => {
      seen.add(cam.id);
      const t = tileFor(cam);
      if (grid.children[i] !== t.el) grid.insertBefore(t.el, grid.children[i] || null);
      if (modeChanged || !t.img.getAttribute("src")) play(t, cam.id);
      const state = cameraState(cam);
      setText(t.badge, state.text);
      t.badge.className = `badge badge-${state.key}`;
      setText(t.fps, cam.connected ? num(cam.fps_in, 1, "fps") : "");
      t.mute.update(cam);
      if (cam.width && cam.height) t.frame.style.aspectRatio = `${cam.width} / ${cam.height}`;
      const e = latest.get(cam.id);
      if (e) showLatest(e);
    });
    const missing = cams.map((c) => c.id).filter((i) => !latest.has(i));
    if (missing.length) loadLatest(missing);
    for (const [id, t] of tiles) {
      if (seen.has(id)) continue;
      clearTimeout(t.timer);
      stopImage(t.img);
      t.el.remove();
      tiles.delete(id);
    }
  }

  stopPoll = pollCameras(render);
  const stopFeed = subscribe((kind, e) => {
    if (kind === "deleted") {
      if (latest.get(e.camera)?.id === e.id) {
        latest.delete(e.camera);
        tiles.get(e.camera)?.event.replaceChildren(h("span", { class: "muted", text: "No events yet" }));
        loadLatest([e.camera]);
      }
      return;
    }
    showLatest(e);
  });
  const stopConn = on("connection", (online) => {
    if (!online) return;
    // a stream that ended while the server was away stays frozen: open it again
    reconnects += 1;
    for (const [id, t] of tiles) play(t, id);
  });

  return {
    unmount() {
      stopPoll();
      stopFeed();
      stopConn();
      for (const t of tiles.values()) { clearTimeout(t.timer); stopImage(t.img); }
    },
  };
}

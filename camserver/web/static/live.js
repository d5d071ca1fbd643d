// Live: every camera as a tile (picture, name, state, fps, latest event), 1 to 16 of them.
//
// A browser opens at most 6 connections to one server over HTTP/1.1, so the tiles do not play one
// MJPEG stream each: one WebSocket (gridfeed.js) carries the frames of every tile on screen, and a
// tile scrolled out of view or a hidden page gets none. The fps on a tile is what it really drew.
// The grid fits the window: ceil(sqrt(n)) columns, rows as tall as the window allows.
// [groups] give a chip each above the grid ("All" first): a group's chip shows only its cameras
// (the others' tiles are removed, so they get no frames); the choice is kept in localStorage.

import { api, on } from "./api.js";
import { cameraState, pollCameras, stopImage } from "./cameras.js";
import { onResync, subscribe } from "./feed.js";
import { gridFeed, rateMenu, tilePicture } from "./gridfeed.js";
import { allMute, cameraMute } from "./mute.js";
import { eventDuration, h, labelEl, num, setText, stateBlock, title, when } from "./ui.js";

const FPS_MS = 1000; // how often a tile's drawn fps is shown again
const GROUP_KEY = "camserver.group"; // the group chosen last (localStorage)

function storedGroup() {
  try { return localStorage.getItem(GROUP_KEY) || ""; } catch { return ""; }
}

export function create(root, _route, app) {
  const tiles = new Map(); // id -> tile record
  const latest = new Map(); // id -> latest event
  const visible = new Set(); // ids of the tiles on screen
  const feed = gridFeed((id, blob) => tiles.get(id)?.pic.show(blob));
  const rate = rateMenu((fps) => feed.setFps(fps));

  const count = h("p", { class: "view-sub", role: "status" });
  let groups = []; // [{name, cameras}] of /api/groups
  let group = storedGroup(); // "" = all cameras
  let lastCams = null;
  const chips = h("div", { class: "group-chips", role: "group", "aria-label": "Camera groups", hidden: true });
  let stopPoll = null;
  const refresh = () => { stopPoll?.(); stopPoll = pollCameras(render); }; // a mute changed: show it now
  const muteAll = allMute(refresh);
  const grid = h("div", { class: "grid", "aria-live": "off" });
  const status = h("div", {}, stateBlock("loading", "Loading cameras…"));
  root.append(h("section", { class: "view view-live", "aria-labelledby": "live-title" },
    h("div", { class: "view-head" }, h("h1", { id: "live-title", text: "Live" }), count, rate, muteAll.el),
    chips, status, grid));

  function drawChips() {
    if (group && !groups.some((g) => g.name === group)) group = ""; // the group is gone: all cameras
    chips.hidden = !groups.length;
    chips.replaceChildren(...[{ name: "", cameras: null }, ...groups].map((g) => h("button", {
      type: "button", class: "group-chip", "aria-pressed": String(g.name === group), dataset: { group: g.name },
      text: g.name || "All", title: g.cameras ? `${g.cameras.length} camera${g.cameras.length === 1 ? "" : "s"}: ${g.cameras.join(", ")}` : "every camera",
      onclick: () => {
        group = g.name;
        try { localStorage.setItem(GROUP_KEY, group); } catch { /* private mode: not remembered */ }
        drawChips();
        if (lastCams) render(lastCams, null);
      },
    })));
  }

  async function loadGroups() {
    try {
      groups = (await api("/api/groups")).groups || [];
    } catch { return; } // the chips keep what they had
    drawChips();
    if (lastCams) render(lastCams, null);
  }

  function tileFor(cam) {
    let t = tiles.get(cam.id);
    if (t) return t;
    const href = `#/camera/${encodeURIComponent(cam.id)}`;
    const img = h("img", { alt: `Live picture of ${cam.name || cam.id}`, decoding: "async" });
    const frame = h("div", { class: "frame" }, img);
    const badge = h("span", { class: "badge" });
    const fps = h("span", { class: "tile-fps live-figure" });
    const event = h("p", { class: "tile-event" }, h("span", { class: "muted", text: "No events yet" }));
    const mute = cameraMute(cam.id, refresh);
    const name = h("a", { href, text: cam.name || cam.id });
    const el = h("article", { class: "tile", dataset: { camera: cam.id } },
      h("a", { class: "tile-media", href, tabindex: "-1", "aria-hidden": "true" }, frame),
      h("div", { class: "tile-body" },
        h("h2", { class: "tile-name" }, name), badge, mute.badge, fps),
      h("div", { class: "tile-foot" }, event, mute.menu));
    t = { el, img, frame, name, badge, fps, event, mute, pic: tilePicture(img), online: false };
    tiles.set(cam.id, t);
    seen.observe(el);
    return t;
  }

  // the latest event of each camera: one request for the recent ones, then one at a time for
  // cameras still without (never a burst of requests that would hold every connection)
  let latestLoading = false;
  async function loadLatest(ids, again = false) {
    if (!app.info.events_enabled || latestLoading) return;
    if (again) for (const id of ids) latest.delete(id);
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

  // the tiles on screen get frames; the others (scrolled away, or the page hidden) none
  const order = () => [...tiles.keys()].filter((id) => visible.has(id));
  const watch = () => feed.watch(document.hidden ? [] : order());
  const seen = new IntersectionObserver((entries) => {
    for (const e of entries) {
      const id = e.target.dataset.camera;
      if (e.isIntersecting) visible.add(id); else visible.delete(id);
    }
    watch();
  });
  document.addEventListener("visibilitychange", watch);
  const fpsTimer = setInterval(() => {
    for (const t of tiles.values()) setText(t.fps, t.online ? num(t.pic.fps(), 1, "fps") : "");
  }, FPS_MS);

  // columns = ceil(sqrt(n)); the rows share the window's height below the view's head (app.css)
  function fit(n) {
    const cols = Math.max(1, Math.ceil(Math.sqrt(n)));
    grid.style.setProperty("--cols", String(cols));
    grid.style.setProperty("--rows", String(Math.max(1, Math.ceil(n / cols))));
  }

  function render(all, error) {
    if (error) {
      if (!tiles.size) status.replaceChildren(stateBlock("error", "Cannot load the cameras", error.message));
      return;
    }
    lastCams = all;
    status.replaceChildren();
    const chosen = group ? groups.find((g) => g.name === group) : null;
    const cams = chosen ? all.filter((c) => chosen.cameras.includes(c.id)) : all;
    const n = (k) => (k === 1 ? "1 camera" : `${k} cameras`);
    setText(count, chosen ? `${cams.length} of ${n(all.length)}` : all.length ? n(all.length) : "");
    if (chosen && !cams.length && all.length) {
      status.replaceChildren(stateBlock("empty", `No camera of “${chosen.name}” is known yet`,
        `Its cameras (${chosen.cameras.join(", ") || "none"}) appear here once they connect; “All” shows every camera.`));
    } else if (!cams.length) {
      const port = app.info.ingest_port || 3001;
      status.replaceChildren(stateBlock("empty", "No camera yet",
        `Point a camera at ws://${location.hostname}:${port}/ws/<camera_id> (the firmware's config.h), ` +
        "or start a simulated one: python -m camserver.sim"));
    }
    grid.dataset.count = String(Math.min(cams.length, 16));
    muteAll.update(all);
    const present = new Set();
    cams.forEach((cam, i) => {
      present.add(cam.id);
      const t = tileFor(cam);
      if (grid.children[i] !== t.el) grid.insertBefore(t.el, grid.children[i] || null);
      const state = cameraState(cam);
      setText(t.name, cam.name || cam.id);
      t.img.alt = `Live picture of ${cam.name || cam.id}`;
      setText(t.badge, state.text);
      t.badge.className = `badge badge-${state.key}`;
      t.online = cam.connected;
      t.mute.update(cam);
      if (cam.width && cam.height) t.frame.style.aspectRatio = `${cam.width} / ${cam.height}`;
      const e = latest.get(cam.id);
      if (e) showLatest(e);
    });
    const missing = cams.map((c) => c.id).filter((i) => !latest.has(i));
    if (missing.length) loadLatest(missing);
    for (const [id, t] of tiles) {
      if (present.has(id)) continue;
      seen.unobserve(t.el);
      visible.delete(id);
      t.pic.stop();
      stopImage(t.img);
      t.el.remove();
      tiles.delete(id);
    }
    fit(cams.length);
    watch();
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
  const stopConn = on("connection", (online) => { if (online) feed.reopen(); }); // the server is back: at once
  // the feed reconnected: events may have started or ended meanwhile (a restart), so ask again
  const stopResync = onResync(() => { loadLatest([...tiles.keys()], true); loadGroups(); });
  loadGroups();

  return {
    unmount() {
      stopPoll();
      stopFeed();
      stopConn();
      stopResync();
      feed.close();
      seen.disconnect();
      clearInterval(fpsTimer);
      document.removeEventListener("visibilitychange", watch);
      for (const t of tiles.values()) { t.pic.stop(); stopImage(t.img); }
    },
  };
}

// What the live grid and the camera view share: the camera list poll, camera states, stream URLs.

import { api, on } from "./api.js";
import { clock, now } from "./ui.js";

const POLL_MS = 2000;
const names = new Map(); // camera id -> [cameras.<id>] name, from the latest /api/cameras

/** The name the page shows for a camera: its [cameras.<id>] name, else its id. */
export function cameraName(id) {
  return names.get(id) || id;
}

/** Keep the names of a /api/cameras answer for cameraName. */
export function rememberNames(cams) {
  for (const c of cams || []) names.set(c.id, c.name || c.id);
}
const STALE_S = 3; // the server shows "no frames" after the same silence

/** The camera's state for a badge: {key, text}. */
export function cameraState(c) {
  if (c.connected) {
    if (c.last_frame_age_s === null || c.last_frame_age_s === undefined) return { key: "waiting", text: "waiting for frames" };
    return c.last_frame_age_s < STALE_S ? { key: "live", text: "live" } : { key: "stale", text: "no frames" };
  }
  if (c.last_frame_age_s === null || c.last_frame_age_s === undefined) return { key: "waiting", text: "waiting" };
  return { key: "offline", text: `offline since ${clock(now() - c.last_frame_age_s)}` };
}

/** The MJPEG stream (or snapshot) URL of a camera; `n` makes a fresh URL after a reconnect. */
export function streamUrl(id, { raw = false, snapshot = false, n = 0 } = {}) {
  const q = new URLSearchParams();
  if (raw) q.set("raw", "1");
  if (n) q.set("n", String(n));
  const s = q.toString();
  return `/cameras/${encodeURIComponent(id)}/${snapshot ? "snapshot.jpg" : "stream.mjpg"}${s ? `?${s}` : ""}`;
}

/**
 * Poll /api/cameras every 2 s while something listens; call `fn(cameras, error)`.
 * Returns a function that stops it.
 */
export function pollCameras(fn) {
  let timer = null;
  let stopped = false;
  async function tick() {
    clearTimeout(timer);
    try {
      const cams = await api("/api/cameras");
      rememberNames(cams);
      if (!stopped) fn(cams, null);
    } catch (err) {
      if (!stopped) fn(null, err);
    }
    if (!stopped) timer = setTimeout(tick, POLL_MS);
  }
  const off = on("connection", (online) => { if (online) tick(); });
  tick();
  return () => { stopped = true; clearTimeout(timer); off(); };
}

/** Stop an <img> that shows an MJPEG stream: the browser closes the connection. */
export function stopImage(img) {
  if (img) img.src = "data:image/gif;base64,R0lGODlhAQABAAAAACH5BAEKAAEALAAAAAABAAEAAAICTAEAOw==";
}

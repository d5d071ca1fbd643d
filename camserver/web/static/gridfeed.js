// The live grid's one connection: a WebSocket to /api/grid.ws carrying every visible tile's frames.
//
// The page says which cameras it shows ({"cameras": [...], "fps": cap}); each binary message is
// [id length][camera id][JPEG]. A tile draws at most one picture at a time and keeps only the
// newest one waiting (a latest-frame slot, as on the server), so a busy page skips frames instead of
// queueing them, and counts the pictures it really drew: the fps a tile shows is that count.

import { h } from "./ui.js";

const RETRY_MS = 1000;
const WINDOW_MS = 2000; // the drawn-fps window

/** A tile's picture: draws JPEG blobs into `img`, newest first, counting what it drew. */
export function tilePicture(img) {
  let url = null;
  let waiting = null;
  let busy = false;
  const drawnAt = [];
  const pic = {
    drawn: 0,
    show(blob) {
      if (busy) { waiting = blob; return; }
      busy = true;
      const next = URL.createObjectURL(blob);
      const done = (ok) => {
        img.onload = img.onerror = null;
        if (url) URL.revokeObjectURL(url);
        url = next;
        if (ok) {
          pic.drawn += 1;
          drawnAt.push(performance.now());
          if (drawnAt.length > 128) drawnAt.shift();
          img.dataset.drawn = String(pic.drawn);
        }
        busy = false;
        if (waiting) { const b = waiting; waiting = null; pic.show(b); }
      };
      img.onload = () => done(true);
      img.onerror = () => done(false);
      img.src = next;
    },
    /** Pictures drawn per second over the last 2 s. */
    fps() {
      const now = performance.now();
      while (drawnAt.length && now - drawnAt[0] > WINDOW_MS) drawnAt.shift();
      return drawnAt.length / (WINDOW_MS / 1000);
    },
    stop() {
      waiting = null;
      img.onload = img.onerror = null;
      if (url) URL.revokeObjectURL(url);
      url = null;
    },
  };
  return pic;
}

/**
 * Open the grid's connection; `onFrame(id, blob)` gets each picture. `watch(ids)` changes what comes;
 * the connection reopens after a drop (`reopen()` at once, e.g. when the server is back).
 */
export function gridFeed(onFrame, { fps = 0 } = {}) {
  let ws = null;
  let ids = [];
  let retry = null;
  let closed = false;
  const decoder = new TextDecoder();

  function send() {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ cameras: ids, fps }));
  }

  function connect() {
    clearTimeout(retry);
    if (closed) return;
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const sock = new WebSocket(`${proto}//${location.host}/api/grid.ws`);
    ws = sock;
    sock.binaryType = "arraybuffer";
    sock.onopen = send;
    sock.onmessage = (m) => {
      if (!(m.data instanceof ArrayBuffer)) return;
      const bytes = new Uint8Array(m.data);
      const n = bytes[0];
      onFrame(decoder.decode(bytes.subarray(1, 1 + n)), new Blob([bytes.subarray(1 + n)], { type: "image/jpeg" }));
    };
    sock.onclose = () => {
      if (ws !== sock) return;
      ws = null;
      if (!closed) retry = setTimeout(connect, RETRY_MS);
    };
  }

  connect();
  return {
    watch(next) {
      const same = next.length === ids.length && next.every((id, i) => id === ids[i]);
      ids = next;
      if (!same) send();
    },
    /** Cap every tile at `cap` frames a second (0: each camera's own rate). */
    setFps(cap) {
      fps = cap;
      send();
    },
    reopen() {
      if (ws && ws.readyState <= WebSocket.OPEN) return;
      connect();
    },
    close() {
      closed = true;
      clearTimeout(retry);
      if (ws) { const s = ws; ws = null; s.close(); }
    },
  };
}

const RATES = [[0, "Full frame rate"], [5, "5 fps"], [2, "2 fps"], [1, "1 fps"]];
const RATE_KEY = "camserver.grid.fps";

/** The Live view's frame-rate menu (kept in this browser); calls `onPick(fps)` now and on each change. */
export function rateMenu(onPick) {
  const saved = Number(localStorage.getItem(RATE_KEY) || 0);
  const select = h("select", { class: "rate-menu", "aria-label": "Frame rate of the tiles", title: "Frame rate of the tiles" },
    RATES.map(([value, text]) => h("option", { value: String(value), text })));
  select.value = RATES.some(([v]) => v === saved) ? String(saved) : "0";
  select.addEventListener("change", () => {
    localStorage.setItem(RATE_KEY, select.value);
    onPick(Number(select.value));
  });
  onPick(Number(select.value));
  return select;
}

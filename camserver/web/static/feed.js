// The live event feed: one EventSource for the whole page, shared by every view.
//
// It opens at the position the server gave with the first event list (`last_event_id`), so it
// brings every change after that list and replays nothing older: an event deleted before the
// page loaded never comes back. On a dropped connection the browser resumes with Last-Event-ID.

import { api, probe } from "./api.js";

const subscribers = new Set();
const resyncs = new Set();
let opened = false; // the feed was open before: a later open is a reconnect
let source = null;
let retry = null;
let enabled = true;

/** Receive (kind, record) for "new", "update", "end", and "deleted" ({id, camera}: by this page or anyone). */
export function subscribe(fn) {
  subscribers.add(fn);
  return () => subscribers.delete(fn);
}

/**
 * Call `fn()` each time the feed reconnects (a dropped connection, a server restart): what changed
 * meanwhile came through no feed, so views load again what they show (events, recordings, settings).
 */
export function onResync(fn) {
  resyncs.add(fn);
  return () => resyncs.delete(fn);
}

/** Tell every subscriber about a change made by this page at once (the feed's `delete` follows; both are harmless). */
export function publish(kind, record) {
  for (const fn of [...subscribers]) fn(kind, record);
}

function open(position) {
  const url = `/api/events/stream${position ? `?last_event_id=${encodeURIComponent(position)}` : ""}`;
  source = new EventSource(url);
  source.addEventListener("open", () => {
    if (opened) for (const fn of [...resyncs]) fn();
    opened = true;
  });
  for (const kind of ["new", "update", "end"]) {
    source.addEventListener(kind, (message) => {
      const change = JSON.parse(message.data);
      publish(kind, change.after);
    });
  }
  // an event deleted by anyone (another page, the API): gone from every view
  source.addEventListener("delete", (message) => {
    const { id, camera } = JSON.parse(message.data);
    publish("deleted", { id, camera });
  });
  source.addEventListener("error", () => {
    probe(); // a dropped feed is often the first sign that the server went away
    if (source.readyState === EventSource.CLOSED) {
      // the server answered something that is not a stream (a 401, a 503): start again later
      source = null;
      clearTimeout(retry);
      retry = setTimeout(() => start(), 3000);
    }
  });
}

/** Open the feed (once). `events_enabled: false` on the server: no feed at all. */
export async function start(eventsEnabled = enabled) {
  enabled = eventsEnabled;
  if (!enabled || source) return;
  let position = null;
  try {
    position = (await api("/api/events?limit=1")).last_event_id;
  } catch {
    // unreachable or logged out: the retry below or the next login starts it
    clearTimeout(retry);
    retry = setTimeout(() => start(), 3000);
    return;
  }
  if (!source) open(position);
}

/** Close the feed (logout). */
export function stop() {
  clearTimeout(retry);
  if (source) source.close();
  source = null;
}

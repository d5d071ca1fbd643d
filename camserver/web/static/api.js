// Talking to the server: JSON requests, the connection monitor (the "server unreachable" banner),
// the login state, and writes that ask for the admin credential when the server wants one.

import { askSecret } from "./ui.js";

// How often /healthz is probed. A server that is down refuses at once: the banner shows within one
// poll. A probe that times out may only have queued behind the page's other requests (a browser
// opens 6 connections to a server, and streams hold some), so it takes two timeouts in a row.
const POLL_MS = 1500;
const PROBE_TIMEOUT_MS = 2000;
const ADMIN_KEY = "camserver.admin"; // sessionStorage: forgotten when the tab closes

/** The server answered with an HTTP error. */
export class ApiError extends Error {
  constructor(status, body) {
    super((body && (body.detail || body.error)) || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

/** The server could not be reached at all. */
export class Unreachable extends Error {}

const listeners = { connection: new Set(), health: new Set(), auth: new Set() };

/** Subscribe to "connection" (online: bool), "health" (/healthz JSON) or "auth" (login needed). */
export function on(kind, fn) {
  listeners[kind].add(fn);
  return () => listeners[kind].delete(fn);
}

function emit(kind, value) {
  for (const fn of [...listeners[kind]]) {
    try { fn(value); } catch (err) { console.warn("listener failed", err); }
  }
}

export const connection = { online: true, lostAt: null, health: null };

function setOnline(online) {
  if (online === connection.online) return;
  connection.online = online;
  connection.lostAt = online ? null : Date.now();
  document.body.classList.toggle("offline", !online);
  emit("connection", online);
}

let probeTimer = null;
let probing = false;
let timeouts = 0;

/** Ask /healthz now (and then every POLL_MS): any HTTP answer means the server is reachable. */
export async function probe() {
  if (probing) return;
  probing = true;
  clearTimeout(probeTimer);
  try {
    const resp = await fetch("/healthz", { cache: "no-store", signal: AbortSignal.timeout(PROBE_TIMEOUT_MS) });
    const health = await resp.json().catch(() => null);
    timeouts = 0;
    setOnline(true);
    if (health) {
      connection.health = health;
      emit("health", health);
    }
  } catch (err) {
    timeouts = err.name === "TimeoutError" ? timeouts + 1 : 0;
    if (err.name !== "TimeoutError" || timeouts >= 2) setOnline(false);
  } finally {
    probing = false;
    probeTimer = setTimeout(probe, POLL_MS);
  }
}

/** Start watching the server. */
export function startMonitor() {
  probe();
}

/** Tell the app that the credential is missing or no longer valid. */
export function authNeeded() {
  emit("auth", true);
}

/**
 * A JSON request. GETs that answer 401 make the app show its login form. Throws ApiError or
 * Unreachable (and then probes the server at once, so the banner does not wait for the next poll).
 * `login: false`: a 401 is the caller's to handle (write() asks for the admin token itself).
 */
export async function api(path, { method = "GET", body, timeout = 10000, headers = {}, login = true } = {}) {
  const init = { method, credentials: "same-origin", headers: { Accept: "application/json", ...headers } };
  if (method !== "GET") {
    // the server refuses writes that are not JSON (application/merge-patch+json for PATCH /api/config)
    init.headers["Content-Type"] = headers["Content-Type"] || "application/json";
    if (body !== undefined) init.body = JSON.stringify(body);
  }
  init.signal = AbortSignal.timeout(timeout);
  let resp;
  try {
    resp = await fetch(path, init);
  } catch (err) {
    probe();
    throw new Unreachable(`${path}: ${err.message}`);
  }
  const data = resp.status === 204 ? null : await resp.json().catch(() => null);
  if (!resp.ok) {
    if (resp.status === 401 && method === "GET" && login) authNeeded();
    throw new ApiError(resp.status, data);
  }
  return data;
}

let routes = null; // the server's API routes, "/api/cameras/{}/settings" style

/** Remember the routes /api/system lists. */
export function setRoutes(list) {
  routes = Array.isArray(list) ? new Set(list) : null;
}

/** Whether the server has this route (feature detection; true when it did not say). */
export function hasRoute(pattern) {
  return routes === null || routes.has(pattern);
}

/**
 * GET a route that another part of the server may not have yet (feature detection): null when
 * /api/system does not list `pattern`, or when the route answers 404.
 */
export async function optional(path, pattern) {
  if (pattern && !hasRoute(pattern)) return null;
  try {
    return await api(path);
  } catch (err) {
    if (err instanceof ApiError && [404, 405, 501].includes(err.status)) return null;
    throw err;
  }
}

/** Who this browser is, in words, from /api/session: "You are logged in as alice, a viewer". */
function viewerWords(session) {
  if (session && session.user) return `You are logged in as ${session.user}, a viewer`;
  if (session && session.via) return "You are logged in with the viewer token";
  return "Watching needs no login here";
}

/**
 * A write (POST, DELETE) with the admin credential when the server asks for one. An admin (the admin
 * token's or an admin user's session) is never asked. On 401 or 403 the user is asked once per tab
 * for the admin token (kept in sessionStorage, sent as a bearer header on writes only: the server
 * never takes it from a URL for a write), and the write is tried again. Where the server has no
 * admin token, only admin users, a viewer gets an ApiError saying so instead of a prompt. Resolves
 * to the JSON answer, or null when cancelled. A GET that only an admin may make (/api/config) goes this way too.
 */
export async function write(path, { method = "POST", body, headers = {} } = {}) {
  let error = "";
  for (;;) {
    const admin = sessionStorage.getItem(ADMIN_KEY);
    try {
      const auth = admin ? { Authorization: `Bearer ${admin}` } : {};
      return await api(path, { method, body, headers: { ...headers, ...auth }, login: false }); // write's own prompt
    } catch (err) {
      if (!(err instanceof ApiError) || ![401, 403].includes(err.status)) throw err;
      const session = await api("/api/session").catch(() => null);
      if (err.status === 401 && session && session.auth_required && !session.authenticated) {
        authNeeded();
        return null;
      }
      if (err.status === 403 && err.body && err.body.error === "cross-site request") throw err;
      const methods = (session && session.admin_methods) || [];
      const viewer = viewerWords(session);
      if (methods.includes("password") && !methods.includes("token")) { // no token to ask for
        throw new ApiError(403, { detail: `${viewer}: changing things needs an admin. Log out and log in as an admin user.` });
      }
      if (admin) {
        sessionStorage.removeItem(ADMIN_KEY);
        error = "That admin token was not accepted.";
      }
      const orUser = methods.includes("password") ? ", or log out and log in as an admin user" : "";
      const secret = await askSecret({
        heading: "Admin permission needed",
        text: `${viewer}: changing or deleting needs the admin token (http.admin_token in config.toml)${orUser}.`,
        error,
      });
      if (!secret) return null;
      sessionStorage.setItem(ADMIN_KEY, secret);
    }
  }
}

/** Forget the admin credential (logout). */
export function forgetAdmin() {
  sessionStorage.removeItem(ADMIN_KEY);
}

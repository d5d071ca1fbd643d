// camserver's page: hash routes (#/live, #/camera/<id>, #/review, #/events/<id>, #/zones/<id>,
// #/system, #/settings), the login, the banners (server unreachable, random model weights), the navigation.

import { api, connection, forgetAdmin, on, setRoutes, startMonitor } from "./api.js";
import * as camera from "./camera.js";
import * as feed from "./feed.js";
import * as live from "./live.js";
import { showLogin } from "./login.js";
import * as review from "./review.js";
import * as settings from "./settingsview.js";
import * as system from "./system.js";
import { clock, h, setText } from "./ui.js";
import * as zones from "./zones.js";

const VIEWS = { live, camera, review, events: review, zones, system, settings };
const NAV = { live: "live", camera: "live", zones: "live", review: "review", events: "review", system: "system", settings: "settings" };
const TITLES = { live: "Live", camera: "Camera", review: "Review", events: "Event", zones: "Zones", system: "System", settings: "Settings" };

const main = document.getElementById("main");
const app = {
  info: { events_enabled: true, ingest_port: 3001 },
  session: null,
  reviewQuery: "",
  navigated: false, // whether a route was already shown in this page (history.back() stays inside it)
  current: null, // {key, view}
  logout,
};

/** {name, arg, query} from "#/camera/door?x=1". */
export function parseRoute(hash) {
  const [path, q] = hash.replace(/^#\/?/, "").split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  return { name: parts[0] || "live", arg: parts[1], query: new URLSearchParams(q || "") };
}

function route() {
  if (!app.session || (app.session.auth_required && !app.session.authenticated)) return;
  if (location.hash && !location.hash.startsWith("#/")) return; // an in-page anchor, not a view
  const r = parseRoute(location.hash);
  if (!VIEWS[r.name] || (["camera", "zones", "events"].includes(r.name) && !r.arg)) {
    location.replace("#/live");
    return;
  }
  for (const a of document.querySelectorAll("[data-nav]")) {
    if (a.dataset.nav === NAV[r.name]) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  document.title = `${r.arg ? `${r.arg} · ` : ""}${TITLES[r.name]} · camserver`;
  const module = VIEWS[r.name];
  const key = module === review ? "review" : `${r.name}/${r.arg || ""}`;
  const cur = app.current;
  if (cur && cur.key === key && cur.view.update && cur.view.update(r)) {
    return; // the same view takes the new route itself (the lightbox, the review filters)
  }
  if (cur) cur.view.unmount();
  main.replaceChildren();
  app.current = { key, view: module.create(main, r, app) };
  app.navigated = true;
  if (r.name !== "events") main.focus({ preventScroll: true });
  window.scrollTo(0, 0);
}

// banners ----------------------------------------------------------------------------------------
const offlineBanner = document.getElementById("banner-offline");
const offlineText = document.getElementById("banner-offline-text");
const modelBanner = document.getElementById("banner-model");

on("connection", (online) => {
  offlineBanner.hidden = online;
  if (!online) setText(offlineText, `Server unreachable since ${clock(connection.lostAt / 1000)}: figures are frozen. Reconnecting…`);
});

on("health", (health) => {
  const random = Boolean(health.model_random_weights);
  modelBanner.hidden = !random;
  if (random) {
    setText(modelBanner, `The model ${health.model_name || ""} has random weights (a .yaml model): ` +
      "its boxes and events mean nothing. Start camserver with trained weights, e.g. --model yolo11n.pt.");
  }
});

// login --------------------------------------------------------------------------------------------
const logoutButton = document.getElementById("logout");
const settingsLink = document.getElementById("nav-settings");

async function loadSession() {
  try {
    app.session = await api("/api/session");
  } catch {
    app.session = null;
  }
  return app.session;
}

async function login() {
  if (app.current) { app.current.view.unmount(); app.current = null; }
  feed.stop();
  document.body.classList.add("logged-out");
  await showLogin(main, app.session || { methods: ["token"] });
  document.body.classList.remove("logged-out");
  await loadSession();
  await enter();
}

async function logout() {
  try { await api("/api/logout", { method: "POST" }); } catch { /* the cookie may be gone already */ }
  forgetAdmin();
  await loadSession();
  if (app.session && app.session.auth_required) login();
}

logoutButton.addEventListener("click", logout);
on("auth", async () => {
  if (document.body.classList.contains("logged-out")) return;
  const s = await loadSession();
  if (s && s.auth_required && !s.authenticated) login();
});

async function enter() {
  logoutButton.hidden = !(app.session && app.session.auth_required);
  // the Settings view is an admin's: a viewer sees no link (and the API answers 403)
  settingsLink.hidden = !(app.session && app.session.can_write);
  try {
    const info = await api("/api/system");
    app.info = { ...app.info, ...info };
    setRoutes(info.api);
  } catch { /* defaults */ }
  feed.start(app.info.events_enabled !== false);
  route();
}

async function boot() {
  startMonitor();
  // an old bookmark with ?token=: log in with it, then take it out of the address bar
  const params = new URLSearchParams(location.search);
  const token = params.get("token");
  if (token) {
    history.replaceState(null, "", location.pathname + location.hash);
    try { await api("/api/login", { method: "POST", body: { token } }); } catch { /* the form asks */ }
  }
  while (!(await loadSession())) {
    main.replaceChildren(h("div", { class: "state state-error", role: "alert" },
      h("p", { class: "state-title", text: "Cannot reach camserver" }),
      h("p", { class: "state-detail", text: "Trying again…" })));
    await new Promise((resolve) => { setTimeout(resolve, 2000); });
  }
  if (app.session.auth_required && !app.session.authenticated) login();
  else enter();
}

window.addEventListener("hashchange", route);
boot();

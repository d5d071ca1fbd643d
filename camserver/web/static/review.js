// Review: the event history as cards (large thumbnail of the object, camera, label, score, zones,
// start, duration, state), filtered by camera, label, zone and dates, a page at a time.
//
// The live feed patches the loaded list in place: a changed event is redrawn where it is, a new
// one that matches the filters is inserted in order, and the pages already loaded stay loaded.

import { api, on } from "./api.js";
import { cameraName, rememberNames } from "./cameras.js";
import { onResync, publish, subscribe } from "./feed.js";
import { createLightbox } from "./lightbox.js";
import { createTimeline } from "./timeline.js";
import { eventDuration, eventState, eventText, h, query, setText, short, snapshotUrl, stateBlock, title, when } from "./ui.js";

const PAGE = 30;
const FILTERS = ["camera", "label", "zone", "from", "to"];

/** epoch seconds from a datetime-local value ("" -> null). */
const epoch = (v) => (v ? new Date(v).getTime() / 1000 : null);

/** Whether event `e` passes the filters (the same rules as the server's query). */
export function matches(e, f) {
  if (f.camera && e.camera !== f.camera) return false;
  if (f.label && e.label !== f.label) return false;
  if (f.zone && !(e.entered_zones || []).includes(f.zone)) return false;
  const after = epoch(f.from);
  const before = epoch(f.to);
  if (after !== null && e.start_time < after) return false;
  if (before !== null && e.start_time >= before) return false;
  return true;
}

/** Newest first, as the server orders: start_time, then id, both descending. */
const newer = (a, b) => (a.start_time !== b.start_time ? a.start_time > b.start_time : a.id > b.id);

export function create(root, route, app) {
  // an event opened by its link: the list behind it keeps the last filters of this tab
  const initial = route.name === "events" ? new URLSearchParams(app.reviewQuery) : route.query;
  const filters = Object.fromEntries(FILTERS.map((k) => [k, initial.get(k) || ""]));
  let items = []; // events in list order
  const cards = new Map(); // id -> <li>
  let cursor = null;
  let loading = false;
  let generation = 0; // a response for older filters is dropped
  let facets = { cameras: [], labels: [], zones: [] };

  const count = h("p", { class: "view-sub", role: "status" });
  const selects = {
    camera: h("select", { id: "f-camera", name: "camera" }),
    label: h("select", { id: "f-label", name: "label" }),
    zone: h("select", { id: "f-zone", name: "zone" }),
  };
  const from = h("input", { type: "datetime-local", id: "f-from", name: "from", value: filters.from });
  const to = h("input", { type: "datetime-local", id: "f-to", name: "to", value: filters.to });
  const form = h("form", { class: "filters", role: "search", "aria-label": "Filter events" },
    h("div", { class: "field" }, h("label", { for: "f-camera", text: "Camera" }), selects.camera),
    h("div", { class: "field" }, h("label", { for: "f-label", text: "Label" }), selects.label),
    h("div", { class: "field" }, h("label", { for: "f-zone", text: "Zone" }), selects.zone),
    h("div", { class: "field field-date" }, h("label", { for: "f-from", text: "From" }), from),
    h("div", { class: "field field-date" }, h("label", { for: "f-to", text: "To" }), to),
    h("div", { class: "field field-button" }, h("button", { type: "reset", text: "Clear filters" })));
  const status = h("div", {});
  const list = h("ul", { class: "event-grid", "aria-label": "Events, newest first" });
  const more = h("button", { type: "button", class: "more", hidden: true, text: "Load more" });
  const end = h("p", { class: "muted list-end", hidden: true, text: "That is everything." });
  const timelinePanel = h("section", { class: "panel", "aria-labelledby": "timeline-title" },
    h("h2", { id: "timeline-title", text: "Timeline" }));
  root.append(h("section", { class: "view view-review", "aria-labelledby": "review-title" },
    h("div", { class: "view-head" }, h("h1", { id: "review-title", text: "Review" }), count),
    timelinePanel, form, status, list, h("div", { class: "more-row" }, more, end)));

  function fillSelect(key, values, allText, text = short) {
    const select = selects[key];
    const current = filters[key];
    const all = [...new Set([...values, ...(current ? [current] : [])])].sort();
    select.replaceChildren(h("option", { value: "", text: allText }), ...all.map((v) => h("option", { value: v, text: text(v) })));
    select.value = current;
  }

  async function loadFacets() {
    if (!app.info.events_enabled) return;
    try {
      const [f, cams, zones] = await Promise.all([
        api("/api/events/facets"), api("/api/cameras").catch(() => []), api("/api/zones").catch(() => ({ zones: [] })),
      ]);
      rememberNames(cams);
      facets = {
        cameras: [...new Set([...f.cameras, ...cams.map((c) => c.id)])],
        labels: f.labels,
        zones: [...new Set([...f.zones, ...(zones.zones || []).map((z) => z.name)])],
      };
    } catch { /* the lists keep what they have */ }
    renderFacets();
  }

  function renderFacets() {
    fillSelect("camera", facets.cameras, "All cameras", (id) => short(cameraName(id)));
    fillSelect("label", facets.labels, "All labels");
    fillSelect("zone", facets.zones, "All zones");
  }

  function fillCard(li, e) {
    li.dataset.state = e.end_time ? "ended" : "active";
    const link = li.firstChild;
    const img = link.querySelector("img");
    if (e.has_snapshot) {
      const src = snapshotUrl(e, { crop: true, height: 240 });
      if (img.getAttribute("src") !== src) img.src = src;
      img.alt = `${eventText(e)} (crop of the object)`;
      img.hidden = false;
      link.querySelector(".no-thumb").hidden = true;
    } else {
      img.hidden = true;
      link.querySelector(".no-thumb").hidden = false;
    }
    const label = link.querySelector(".card-label");
    setText(label, title(short(e.label)));
    if (String(e.label).length > 48) label.title = String(e.label).slice(0, 1000);
    setText(link.querySelector(".card-score"), `${Math.round((e.top_score ?? e.score) * 100)}%`);
    setText(link.querySelector(".card-camera"), cameraName(e.camera));
    setText(link.querySelector(".card-time"), when(e.start_time));
    setText(link.querySelector(".card-duration"), eventDuration(e));
    const state = link.querySelector(".card-state");
    setText(state, eventState(e));
    state.className = `card-state badge ${e.end_time ? "badge-ended" : "badge-active"}`;
    const zones = link.querySelector(".card-zones");
    zones.replaceChildren(...(e.entered_zones || []).map((z) => h("span", { class: "chip", text: z })));
    link.setAttribute("aria-label", `${eventText(e)}, ${eventDuration(e)}, ${eventState(e)}`);
  }

  function card(e) {
    const li = h("li", { class: "event-card", dataset: { id: e.id } },
      h("a", { href: `#/events/${encodeURIComponent(e.id)}`, class: "card-link" },
        h("span", { class: "card-thumb" }, h("img", { alt: "", loading: "lazy", decoding: "async" }),
          h("span", { class: "no-thumb", text: "no picture", hidden: true })),
        h("span", { class: "card-body" },
          h("span", { class: "card-title" }, h("strong", {}, h("bdi", { class: "card-label label" })), " ", h("span", { class: "card-score muted" })),
          h("span", { class: "card-meta" }, h("span", { class: "card-camera" }), " · ", h("time", { class: "card-time" }),
            " · ", h("span", { class: "card-duration" })),
          h("span", { class: "card-zones" }),
          h("span", { class: "card-state" }))));
    cards.set(e.id, li);
    fillCard(li, e);
    return li;
  }

  function renderCount() {
    const n = items.length;
    setText(count, n ? `${n} event${n === 1 ? "" : "s"}${cursor ? " loaded" : ""}` : "");
    more.hidden = !cursor;
    end.hidden = Boolean(cursor) || !n || n <= PAGE;
    if (!n && !loading) {
      const filtered = FILTERS.some((k) => filters[k]);
      status.replaceChildren(stateBlock("empty", filtered ? "Nothing matches these filters" : "No events yet",
        filtered ? "Clear or change the filters." : "Events appear here as soon as a camera sees something."));
    } else if (n) {
      status.replaceChildren();
    }
  }

  async function load(next = false) {
    if (loading || (next && !cursor)) return;
    if (!app.info.events_enabled) {
      status.replaceChildren(stateBlock("empty", "Events are off", "events.enabled = false in config.toml"));
      return;
    }
    loading = true;
    const gen = generation;
    if (!next) status.replaceChildren(stateBlock("loading", "Loading events…"));
    more.disabled = true;
    try {
      const data = await api(`/api/events${query({
        camera: filters.camera, label: filters.label, zone: filters.zone, after: epoch(filters.from),
        before: epoch(filters.to), limit: PAGE, cursor: next ? cursor : "",
      })}`);
      if (gen !== generation) return;
      if (!next) { items = []; cards.clear(); list.replaceChildren(); }
      for (const e of data.events) {
        if (cards.has(e.id)) continue; // the feed put it there already
        items.push(e);
        list.append(card(e));
      }
      cursor = data.next_cursor;
      status.replaceChildren();
    } catch (err) {
      if (gen === generation) status.replaceChildren(stateBlock("error", "Cannot load events", err.message));
    } finally {
      if (gen === generation) { loading = false; more.disabled = false; renderCount(); }
    }
  }

  function reset() {
    generation += 1;
    loading = false;
    cursor = null;
    load();
  }

  function onFilters() {
    filters.camera = selects.camera.value;
    filters.label = selects.label.value;
    filters.zone = selects.zone.value;
    filters.from = from.value;
    filters.to = to.value;
    app.reviewQuery = query(filters);
    history.replaceState(null, "", `#/review${app.reviewQuery}`); // shareable, no new history entry
    reset();
  }
  form.addEventListener("change", onFilters);
  form.addEventListener("reset", () => setTimeout(() => { for (const k of FILTERS) filters[k] = ""; renderFacets(); onFilters(); }));
  form.addEventListener("submit", (ev) => ev.preventDefault());
  more.addEventListener("click", () => load(true));

  // infinite scroll: the next page loads when the "more" row comes into view
  const observer = new IntersectionObserver((entries) => {
    if (entries.some((x) => x.isIntersecting) && cursor && !loading) load(true);
  }, { rootMargin: "400px" });
  observer.observe(more.parentElement);

  // keyboard: arrows move between cards (up and down by a row), Home and End
  list.addEventListener("keydown", (ev) => {
    const links = [...list.querySelectorAll(".card-link")];
    const i = links.indexOf(document.activeElement);
    if (i < 0) return;
    const top = links[0].getBoundingClientRect().top;
    const perRow = Math.max(1, links.filter((l) => Math.abs(l.getBoundingClientRect().top - top) < 2).length);
    const j = { ArrowRight: i + 1, ArrowLeft: i - 1, ArrowDown: i + perRow, ArrowUp: i - perRow, Home: 0, End: links.length - 1 }[ev.key];
    if (j === undefined) return;
    ev.preventDefault();
    const target = links[Math.max(0, Math.min(links.length - 1, j))];
    target.focus();
    if (ev.key === "End" && cursor) load(true);
  });

  // the live feed
  function change(kind, e) {
    if (kind === "deleted") {
      remove(e.id);
      return;
    }
    const li = cards.get(e.id);
    if (li) {
      const i = items.findIndex((x) => x.id === e.id);
      e = { ...items[i], ...e }; // the feed's record lacks what only the API adds (the clip)
      items[i] = e;
      fillCard(li, e);
      lightbox.refresh(e);
      return;
    }
    if (!matches(e, filters)) return;
    const oldest = items[items.length - 1];
    if (cursor && oldest && !newer(e, oldest)) return; // it belongs to a page not loaded yet
    const at = items.findIndex((x) => newer(e, x));
    const pos = at < 0 ? items.length : at;
    items.splice(pos, 0, e);
    list.insertBefore(card(e), list.children[pos] || null);
    renderCount();
  }

  function remove(id) {
    const li = cards.get(id);
    if (!li) return;
    li.remove();
    cards.delete(id);
    items = items.filter((x) => x.id !== id);
    renderCount();
  }

  const lightbox = createLightbox({
    lookup: (id) => items.find((x) => x.id === id),
    neighbours(id) {
      const i = items.findIndex((x) => x.id === id);
      return { prev: i > 0 ? items[i - 1] : null, next: i >= 0 && i < items.length - 1 ? items[i + 1] : null,
        more: i === items.length - 1 && Boolean(cursor) };
    },
    async loadMore() { await load(true); },
    deleted(e) {
      remove(e.id);
      publish("deleted", e);
    },
    closed(id) {
      const li = cards.get(id);
      if (li) { li.firstChild.focus({ preventScroll: true }); li.scrollIntoView({ block: "nearest" }); }
    },
    reviewHash: () => `#/review${query(filters)}`,
  });

  const stopFeed = subscribe(change);
  const stopConn = on("connection", (online) => { if (online && !items.length) reset(); });
  const stopResync = onResync(() => { reset(); timeline.refresh(); }); // events that began, ended or went while the feed was away
  const ticker = setInterval(() => {
    for (const e of items) if (!e.end_time) setText(cards.get(e.id).querySelector(".card-duration"), eventDuration(e));
  }, 1000);

  const timeline = createTimeline(timelinePanel); // every camera, one row each
  renderFacets();
  loadFacets();
  load();
  if (route.name === "events") {
    lightbox.fromApp = app.navigated; // a link inside the page (Back returns there) or an address typed in
    lightbox.open(route.arg);
  }

  return {
    update(r) {
      if (r.name === "events") {
        if (!lightbox.isOpen()) lightbox.fromApp = true;
        lightbox.open(r.arg);
        return true;
      }
      const same = FILTERS.every((k) => (r.query.get(k) || "") === filters[k]);
      if (lightbox.isOpen()) lightbox.close(false);
      return same;
    },
    unmount() {
      stopFeed();
      stopConn();
      stopResync();
      clearInterval(ticker);
      observer.disconnect();
      lightbox.destroy();
      timeline.destroy();
    },
  };
}

// Small DOM and formatting helpers shared by every view. No framework: elements are built with h()
// and updated in place, so live figures change without re-creating what the user is looking at.

/** Create an element: h("a", {href: "#/live", class: "x", onclick: fn}, "text", child, ...). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "text") el.textContent = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

/** Set an element's text only when it changed (no needless layout work on every poll). */
export function setText(el, text) {
  const value = text === undefined || text === null ? "" : String(text);
  if (el.textContent !== value) el.textContent = value;
}

/** A status block for a view or panel: kind is loading, empty, error. */
export function stateBlock(kind, text, detail) {
  return h("div", { class: `state state-${kind}`, role: kind === "error" ? "alert" : "status" },
    h("p", { class: "state-title", text }), detail ? h("p", { class: "state-detail", text: detail }) : null);
}

/** Query string from an object, leaving out empty values. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : "";
}

const pad = (n) => String(n).padStart(2, "0");

/** "14:02" from epoch seconds. */
export function clock(t) {
  const d = new Date(t * 1000);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** "14:02:31" today, else "3 Mar 14:02". */
export function when(t) {
  const d = new Date(t * 1000);
  const today = new Date();
  if (d.toDateString() === today.toDateString()) return `${clock(t)}:${pad(d.getSeconds())}`;
  return `${d.toLocaleDateString(undefined, { day: "numeric", month: "short" })} ${clock(t)}`;
}

/** Full local date and time, for titles and details. */
export function dateTime(t) {
  return new Date(t * 1000).toLocaleString();
}

/** What a figure shows when it is missing or not a number (a board's status is whatever it sent). */
export const NONE = "—";

/** Whether `v` is a number that can be shown: not a string, not NaN, not ±Infinity. */
export const isNum = (v) => typeof v === "number" && Number.isFinite(v);

/** "45 s", "3 min 05 s", "2 h 10 min". */
export function duration(seconds) {
  if (!isNum(seconds)) return NONE;
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${pad(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${pad(Math.floor((s % 3600) / 60))} min`;
}

/** "1.2 MB" */
export function bytes(n) {
  if (!isNum(n)) return NONE;
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
  return `${v >= 10 || i === 0 ? Math.round(v) : v.toFixed(1)} ${units[i]}`;
}

/** A number or a dash. */
export function num(v, digits = 0, unit = "") {
  if (!isNum(v)) return NONE;
  return `${v.toFixed(digits)}${unit ? ` ${unit}` : ""}`;
}

/** "Person" */
export function title(label) {
  return label ? label.charAt(0).toUpperCase() + label.slice(1) : "";
}

const MAX_LABEL = 48;

/** A label, camera or zone name as shown in running text: at most `max` characters, then "…".
 * Labels come from custom models and the inference service: 10 KB of them must not set the layout. */
export function short(text, max = MAX_LABEL) {
  const s = String(text ?? "");
  return s.length > max ? `${s.slice(0, max)}…` : s;
}

/** A string isolated for plain-text places (alt, title, headings): a U+202E in it reverses only itself,
 * not the rest of the line (FSI … PDI, the text form of <bdi>). */
export const isolate = (text) => `\u2068${text}\u2069`;

/** A label as an element: isolated in <bdi>, shortened, the whole of it in its tooltip. */
export function labelEl(label, attrs = {}, capitalize = true) {
  const s = String(label ?? "");
  return h("bdi", { class: "label", title: s.length > MAX_LABEL ? s.slice(0, 1000) : undefined, ...attrs,
    text: capitalize ? title(short(s)) : short(s) });
}

/** Seconds since the epoch, now. */
export const now = () => Date.now() / 1000;

/** The event's state in words: "in progress" or "ended: disappeared". */
export function eventState(e) {
  return e.end_time ? `ended · ${e.end_reason || "ended"}` : "in progress";
}

/** How long the event lasted (or has lasted so far). */
export function eventDuration(e) {
  return duration((e.end_time || now()) - e.start_time);
}

/** The thumbnail or snapshot URL of an event; `v` changes when a better snapshot replaces it. */
export function snapshotUrl(e, { crop = false, height, bbox = true } = {}) {
  const v = (e.snapshot_box || e.box || []).map((x) => Math.round(x)).join("-");
  return `/api/events/${encodeURIComponent(e.id)}/snapshot.jpg${query({
    crop: crop ? 1 : "", h: height, bbox: bbox ? "" : 0, v,
  })}`;
}

/** A short description of an event for alt texts and labels. */
export function eventText(e) {
  return `${isolate(title(short(e.label)))} on ${e.camera} at ${when(e.start_time)}`;
}

/** Ask for a credential in a modal dialog; resolves to the value, or null when cancelled. */
export function askSecret({ heading, text, label = "Admin token", error = "" }) {
  return new Promise((resolve) => {
    const input = h("input", { type: "password", id: "secret-input", autocomplete: "current-password", required: true });
    const form = h("form", { method: "dialog", class: "stack" },
      h("h2", { id: "secret-title", text: heading }),
      h("p", { text }),
      h("label", { for: "secret-input", text: label }), input,
      error ? h("p", { class: "form-error", role: "alert", text: error }) : null,
      h("div", { class: "row-actions" },
        h("button", { type: "submit", class: "primary", value: "ok", text: "Continue" }),
        h("button", { type: "button", value: "cancel", text: "Cancel", onclick: () => dialog.close("cancel") })));
    const dialog = h("dialog", { class: "small-dialog", "aria-labelledby": "secret-title" }, form);
    dialog.addEventListener("close", () => {
      const value = dialog.returnValue === "ok" && input.value ? input.value : null;
      dialog.remove();
      resolve(value);
    });
    document.body.append(dialog);
    dialog.showModal();
    input.focus();
  });
}

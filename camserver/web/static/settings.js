// The board's settings panel: shown only when GET /api/cameras/<id>/settings answers
// ({desired, reported}); a change posts a control message and shows what the board applied.

import { ApiError, api, optional, write } from "./api.js";
import { NONE, h, isNum, short, stateBlock } from "./ui.js";

const FRAME_SIZES = ["QQVGA", "QVGA", "CIF", "HVGA", "VGA", "SVGA", "XGA", "HD", "SXGA", "UXGA"];

// The esp32-camera settings and their driver ranges (the same table as ingest/control.py), in
// groups; the first group is open.
const GROUPS = [
  ["Picture", [
    { key: "framesize", label: "Frame size", choices: FRAME_SIZES },
    { key: "fps", label: "Frames per second", min: 0.1, max: 30, step: 0.1 },
    { key: "quality", label: "JPEG quality (lower is better)", min: 4, max: 63 },
    { key: "lamp", label: "Flash LED", min: 0, max: 100 },
    { key: "hmirror", label: "Mirror", bool: true },
    { key: "vflip", label: "Flip", bool: true },
  ]],
  ["Image", [
    { key: "brightness", label: "Brightness", min: -2, max: 2 },
    { key: "contrast", label: "Contrast", min: -2, max: 2 },
    { key: "saturation", label: "Saturation", min: -2, max: 2 },
    { key: "sharpness", label: "Sharpness", min: -2, max: 2 },
    { key: "special_effect", label: "Special effect", min: 0, max: 6 },
    { key: "colorbar", label: "Test pattern", bool: true },
  ]],
  ["Exposure and white balance", [
    { key: "aec", label: "Auto exposure", bool: true },
    { key: "aec2", label: "Auto exposure (DSP)", bool: true },
    { key: "ae_level", label: "Exposure level", min: -2, max: 2 },
    { key: "aec_value", label: "Exposure value", min: 0, max: 1200 },
    { key: "agc", label: "Auto gain", bool: true },
    { key: "agc_gain", label: "Gain", min: 0, max: 30 },
    { key: "gainceiling", label: "Gain ceiling", min: 0, max: 6 },
    { key: "awb", label: "Auto white balance", bool: true },
    { key: "awb_gain", label: "Auto white balance gain", bool: true },
    { key: "wb_mode", label: "White balance mode", min: 0, max: 4 },
  ]],
  ["Corrections", [
    { key: "bpc", label: "Black pixel correction", bool: true },
    { key: "wpc", label: "White pixel correction", bool: true },
    { key: "raw_gma", label: "Gamma correction", bool: true },
    { key: "lenc", label: "Lens correction", bool: true },
    { key: "dcw", label: "Downsize", bool: true },
  ]],
];
const FIELDS = GROUPS.flatMap(([, fields]) => fields);

/** A reported value in words; a board may report anything, so only a number, a switch or a name is shown. */
function reportedText(field, value) {
  if (field.bool) return typeof value === "boolean" || isNum(value) ? (value ? "on" : "off") : NONE;
  if (field.choices) return typeof value === "string" ? short(value, 16) : NONE;
  return isNum(value) ? String(value) : NONE;
}

/** Whether the settings form in `section` holds something the user has not applied yet (or is sending it). */
function editing(section) {
  const form = section.querySelector(".settings-form");
  if (!form) return false;
  if (form.contains(document.activeElement) && document.activeElement !== document.body) return true;
  if (form.querySelector(".form-message")?.textContent === "Sending…") return true;
  return [...form.querySelectorAll("[data-initial]")].some((input) => {
    const value = input.type === "checkbox" ? input.checked : input.tagName === "SELECT" ? input.value : Number(input.value);
    return String(value) !== input.dataset.initial;
  });
}

/** Fill `section` with the settings form of camera `id` if the server has the settings API. With `keepEdits`
 * (a refresh, e.g. after the live feed reconnected), a form the user is changing is left as it is. */
export async function settingsPanel(section, id, { keepEdits = false } = {}) {
  const enc = encodeURIComponent(id);
  let data;
  try {
    data = await optional(`/api/cameras/${enc}/settings`, "/api/cameras/{}/settings");
  } catch { return; }
  if (data === null) return;
  section.hidden = false;
  const inputs = new Map();
  const reportedCells = new Map();
  const message = h("p", { class: "form-message", role: "status" });

  function field(f) {
    const inputId = `set-${f.key}`;
    let input;
    if (f.choices) {
      // the first choice, "not known", until the board or the server says: never sent unless changed
      input = h("select", { id: inputId }, h("option", { value: "", text: "not known" }),
        ...f.choices.map((c) => h("option", { value: c, text: c })));
    } else if (f.bool) {
      input = h("input", { type: "checkbox", id: inputId });
    } else {
      input = h("input", { type: "range", id: inputId, min: f.min, max: f.max, step: f.step || 1 });
      input.value = String(f.min < 0 ? 0 : f.min); // until the board says: the driver's neutral value
      const out = h("output", { for: inputId, text: input.value });
      input.addEventListener("input", () => { out.value = input.value; });
      input.output = out;
    }
    inputs.set(f.key, input);
    const reported = h("span", { class: "muted reported" });
    reportedCells.set(f.key, reported);
    return h("div", { class: f.bool ? "setting setting-bool" : "setting" },
      h("label", { for: inputId, text: f.label }), input, input.output || null, reported);
  }

  function fill(d) {
    const desired = d.desired || {};
    const reported = d.reported || {};
    for (const f of FIELDS) {
      const input = inputs.get(f.key);
      const value = desired[f.key] ?? reported[f.key];
      if (value !== undefined) {
        if (f.bool) input.checked = Boolean(value); else input.value = value;
        if (input.output) input.output.value = input.value;
      } else if (input.output) {
        input.output.value = "not known"; // the slider rests on the driver's neutral value meanwhile
      }
      input.dataset.initial = String(f.bool ? input.checked : f.choices ? input.value : Number(input.value));
      const r = reported[f.key];
      reportedCells.get(f.key).textContent = r === undefined ? "not reported by the board"
        : `board: ${reportedText(f, r)}`;
    }
  }

  const form = h("form", { class: "settings-form" },
    ...GROUPS.map(([name, fields], i) => h("details", { class: "settings-group", open: i === 0 },
      h("summary", { text: name }), ...fields.map(field))),
    h("div", { class: "row-actions" }, h("button", { type: "submit", class: "primary", text: "Apply" })), message);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const body = {};
    for (const f of FIELDS) {
      const input = inputs.get(f.key);
      const value = f.bool ? input.checked : f.choices ? input.value : Number(input.value);
      if (String(value) !== input.dataset.initial && value !== "") body[f.key] = value; // only what the user changed
    }
    if (!Object.keys(body).length) { message.textContent = "Nothing changed."; return; }
    message.textContent = "Sending…";
    try {
      const sent = await write(`/api/cameras/${enc}/control`, { body });
      message.textContent = sent ? "Sent; the board's values show once it reports them." : "Not sent.";
      setTimeout(async () => { try { fill(await api(`/api/cameras/${enc}/settings`)); } catch { /* keep */ } }, 3000);
    } catch (err) {
      message.textContent = err instanceof ApiError && err.status === 409 ? "The camera is offline: not sent." : `Not sent: ${err.message}`;
    }
  });
  if (keepEdits && editing(section)) return; // a refresh never throws away what the user is changing
  section.replaceChildren(h("h2", { id: "settings-title", text: "Board settings" }), form);
  try { fill(data); } catch (err) { section.append(stateBlock("error", "Cannot read the settings", err.message)); }
}

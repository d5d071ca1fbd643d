// Zones and masks: the overlay over a camera's stream, and the editor (#/zones/<id>) that draws
// polygons on the camera's picture and saves them into config.toml (zonesave.js), or writes the TOML
// to paste there by hand.
//
// Points are relative to the frame (0..1, x right, y down), as config.toml wants them. Each
// point is an HTML button over the picture, so it can be focused, moved with the arrow keys and
// deleted with the keyboard as well as with the pointer. The picture itself takes the focus too:
// the arrow keys move a cursor over it and Enter or Space adds a point there.

import { ApiError, api } from "./api.js";
import { streamUrl } from "./cameras.js";
import { h, setText, stateBlock } from "./ui.js";
import { asApiData, loadedShapes, saveShapes, unsaveable } from "./zonesave.js";

const SVG = "http://www.w3.org/2000/svg";
const NAME_RE = /^[A-Za-z0-9_-]{1,32}$/;

// kind -> how it is written in config.toml and shown on the page
const KINDS = {
  zone: { table: "events.zones", label: "Zone", prefix: "zone", named: true, labels: true },
  motion: { table: "motion.masks", label: "Motion mask", prefix: "motion-mask", named: false, labels: false },
  object: { table: "events.masks", label: "Object mask", prefix: "object-mask", named: false, labels: true },
};
// /api/zones key -> kind
const API_KINDS = { zones: "zone", motion_masks: "motion", object_masks: "object" };

function svg(tag, attrs = {}) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  return el;
}

const round = (v) => Math.round(Math.min(1, Math.max(0, v)) * 1000) / 1000;
const pointsAttr = (points) => points.map(([x, y]) => `${x * 100},${y * 100}`).join(" ");

/** A TOML basic string. */
export function tomlString(s) {
  return `"${String(s).replace(/[\\"]/g, (c) => `\\${c}`).replace(/[\u0000-\u001f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`)}"`;
}

/** The config.toml text for one camera's shapes. */
export function toToml(camera, shapes) {
  const out = [`# camera ${camera}: these replace its entries in config.toml; restart camserver after`];
  for (const s of shapes) {
    const kind = KINDS[s.kind];
    out.push("");
    if (s.points.length < 3) {
      out.push(`# ${s.name}: needs 3 points or more (it has ${s.points.length})`);
      continue;
    }
    if (!kind.named) out.push(`# ${s.name}`);
    out.push(`[[${kind.table}]]`, `camera = ${tomlString(camera)}`);
    if (kind.named) out.push(`name = ${tomlString(s.name)}`);
    out.push(`points = [${s.points.map(([x, y]) => `[${x}, ${y}]`).join(", ")}]`);
    if (kind.labels && s.labels.length) out.push(`labels = [${s.labels.map(tomlString).join(", ")}]`);
  }
  return `${out.join("\n")}\n`;
}

/** Shapes from /api/zones as the editor's model. */
function fromApi(data) {
  const shapes = [];
  for (const [key, kind] of Object.entries(API_KINDS)) {
    (data[key] || []).forEach((s, i) => shapes.push({
      kind, name: s.name || `${KINDS[kind].prefix}-${i + 1}`, labels: s.labels || [], points: s.points.map(([x, y]) => [round(x), round(y)]),
    }));
  }
  return shapes;
}

/** The zones drawn over a camera's stream: {el, setShapes(apiData), show(bool)}. */
export function zoneOverlay() {
  const drawing = svg("svg", { viewBox: "0 0 100 100", preserveAspectRatio: "none", "aria-hidden": "true" });
  const names = h("div", { class: "zone-names" });
  const el = h("div", { class: "zone-overlay", hidden: true }, drawing, names);
  return {
    el,
    setShapes(data) {
      drawing.replaceChildren();
      names.replaceChildren();
      for (const s of fromApi(data)) {
        drawing.append(svg("polygon", { points: pointsAttr(s.points), class: `shape shape-${s.kind}` }));
        const cx = s.points.reduce((a, p) => a + p[0], 0) / s.points.length;
        const cy = s.points.reduce((a, p) => a + p[1], 0) / s.points.length;
        const tag = h("span", { class: `zone-name zone-name-${s.kind}`, text: s.name });
        tag.style.left = `${cx * 100}%`;
        tag.style.top = `${cy * 100}%`;
        names.append(tag);
      }
    },
    show(visible) { el.hidden = !visible; },
  };
}

/** Squared distance from p to the segment a-b. */
function segmentDistance(p, a, b) {
  const [dx, dy] = [b[0] - a[0], b[1] - a[1]];
  const len = dx * dx + dy * dy;
  const t = len ? Math.max(0, Math.min(1, ((p[0] - a[0]) * dx + (p[1] - a[1]) * dy) / len)) : 0;
  const [x, y] = [a[0] + t * dx - p[0], a[1] + t * dy - p[1]];
  return x * x + y * y;
}

/** Where a new point goes: at the end while a shape has under 3 points, else into its nearest edge. */
export function insertAt(points, p) {
  if (points.length < 3) return points.length;
  let best = 0;
  let bestD = Infinity;
  points.forEach((a, i) => {
    const d = segmentDistance(p, a, points[(i + 1) % points.length]);
    if (d < bestD) { bestD = d; best = i + 1; }
  });
  return best;
}

export function create(root, route) {
  const camera = route.arg;
  const enc = encodeURIComponent(camera);
  let shapes = [];
  let kindsAvailable = ["zone"];
  let selected = -1; // shape index
  let selectedPoint = -1;
  let drag = null;
  let cursor = [0.5, 0.5]; // the keyboard's cursor over the picture
  let loaded = null; // this camera's shapes as loaded, to tell whether config.toml changed since

  const img = h("img", { alt: `Still picture of ${camera} to draw zones on`, src: streamUrl(camera, { raw: true, snapshot: true }) });
  const drawing = svg("svg", { viewBox: "0 0 100 100", preserveAspectRatio: "none", "aria-hidden": "true" });
  const handles = h("div", { class: "handles" });
  const cursorMark = h("div", { class: "cursor", "aria-hidden": "true" });
  const cursorInfo = h("p", { id: "zones-cursor", class: "help", "aria-live": "polite" });
  const surface = h("div", { class: "frame frame-editor", role: "group", tabindex: "0", "aria-describedby": "zones-cursor",
    "aria-label": `Picture of ${camera}: click, or move the cursor with the arrow keys and press Enter, to add a point to the selected shape` },
  img, drawing, handles, cursorMark);
  const list = h("div", { class: "shape-list", role: "radiogroup", "aria-labelledby": "shapes-title" });
  const details = h("div", { class: "shape-details" });
  const toml = h("textarea", { id: "zones-toml", class: "toml", readonly: true, rows: 12, spellcheck: "false" });
  const copied = h("span", { class: "muted", role: "status" });
  const saveButton = h("button", { type: "button", class: "primary", id: "zones-save", text: "Save to config.toml", onclick: save });
  const saved = h("p", { class: "form-message", id: "zones-saved", role: "status" });
  const saveErrors = h("ul", { class: "form-error save-errors", id: "zones-save-errors", role: "alert" });
  const newButtons = h("div", { class: "row-actions" });
  const status = h("div", {}, stateBlock("loading", "Loading zones…"));

  root.append(h("section", { class: "view view-zones", "aria-labelledby": "zones-title" },
    h("div", { class: "view-head" },
      h("a", { class: "back", href: `#/camera/${enc}`, text: `← ${camera}` }),
      h("h1", { id: "zones-title", text: `Zones and masks · ${camera}` })),
    status,
    h("div", { class: "zones-layout" },
      h("div", { class: "zones-main" },
        surface,
        h("p", { class: "help" },
          "Choose or add a shape, then click the picture to add points (or focus the picture, move the cursor ",
          "with the arrow keys, Shift for bigger steps, and press Enter or Space). Drag a point to move it; ",
          "double-click it, or focus it and press Delete, to remove it; arrow keys nudge it."),
        cursorInfo,
        h("div", { class: "row-actions" },
          h("button", { type: "button", text: "Refresh picture", onclick: () => {
            img.src = streamUrl(camera, { raw: true, snapshot: true, n: Date.now() });
          } }))),
      h("div", { class: "zones-side" },
        h("section", { class: "panel", "aria-labelledby": "shapes-title" },
          h("h2", { id: "shapes-title", text: "Shapes" }), list, newButtons, details),
        h("section", { class: "panel", "aria-labelledby": "save-title" },
          h("h2", { id: "save-title", text: "Save" }),
          h("p", { class: "help", text: "Writes this camera's shapes into config.toml (its comments stay; other cameras' shapes are kept). Needs an admin." }),
          h("div", { class: "row-actions" }, saveButton), saved, saveErrors),
        h("section", { class: "panel", "aria-labelledby": "toml-title" },
          h("h2", { id: "toml-title", text: "config.toml" }),
          h("label", { for: "zones-toml", text: "Or paste this into config.toml by hand:" }), toml,
          h("div", { class: "row-actions" },
            h("button", { type: "button", text: "Copy", onclick: copy }), copied))))));

  img.addEventListener("load", () => { surface.style.setProperty("--ar", String(img.naturalWidth / img.naturalHeight)); });

  async function copy() {
    toml.select();
    try {
      await navigator.clipboard.writeText(toml.value);
      setText(copied, "Copied.");
    } catch {
      // no clipboard API outside https or localhost: the text stays selected for Ctrl+C
      setText(copied, "Selected: press Ctrl+C (⌘C) to copy.");
    }
  }

  function addShape(kind) {
    const n = shapes.filter((s) => s.kind === kind).length + 1;
    let name = `${KINDS[kind].prefix}-${n}`;
    for (let i = n; shapes.some((s) => s.name === name); i += 1) name = `${KINDS[kind].prefix}-${i + 1}`;
    shapes.push({ kind, name, labels: [], points: [] });
    selected = shapes.length - 1;
    selectedPoint = -1;
    render();
  }

  function relative(ev) {
    const r = surface.getBoundingClientRect();
    return [round((ev.clientX - r.left) / r.width), round((ev.clientY - r.top) / r.height)];
  }

  function addPoint(p, fromKeyboard) {
    if (selected < 0) addShape("zone");
    const shape = shapes[selected];
    const at = insertAt(shape.points, p);
    shape.points.splice(at, 0, p);
    selectedPoint = at;
    render(!fromKeyboard); // from the keyboard the focus stays on the picture, for the next point
    if (fromKeyboard) setText(cursorInfo, `Added point ${at + 1} of ${shape.name} at ${where(p)}.`);
  }

  const where = ([x, y]) => `${Math.round(x * 100)}% across, ${Math.round(y * 100)}% down`;

  function showCursor() {
    cursorMark.style.left = `${cursor[0] * 100}%`;
    cursorMark.style.top = `${cursor[1] * 100}%`;
  }

  surface.addEventListener("pointerdown", (ev) => {
    if (ev.button !== 0 || ev.target.closest(".handle")) return;
    addPoint(relative(ev), false);
  });

  surface.addEventListener("keydown", (ev) => {
    if (ev.target !== surface) return; // a focused point has its own keys
    const step = ev.shiftKey ? 0.05 : 0.01;
    const move = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] }[ev.key];
    if (move) {
      ev.preventDefault();
      cursor = [round(cursor[0] + move[0]), round(cursor[1] + move[1])];
      showCursor();
      setText(cursorInfo, `Cursor at ${where(cursor)}: Enter adds a point.`);
    } else if (ev.key === "Enter" || ev.key === " ") {
      ev.preventDefault();
      addPoint([...cursor], true);
    }
  });
  surface.addEventListener("focus", () => {
    showCursor();
    setText(cursorInfo, `Cursor at ${where(cursor)}: arrow keys move it, Enter adds a point.`);
  });

  async function save() {
    setText(saved, "");
    saveErrors.replaceChildren();
    const blocked = unsaveable(shapes);
    if (blocked.length) {
      saveErrors.replaceChildren(...blocked.map((line) => h("li", { text: line })));
      return;
    }
    saveButton.disabled = true;
    setText(saved, "Saving…");
    try {
      const result = await saveShapes(camera, shapes, kindsAvailable, loaded);
      if (result === null) setText(saved, "Not saved.");
      else if (result.state === "stale") {
        take(asApiData(result.file, camera, kindsAvailable));
        setText(saved, "config.toml changed since this editor loaded it: its shapes are loaded again. Make your change again and save.");
      } else if (result.state === "invalid") {
        setText(saved, "Not saved: config.toml refused these values.");
        saveErrors.replaceChildren(...result.problems.map((line) => h("li", { text: line })));
      } else if (result.state === "unchanged") setText(saved, "Nothing to save: config.toml already has these shapes.");
      else {
        await load(false);
        const restart = result.restart.length ? ` Restart camserver for: ${result.restart.join(", ")}.` : "";
        const live = result.live.length ? " In effect now." : "";
        setText(saved, `Saved.${live}${restart}`);
      }
    } catch (err) {
      setText(saved, "");
      const why = err instanceof ApiError && err.status === 409 ? err.message : `Not saved: ${err.message}`;
      saveErrors.replaceChildren(h("li", { text: why }));
    } finally {
      saveButton.disabled = false;
    }
  }

  function deletePoint(si, pi) {
    shapes[si].points.splice(pi, 1);
    selectedPoint = Math.min(pi, shapes[si].points.length - 1);
    render();
  }

  function handle(si, pi) {
    const [x, y] = shapes[si].points[pi];
    const shape = shapes[si];
    const b = h("button", { type: "button", class: `handle handle-${shape.kind}${si === selected ? " in-selected" : ""}`,
      "aria-label": `${shape.name} point ${pi + 1}: ${Math.round(x * 100)}% across, ${Math.round(y * 100)}% down`,
      "aria-pressed": String(si === selected && pi === selectedPoint) });
    b.style.left = `${x * 100}%`;
    b.style.top = `${y * 100}%`;
    b.addEventListener("pointerdown", (ev) => {
      if (ev.button !== 0) return;
      ev.preventDefault();
      selected = si;
      selectedPoint = pi;
      b.setPointerCapture(ev.pointerId);
      drag = { si, pi, el: b, moved: false };
      b.focus();
    });
    b.addEventListener("pointermove", (ev) => {
      if (!drag || drag.el !== b) return;
      const p = relative(ev);
      shapes[si].points[pi] = p;
      drag.moved = true;
      b.style.left = `${p[0] * 100}%`;
      b.style.top = `${p[1] * 100}%`;
      drawing.children[si].setAttribute("points", pointsAttr(shapes[si].points));
    });
    const end = () => {
      if (!drag || drag.el !== b) return;
      const { moved } = drag;
      drag = null;
      // a plain click keeps the elements (a double-click must land on the same button twice)
      if (moved) render(); else showSelection();
    };
    b.addEventListener("pointerup", end);
    b.addEventListener("pointercancel", end);
    b.addEventListener("dblclick", () => deletePoint(si, pi));
    b.addEventListener("keydown", (ev) => {
      const step = ev.shiftKey ? 0.05 : 0.01;
      const move = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] }[ev.key];
      if (ev.key === "Delete" || ev.key === "Backspace") {
        ev.preventDefault();
        deletePoint(si, pi);
      } else if (move) {
        ev.preventDefault();
        const [px, py] = shapes[si].points[pi];
        shapes[si].points[pi] = [round(px + move[0]), round(py + move[1])];
        selected = si;
        selectedPoint = pi;
        render();
      }
    });
    return b;
  }

  function renderDetails() {
    if (selected < 0) {
      details.replaceChildren(h("p", { class: "muted", text: "No shape selected." }));
      return;
    }
    const shape = shapes[selected];
    const kind = KINDS[shape.kind];
    const error = h("p", { class: "form-error", role: "alert" });
    const name = h("input", { id: "shape-name", value: shape.name, autocomplete: "off", "aria-describedby": "shape-name-help" });
    name.addEventListener("input", () => {
      const ok = NAME_RE.test(name.value) && !shapes.some((s, i) => i !== selected && s.kind === shape.kind && s.name === name.value);
      name.setAttribute("aria-invalid", String(!ok));
      setText(error, ok ? "" : "Letters, digits, - or _, 1 to 32 characters, and not the name of another shape.");
      if (ok) { shape.name = name.value; renderList(); renderToml(); }
    });
    const labels = h("input", { id: "shape-labels", value: shape.labels.join(", "), autocomplete: "off", placeholder: "every label" });
    labels.addEventListener("input", () => {
      shape.labels = labels.value.split(",").map((s) => s.trim()).filter(Boolean);
      renderToml();
    });
    details.replaceChildren(h("div", { class: "stack" },
      h("label", { for: "shape-name", text: `${kind.label} name` }), name,
      h("small", { id: "shape-name-help", class: "muted", text: kind.named ? "Used in events (entered_zones) and filters." : "Only on this page and as a comment." }),
      error,
      kind.labels ? h("label", { for: "shape-labels", text: "Labels (comma-separated; empty: every label)" }) : null,
      kind.labels ? labels : null,
      h("div", { class: "row-actions" },
        h("button", { type: "button", text: "Clear points", onclick: () => { shape.points = []; selectedPoint = -1; render(); } }),
        h("button", { type: "button", class: "danger", text: `Delete ${kind.label.toLowerCase()}`, onclick: () => {
          shapes.splice(selected, 1);
          selected = Math.min(selected, shapes.length - 1);
          selectedPoint = -1;
          render();
        } }))));
  }

  function renderList() {
    if (!shapes.length) {
      list.replaceChildren(h("p", { class: "muted", text: "No zones yet for this camera." }));
      return;
    }
    list.replaceChildren(...shapes.map((s, i) => {
      const radio = h("input", { type: "radio", name: "shape", id: `shape-${i}`, checked: i === selected });
      radio.addEventListener("change", () => { selected = i; selectedPoint = -1; render(); });
      return h("div", { class: `shape-item shape-item-${s.kind}` }, radio,
        h("label", { for: `shape-${i}` }, h("strong", { text: s.name }),
          h("span", { class: "muted", text: ` ${KINDS[s.kind].label.toLowerCase()} · ${s.points.length} points` })));
    }));
  }

  function renderToml() {
    toml.value = toToml(camera, shapes);
  }

  function render(focusPoint = true) {
    drawing.replaceChildren(...shapes.map((s, i) => svg(s.points.length >= 3 ? "polygon" : "polyline", {
      points: pointsAttr(s.points), class: `shape shape-${s.kind}${i === selected ? " selected" : ""}`,
    })));
    handles.replaceChildren(...shapes.flatMap((s, si) => s.points.map((_, pi) => handle(si, pi))));
    if (focusPoint && selected >= 0 && selectedPoint >= 0) {
      const idx = shapes.slice(0, selected).reduce((a, s) => a + s.points.length, 0) + selectedPoint;
      const el = handles.children[idx];
      if (el) el.focus({ preventScroll: true });
    }
    renderList();
    renderDetails();
    renderToml();
  }

  function showSelection() {
    let idx = 0;
    shapes.forEach((s, si) => s.points.forEach((_, pi) => {
      const el = handles.children[idx++];
      el.classList.toggle("in-selected", si === selected);
      el.setAttribute("aria-pressed", String(si === selected && pi === selectedPoint));
    }));
    [...drawing.children].forEach((el, i) => el.classList.toggle("selected", i === selected));
    renderList();
    renderDetails();
  }

  function renderNewButtons() {
    newButtons.replaceChildren(...kindsAvailable.map((kind) => h("button", { type: "button", class: kind === "zone" ? "primary" : "",
      text: `New ${KINDS[kind].label.toLowerCase()}`, onclick: () => addShape(kind) })));
  }

  /** The configured shapes, from /api/zones (again after a save, or when config.toml changed). */
  async function load(reselect = true) {
    try {
      const data = await api(`/api/zones?camera=${enc}`);
      kindsAvailable = Object.entries(API_KINDS).filter(([key]) => key in data).map(([, kind]) => kind);
      take(data, reselect);
      status.replaceChildren();
    } catch (err) {
      status.replaceChildren(stateBlock("error", "Cannot load the configured zones", `${err.message}. You can still draw new ones.`));
      renderNewButtons();
      render();
    }
  }

  /** Shapes in /api/zones' form become the editor's, and what a save compares config.toml with. */
  function take(data, reselect = true) {
    shapes = fromApi(data);
    loaded = loadedShapes(data, camera, kindsAvailable);
    setText(cursorInfo, "");
    if (reselect || selected >= shapes.length) selected = shapes.length ? 0 : -1;
    selectedPoint = -1;
    renderNewButtons();
    render();
  }
  load();

  return { unmount() {} };
}

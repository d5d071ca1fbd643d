// System: the detector, storage, MQTT, webhooks and notifications, version and uptime.

import { api, hasRoute, on, write } from "./api.js";
import { bytes, duration, h, num, setText, stateBlock } from "./ui.js";

const POLL_MS = 5000;

/** A nested value (counters per target, ...) as text. */
function flat(value) {
  if (value === null || value === undefined) return "–";
  if (typeof value !== "object") return String(value);
  if (Array.isArray(value)) return value.map(flat).join("; ");
  return Object.entries(value).map(([k, v]) => `${k} ${flat(v)}`).join(", ");
}

export function create(root, _route, app) {
  const status = h("div", {}, stateBlock("loading", "Loading…"));
  const grid = h("div", { class: "panels" });
  root.append(h("section", { class: "view view-system", "aria-labelledby": "system-title" },
    h("div", { class: "view-head" }, h("h1", { id: "system-title", text: "System" })), status, grid));

  const panels = new Map();
  function panel(key, heading) {
    let p = panels.get(key);
    if (!p) {
      const dl = h("dl", { class: "figures live-figure" });
      const extra = h("div", {});
      const el = h("section", { class: "panel", "aria-labelledby": `sys-${key}` }, h("h2", { id: `sys-${key}`, text: heading }), dl, extra);
      grid.append(el);
      p = { el, dl, extra, rows: new Map() };
      panels.set(key, p);
    }
    return p;
  }
  function row(p, label, value) {
    let dd = p.rows.get(label);
    if (!dd) {
      dd = h("dd");
      p.dl.append(h("dt", { text: label }), dd);
      p.rows.set(label, dd);
    }
    if (value instanceof Node) dd.replaceChildren(value); else setText(dd, value);
  }

  const meter = h("meter", { id: "storage-meter", min: 0, max: 1, low: 0.7, high: 0.9, optimum: 0.2 });
  const meterText = h("span", {});
  const storageBox = h("div", { class: "meter-row" }, h("label", { for: "storage-meter", text: "Used" }), meter, meterText);
  const testResult = h("p", { class: "form-message", role: "status" });

  const candTable = h("table", { class: "candidates-table" });
  const candBox = h("div", { class: "candidates-scroll" }, candTable);
  const calStatus = h("p", { class: "form-message", role: "status", id: "calibrate-status" });
  const calButton = h("button", { type: "button", id: "calibrate-int8", text: "Calibrate INT8", onclick: calibrate });
  const calBox = h("div", {}, h("div", { class: "row-actions" }, calButton), calStatus);

  /** Every candidate (precision x mode) as a table row: ms per frame, frames/s, the gate, and the verdict;
   * a skipped candidate's row says why in one cell over the figures it has none of. */
  function candidates(tu) {
    const head = h("tr", {}, ...["Precision", "Mode", "ms/frame", "frames/s", "Agreement", "Gate", "Verdict"]
      .map((t) => h("th", { scope: "col", text: t })));
    const rows = tu.candidates.map((c) => {
      const key = `${c.precision}/${c.mode}`;
      if (c.skipped) {
        return h("tr", { class: "candidate-skipped", "data-candidate": key }, h("td", { text: c.precision }),
          h("td", { text: c.mode }), h("td", { colspan: 5, text: `skipped: ${c.skipped}` }));
      }
      const won = c.precision === tu.winner && c.mode === tu.mode && tu.state === "done";
      const gate = c.precision === "f32" && c.mode === "latency" ? "reference"
        : c.agreement === null ? "–" : c.passed ? "pass" : "fail";
      const cells = [c.precision, c.mode, c.ms_per_frame ?? "–",
        c.ms_per_frame ? (1000 / c.ms_per_frame).toFixed(1) : "–",
        c.agreement === null ? "–" : c.agreement.toFixed(3), gate, c.verdict || ""];
      return h("tr", { class: won ? "candidate-winner" : "", "data-candidate": key },
        ...cells.map((t) => h("td", { text: String(t) })));
    });
    candTable.replaceChildren(h("thead", {}, head), h("tbody", {}, ...rows));
    if (!candBox.isConnected) {
      const p = panel("detector", "Detector");
      p.el.classList.add("panel-wide"); // the table needs the whole row
      p.extra.prepend(candBox);
    }
  }

  function showCalibration(job) {
    if (!job || job.state === "idle") return;
    const running = job.state === "collecting" || job.state === "quantizing";
    calButton.disabled = running;
    setText(calStatus, `Calibration ${job.id}: ${job.state}, ${job.frames} frames, ${num(job.elapsed_s, 1, "s")}`
      + `${job.reason ? ` — ${job.reason}` : ""}`);
    clearTimeout(calTimer);
    if (running && !stopped) calTimer = setTimeout(pollCalibration, 1000);
    if (!running && calWasRunning) tick(); // the tuner's new candidates, at once
    calWasRunning = running;
  }
  async function pollCalibration() {
    try { showCalibration(await api("/api/detector/calibrate")); } catch (err) { setText(calStatus, err.message); }
  }
  async function calibrate() {
    setText(calStatus, "Starting…");
    try {
      const job = await write("/api/detector/calibrate", { body: {} });
      if (job === null) { setText(calStatus, "Not started."); return; }
      pollCalibration();
    } catch (err) {
      setText(calStatus, `Not started: ${err.message}`);
    }
  }
  let calTimer = null;
  let calWasRunning = false;

  function render(s) {
    const server = panel("server", "Server");
    const badge = h("span", { class: `badge badge-${s.status === "ok" ? "live" : "offline"}`, text: s.status });
    row(server, "Status", badge);
    row(server, "Version", s.version || "–");
    row(server, "Up for", s.uptime_s !== undefined ? duration(s.uptime_s) : "–");
    row(server, "Model", s.model_name ? `${s.model_name}${s.model_random_weights ? " (random weights)" : ""}` : "–");
    row(server, "Cameras", `${s.cameras_connected} connected of ${s.cameras}`);
    row(server, "Open streams", `${s.viewers} (refused ${s.viewers_refused})`);
    row(server, "Camera login failures", num(s.camera_auth_failures));

    const d = s.detection || {};
    const det = panel("detector", "Detector");
    row(det, "State", h("span", { class: `badge badge-${s.detector === "ok" ? "live" : "offline"}`, text: s.detector }));
    row(det, "Backend", d.backend || "–");
    row(det, "Device", d.device || "–");
    row(det, "Precision", d.precision || "–");
    const ex = d.executed;
    if (ex) {
      row(det, "Runs", `${ex.precision} (inference ${ex.inference_precision}, ${ex.int8_layers} of ${ex.layers} layers int8), `
        + `${ex.execution_mode}, ${ex.num_streams} stream${ex.num_streams === 1 ? "" : "s"}, ${ex.threads} thread${ex.threads === 1 ? "" : "s"}`);
    }
    const tu = d.tuning;
    if (tu) {
      row(det, "Precision tuning", tu.why ? `${tu.state}: ${tu.why}${tu.cached ? " (cached)" : ""}` : tu.state);
      row(det, "Candidates", tu.candidates.length ? `${tu.candidates.length} measured or skipped, below` : "–");
      candidates(tu);
    }
    if (hasRoute("/api/detector/calibrate") && !calBox.isConnected) det.extra.append(calBox);
    row(det, "Batch", `up to ${d.max_batch ?? "–"}, mean ${num(d.mean_batch, 2)}`);
    row(det, "Time per batch", num(d.batch_ms, 1, "ms"));
    row(det, "Stalls", num(s.detector_stalls));

    const st = panel("storage", "Events and storage");
    const used = s.storage && s.storage.used_bytes;
    const max = s.storage && s.storage.max_bytes;
    if (used !== null && used !== undefined && max) {
      meter.value = Math.min(1, used / max);
      setText(meterText, `${bytes(used)} of ${bytes(max)} (${Math.round((used / max) * 100)}%)`);
      if (!storageBox.isConnected) st.extra.append(storageBox);
    }
    row(st, "Kept for", s.storage ? `${s.storage.retain_days} days, at most ${bytes(max)}` : "–");
    const ev = s.events || {};
    row(st, "Events", s.events_enabled === false ? "off" : num(ev.events_total));
    row(st, "Frames skipped", num(ev.events_skipped_frames));
    row(st, "Write errors", num(ev.storage_write_errors));

    const integ = panel("integrations", "Integrations");
    row(integ, "MQTT", s.mqtt === "disabled" ? "off" : `${s.mqtt}${s.mqtt_broker ? ` (${s.mqtt_broker})` : ""}`);
    const hooks = s.webhooks || {};
    row(integ, "Webhooks", hooks.endpoints ? `${hooks.endpoints} endpoint${hooks.endpoints === 1 ? "" : "s"}, ${hooks.failures} failed` : "none");
    if (s.notify !== undefined) {
      row(integ, "Notifications", flat(s.notify));
      if (!integ.extra.childElementCount && hasRoute("/api/notify/test")) {
        integ.extra.append(h("div", { class: "row-actions" },
          h("button", { type: "button", text: "Send a test notification", onclick: sendTest })), testResult);
      }
    }
  }

  async function sendTest() {
    setText(testResult, "Sending…");
    try {
      const result = await write("/api/notify/test", { body: {} });
      setText(testResult, result === null ? "Not sent." : `Sent: ${flat(result)}`);
    } catch (err) {
      setText(testResult, `Not sent: ${err.message}`);
    }
  }

  let timer = null;
  let stopped = false;
  async function tick() {
    clearTimeout(timer);
    try {
      render(await api("/api/system"));
      status.replaceChildren();
    } catch (err) {
      if (!panels.size) status.replaceChildren(stateBlock("error", "Cannot load the server's state", err.message));
    }
    if (!stopped) timer = setTimeout(tick, POLL_MS);
  }
  const stopConn = on("connection", (online) => { if (online) tick(); });
  tick();
  if (hasRoute("/api/detector/calibrate")) pollCalibration();  // a job started elsewhere shows its progress

  if (app.session && app.session.auth_required) {
    const s = app.session;
    const role = s.role === "admin" ? "an admin: may change settings and delete" : "a viewer";
    const who = s.user ? `Logged in as ${s.user}, ${role}.`
      : s.role === "admin" ? "Logged in with the admin token: may change settings and delete." : "Logged in with the viewer token.";
    const session = h("section", { class: "panel", "aria-labelledby": "sys-session" },
      h("h2", { id: "sys-session", text: "Session" }), h("p", { text: who }),
      h("div", { class: "row-actions" }, h("button", { type: "button", text: "Log out", onclick: () => app.logout() })));
    root.querySelector(".view").append(session);
  }

  return { unmount() { stopped = true; clearTimeout(timer); clearTimeout(calTimer); stopConn(); } };
}

// The Settings view (#/settings, admins only): cameras, camera groups, notifications, recording and storage, saved
// into config.toml through PATCH /api/config (a JSON merge patch with If-Match). Each save says which
// keys the server took at once and which wait for a restart, and offers "Restart now" (POST /api/restart).
// The users and tokens section mounts into #settings-users (users.js).

import { ApiError, api, write } from "./api.js";
import { cameraName, rememberNames } from "./cameras.js";
import { onResync } from "./feed.js";
import { cameraMute } from "./mute.js";
import { mountUsers } from "./users.js";
import { bytes, h, setText, stateBlock } from "./ui.js";

const MODES = ["off", "events", "continuous", "motion"];
const ATTACH = ["snapshot", "clip", "none"];
const list = (text) => text.split(/[\n,]/).map((s) => s.trim()).filter(Boolean);

/** A labelled input bound to a dotted config key; `error` shows that key's one-line problems. */
function field(key, label, input, hint) {
  const id = `set-${key.replace(/[^a-z0-9]+/gi, "-")}`;
  input.id = id;
  const error = h("p", { class: "form-error field-error", role: "alert", id: `${id}-error` });
  input.setAttribute("aria-describedby", `${id}-error`);
  return { key, input, error, el: h("div", { class: "field", dataset: { key } }, h("label", { for: id, text: label }), input,
    hint || null, error) };
}

const select = (choices, value) => h("select", {}, ...choices.map((c) => h("option", { value: c, selected: c === value, text: c })));
const number = (value, attrs = {}) => h("input", { type: "number", step: "any", value: value ?? "", ...attrs });

/** A form of fields with its Save, message and per-save answer. `patch()` builds the merge patch. */
function form(view, heading, id, fields, patch, extra = [], errorFields = fields) {
  const message = h("p", { class: "form-message", role: "status" });
  const problems = h("p", { class: "form-error", role: "alert" });
  const save = h("button", { type: "submit", class: "primary", text: "Save" });
  const el = h("form", { class: "panel settings-section", id, "aria-labelledby": `${id}-title`, novalidate: true },
    h("h2", { id: `${id}-title`, text: heading }), h("div", { class: "settings-fields" }, ...fields.map((f) => f.el)), ...extra,
    h("div", { class: "settings-actions" }, save), problems, message);
  el.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    for (const f of errorFields) setText(f.error, "");
    setText(problems, "");
    setText(message, "Saving…");
    save.disabled = true;
    try {
      const answer = await view.save(patch());
      if (!answer) { setText(message, ""); return; }
      if (answer.state === "stale") { setText(message, "The file changed; reloaded. Check the values and save again."); return; }
      if (answer.state === "invalid") {
        const rest = [];
        for (const line of answer.problems) {
          const bare = line.replace(/^config error: /, "");
          const f = errorFields.find((x) => [" ", ".", "["].some((c) => bare.startsWith(x.key + c)));
          if (f) f.error.textContent = [f.error.textContent, line].filter(Boolean).join(" "); else rest.push(line);
        }
        setText(problems, rest.join(" "));
        setText(message, "Not saved.");
        return;
      }
      el.dispatchEvent(new CustomEvent("saved")); // what the form was drawn from is now the file's
      const { live, restart } = answer;
      setText(message, !live.length && !restart.length ? "Saved (nothing changed)."
        : `Saved. ${live.length ? `Applied now: ${live.join(", ")}.` : ""} ${restart.length ? `After a restart: ${restart.join(", ")}.` : ""}`.trim());
      view.offerRestart(restart);
    } catch (err) {
      setText(message, "");
      setText(problems, `Not saved: ${err.message}`);
    } finally {
      save.disabled = false;
    }
  });
  return el;
}

export function create(root, _route, app) {
  const status = h("div", {}, stateBlock("loading", "Loading…"));
  const notice = h("p", { class: "form-error settings-notice", id: "settings-notice", role: "alert" });
  const body = h("div", { class: "settings-body" });
  const restartMsg = h("p", { class: "form-message", role: "status" });
  const restartBtn = h("button", { type: "button", class: "primary", text: "Restart now" });
  const restartBox = h("div", { class: "panel settings-restart", id: "settings-restart", hidden: true, role: "region", "aria-label": "Restart" },
    h("p", { class: "settings-restart-text" }), restartBtn, restartMsg);
  root.append(h("section", { class: "view view-settings", "aria-labelledby": "settings-title" },
    h("div", { class: "view-head" }, h("h1", { id: "settings-title", text: "Settings" }),
      h("p", { class: "view-sub", text: "Saved into config.toml (its comments stay); a backup of the file before each save is kept." })),
    status, notice, restartBox, body));
  let alive = true;
  let current = null;
  const pending = new Set();
  const mutes = [];
  let muteTimer = null;

  const view = {
    async save(patch) {
      setText(notice, "");
      try {
        const done = await write("/api/config", { method: "PATCH", body: patch,
          headers: { "If-Match": current.version, "Content-Type": "application/merge-patch+json" } });
        if (!done) return null;
        current.version = done.version; // the form keeps what was saved: nothing to reload
        return { state: "saved", live: done.applied_live || [], restart: done.restart_needed || [] };
      } catch (err) {
        if (err instanceof ApiError && err.status === 412) {
          await load(); // the forms are drawn again from the file: the notice above them says why
          setText(notice, "The file changed; reloaded. Check the values and save again.");
          return { state: "stale" };
        }
        if (err instanceof ApiError && err.status === 400 && err.body && Array.isArray(err.body.problems)) {
          return { state: "invalid", problems: err.body.problems };
        }
        if (err instanceof ApiError && err.status === 400) return { state: "invalid", problems: [err.message] };
        throw err;
      }
    },
    offerRestart(keys) {
      for (const k of keys) pending.add(k);
      restartBox.hidden = !pending.size;
      setText(restartBox.querySelector(".settings-restart-text"),
        `These saved keys take effect after a restart: ${[...pending].join(", ")}.`);
    },
  };

  restartBtn.addEventListener("click", async () => {
    restartBtn.disabled = true;
    try {
      const done = await write("/api/restart", { method: "POST" });
      if (!done) return;
      setText(restartMsg, "Restarting… the page reconnects by itself.");
      pending.clear();
    } catch (err) {
      setText(restartMsg, err instanceof ApiError && err.status === 409 ? "This server cannot restart itself: restart it by hand."
        : `Could not restart: ${err.message}`);
    } finally {
      restartBtn.disabled = false;
    }
  });

  // per camera: its name, its own recording mode, motion gating and mute; Save sends only what changed
  function cameras(eff, cams) {
    const tables = eff.cameras.per_camera || {};
    const ids = [...new Set([...(eff.cameras.ids || []), ...cams.map((c) => c.id), ...Object.keys(tables)])].sort();
    const fields = [];
    const rows = ids.map((id) => {
      const own = tables[id] || {};
      const enabled = (own.motion || {}).enabled ?? eff.motion.enabled;
      const name = field(`cameras.${id}.name`, "Name", h("input", { value: own.name || "", maxlength: 40, placeholder: id, autocomplete: "off" }),
        h("small", { class: "field-hint", text: "shown on the page; the id stays in URLs" }));
      const modes = h("select", {}, h("option", { value: "", text: `default (${eff.record.mode})`, selected: !own.record }),
        ...MODES.map((m) => h("option", { value: m, selected: m === own.record, text: m })));
      const record = field(`cameras.${id}.record`, "Recording", modes);
      const motion = field(`cameras.${id}.motion.enabled`, "Motion gating", h("input", { type: "checkbox", checked: enabled }));
      motion.el.classList.add("field-check");
      const was = { name: own.name || "", record: own.record || "", enabled };
      fields.push(name, record, motion);
      const legend = h("legend", { text: own.name ? `${own.name} (${id})` : id });
      name.input.addEventListener("input", () => setText(legend, name.input.value.trim() ? `${name.input.value.trim()} (${id})` : id));
      const set = h("fieldset", { class: "settings-camera", dataset: { camera: id } }, legend, name.el, record.el, motion.el);
      const cam = cams.find((c) => c.id === id);
      if (cam) {
        const mute = cameraMute(id, refreshMutes);
        mute.update(cam);
        mutes.push([id, mute]);
        set.append(h("div", { class: "settings-mute" }, mute.menu, mute.badge));
      }
      return { id, was, name, record, motion, el: set };
    });
    function patch() {
      const changes = {};
      for (const r of rows) {
        const c = {};
        const name = r.name.input.value.trim();
        if (name !== r.was.name) c.name = name || null; // empty: back to the id
        if (r.record.input.value !== r.was.record) c.record = r.record.input.value || null;
        if (r.motion.input.checked !== r.was.enabled) c.motion = { enabled: r.motion.input.checked };
        if (Object.keys(c).length) changes[r.id] = c;
      }
      return { cameras: changes };
    }
    const note = ids.length ? [] : [h("p", { class: "form-message", text: "No camera is known yet: cameras appear here once they connect or are listed in cameras.ids." })];
    const el = form(view, "Cameras", "settings-cameras", [], patch, [h("div", { class: "settings-cameras" }, ...rows.map((r) => r.el)), ...note], fields);
    el.addEventListener("saved", () => {
      for (const r of rows) r.was = { name: r.name.input.value.trim(), record: r.record.input.value, enabled: r.motion.input.checked };
    });
    return el;
  }

  // [groups]: a row per group (its name, a box per camera), added and removed; Save sends the whole table
  // as a merge patch (a removed or renamed group's old name as null)
  function groupsForm(eff, cams) {
    let was = Object.keys(eff.groups || {});
    const rows = Object.entries(eff.groups || {}).map(([name, ids]) => ({ name, ids: [...ids] }));
    const known = [...new Set([...(eff.cameras.ids || []), ...cams.map((c) => c.id), ...rows.flatMap((r) => r.ids)])].sort();
    const box = h("div", { class: "settings-groups" });
    let drawn = [];
    function draw() {
      drawn = rows.map((r, i) => {
        const name = h("input", { value: r.name, maxlength: 32, id: `set-group-${i}-name`, autocomplete: "off" });
        const boxes = known.map((id) => [id, h("input", { type: "checkbox", checked: r.ids.includes(id), id: `set-group-${i}-${id}` })]);
        const remove = h("button", { type: "button", class: "danger", text: "Remove", onclick: () => { collect(); rows.splice(i, 1); draw(); } });
        const el = h("fieldset", { class: "settings-rule settings-group" }, h("legend", { text: `Group ${i + 1}` }),
          h("div", { class: "field" }, h("label", { for: name.id, text: "Name" }), name),
          h("div", { class: "settings-group-cameras", role: "group", "aria-label": "Cameras of the group" },
            ...(known.length ? boxes.map(([id, b]) => h("label", { class: "switch", for: b.id }, b, ` ${cameraName(id)}`))
              : [h("span", { class: "muted", text: "No camera is known yet." })])),
          remove);
        return { name, boxes, el };
      });
      box.replaceChildren(...drawn.map((d) => d.el));
      if (!rows.length) box.append(h("p", { class: "form-message", text: "No group: the live grid shows every camera." }));
    }
    function collect() {
      drawn.forEach((d, i) => {
        rows[i].name = d.name.value.trim();
        rows[i].ids = d.boxes.filter(([, b]) => b.checked).map(([id]) => id);
      });
    }
    draw();
    const add = h("button", { type: "button", text: "Add a group", onclick: () => { collect(); rows.push({ name: `Group ${rows.length + 1}`, ids: [] }); draw(); } });
    const el = form(view, "Camera groups", "settings-groups", [], () => {
      collect();
      const twice = rows.map((r) => r.name).find((n, i, all) => all.indexOf(n) !== i);
      if (twice !== undefined) throw new Error(`two groups are named “${twice}”: one table key each`);
      const table = Object.fromEntries(was.map((n) => [n, null]));
      for (const r of rows) table[r.name] = r.ids;
      return { groups: table };
    }, [box, h("div", { class: "settings-actions" }, add)]);
    el.addEventListener("saved", () => { was = rows.map((r) => r.name); });
    return el;
  }

  async function refreshMutes() {
    const cams = await api("/api/cameras").catch(() => null);
    if (!alive || !Array.isArray(cams)) return;
    for (const [id, m] of mutes) { const c = cams.find((x) => x.id === id); if (c) m.update(c); }
  }

  function notifications(file) {
    const rules = (Array.isArray(file.notify) ? file.notify : []).map((r) => ({ ...r }));
    const box = h("div", { class: "settings-rules" });
    const fields = [];
    const message = h("p", { class: "form-message", role: "status" });
    function draw() {
      fields.length = 0;
      box.replaceChildren(...rules.map((r, i) => {
        const fs = [
          field(`notify[${i}].urls`, "Apprise URLs (one a line)", h("textarea", { rows: 2, text: (r.urls || []).join("\n") })),
          field(`notify[${i}].cameras`, "Cameras (empty: every camera)", h("input", { value: (r.cameras || []).join(", ") })),
          field(`notify[${i}].labels`, "Labels (empty: every label)", h("input", { value: (r.labels || []).join(", ") })),
          field(`notify[${i}].cooldown_s`, "Cooldown (s)", number(r.cooldown_s ?? 60, { min: 0 })),
          field(`notify[${i}].attach`, "Attach", select(ATTACH, r.attach || "snapshot")),
        ];
        fields.push(...fs);
        const remove = h("button", { type: "button", class: "danger", text: "Remove", onclick: () => { collect(); rules.splice(i, 1); draw(); } });
        return h("fieldset", { class: "settings-rule" }, h("legend", { text: `Rule ${i + 1}` }), ...fs.map((f) => f.el), remove);
      }));
      if (!rules.length) box.append(h("p", { class: "form-message", text: "No rule: no notification is sent." }));
    }
    function collect() {
      rules.forEach((r, i) => {
        const get = (k) => fields.find((f) => f.key === `notify[${i}].${k}`).input.value;
        Object.assign(r, { urls: list(get("urls")), cameras: list(get("cameras")), labels: list(get("labels")),
          cooldown_s: Number(get("cooldown_s")), attach: get("attach") });
      });
    }
    draw();
    const add = h("button", { type: "button", text: "Add a rule", onclick: () => { collect(); rules.push({ urls: [], cameras: [], labels: [], cooldown_s: 60, attach: "snapshot" }); draw(); } });
    const test = h("button", { type: "button", text: "Send a test", onclick: async () => {
      setText(message, "Sending…");
      try {
        const done = await write("/api/notify/test", { method: "POST", body: {} });
        setText(message, done ? `Test: ${JSON.stringify(done.results || done).slice(0, 300)}` : "");
      } catch (err) { setText(message, `Test failed: ${err.message}`); }
    } });
    // the rule fields are drawn in `box`; the form shows each problem next to the field it names
    return form(view, "Notifications", "settings-notify", [], () => { collect(); return { notify: rules }; },
      [box, h("div", { class: "settings-actions" }, add, test), message], fields);
  }

  function storage(eff, rate) {
    const fs = [
      field("record.mode", "Recording mode", select(MODES, eff.record.mode)),
      field("record.retain_days", "Recordings kept (days)", number(eff.record.retain_days, { min: 0 })),
      field("storage.retain_days", "Events kept (days)", number(eff.storage.retain_days, { min: 0 })),
      field("storage.max_mb", "Storage budget (MB)", number(eff.storage.max_mb, { min: 1 })),
      field("storage.min_free_mb", "Free space kept (MB)", number(eff.storage.min_free_mb, { min: 0 })),
    ];
    const days = h("p", { class: "settings-days", id: "settings-days" });
    if (rate) {
      const used = `from ${bytes(rate.written_bytes)} recorded in the last ${Math.round(rate.over_s / 3600 * 10) / 10} h` +
        ` (${bytes(rate.per_day_bytes)} a day); room ${bytes(rate.room_bytes)} = the budget ${bytes(rate.max_bytes)}` +
        (rate.free_bytes != null ? `, at most used ${bytes(rate.used_bytes || 0)} + free ${bytes(rate.free_bytes)} − floor ${bytes(rate.min_free_bytes)}` : "");
      days.replaceChildren(h("strong", { text: rate.days != null ? `About ${rate.days} days of recordings at today's rate.` : "No recordings today: no rate to go by yet." }),
        h("small", { title: used, text: ` ${used}` }));
    }
    const get = (k) => fs.find((f) => f.key === k).input.value;
    const num = (k) => (get(k) === "" ? get(k) : Number(get(k)));
    return form(view, "Recording and storage", "settings-storage", fs, () => ({
      record: { mode: get("record.mode"), retain_days: num("record.retain_days") },
      storage: { retain_days: num("storage.retain_days"), max_mb: num("storage.max_mb"), min_free_mb: num("storage.min_free_mb") },
    }), [days]);
  }

  let usersSection = null; // users.js's section, mounted once
  let stopResync = () => {};

  async function load() {
    const [cfg, cams] = await Promise.all([write("/api/config", { method: "GET" }), api("/api/cameras").catch(() => [])]);
    if (!alive || !cfg) return;
    current = cfg;
    if (Array.isArray(cfg.restart_needed)) { // the server's word: saved keys a restart has not yet read
      pending.clear();
      view.offerRestart(cfg.restart_needed);
    }
    if (!cfg.effective) {
      status.replaceChildren(stateBlock("error", "config.toml does not load now", (cfg.problems || []).join(" ")));
      return;
    }
    status.replaceChildren();
    mutes.length = 0;
    let users = document.getElementById("settings-users");
    if (!users) {
      users = h("div", { id: "settings-users" });
      usersSection = mountUsers(users);
    }
    const known = Array.isArray(cams) ? cams : [];
    rememberNames(known);
    body.replaceChildren(cameras(cfg.effective, known), groupsForm(cfg.effective, known), notifications(cfg.file || {}),
      storage(cfg.effective, cfg.storage), users);
  }

  if (app.session && app.session.can_write === false) {
    status.replaceChildren(stateBlock("error", "Settings need an admin", "Log in as an admin user (or with the admin token) to change settings."));
  } else {
    const failed = (err) => { if (alive) status.replaceChildren(stateBlock("error", "Cannot load the settings", err.message)); };
    load().catch(failed);
    // back from a restart (or a dropped feed): the notice says again what still waits; the forms keep their edits
    stopResync = onResync(() => write("/api/config", { method: "GET" }).then((cfg) => {
      if (!alive || !cfg || !Array.isArray(cfg.restart_needed)) return;
      pending.clear();
      view.offerRestart(cfg.restart_needed);
    }).catch(() => {}));
    muteTimer = setInterval(refreshMutes, 5000);
  }
  return { unmount() { alive = false; clearInterval(muteTimer); stopResync(); if (usersSection) usersSection.unmount(); } };
}

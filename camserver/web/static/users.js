// "Users and tokens" (admin only): the users of http.users (name, role, whether the password is stored
// hashed), add one, change a password or a role, remove one; the viewer and admin tokens: whether set,
// a new random one (shown once), revoke. Every change is a PATCH /api/config with the version read
// (If-Match); the server hashes passwords before writing config.toml and applies users and tokens at
// once. mountUsers(container) is what the Settings view mounts.

import { ApiError, api, write } from "./api.js";
import { h, stateBlock } from "./ui.js";

const HIDDEN = "(hidden)"; // a redacted secret sent back: the server keeps the file's value
const TOKENS = [["token", "Viewer token", "watch: streams, snapshots, the API's reads"],
  ["admin_token", "Admin token", "change settings (as Authorization: Bearer only)"]];

/** A new random token: 32 bytes, base64url (43 characters). */
export function newToken() {
  const bytes = crypto.getRandomValues(new Uint8Array(32));
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** The merge patch that sets `user`'s entry (password: a new one, or HIDDEN to keep it; role). */
export function userPatch(name, password, role) {
  return { http: { users: { [name]: { password: password || HIDDEN, role } } } };
}

/** Mount the section in `container`; returns {unmount}. */
export function mountUsers(container, { request = write } = {}) {
  const status = h("p", { class: "form-message", role: "status", "aria-live": "polite" });
  const body = h("div", {}, stateBlock("loading", "Loading…"));
  const section = h("section", { class: "panel users-panel", "aria-labelledby": "users-title" },
    h("h2", { id: "users-title", text: "Users and tokens" }), body, status);
  container.append(section);
  let current = null; // GET /api/config's answer
  let stopped = false;

  function say(text, kind = "") {
    status.textContent = text;
    status.dataset.kind = kind;
  }

  async function load() {
    try {
      const session = await api("/api/session");
      if (!session.can_write) {
        body.replaceChildren(h("p", { text: "Only an admin can manage users and tokens." }));
        return;
      }
      current = await request("/api/config", { method: "GET" });
      if (!current || stopped) return;
      render();
    } catch (err) {
      body.replaceChildren(h("p", { class: "form-message", dataset: { kind: "error" }, text: `Cannot read the users: ${err.message}` }));
    }
  }

  async function send(patch, done) {
    say("Saving…");
    try {
      const answer = await request("/api/config", { method: "PATCH", body: patch,
        headers: { "If-Match": current.version, "Content-Type": "application/merge-patch+json" } });
      if (!answer) { say(""); return false; }
      const restart = answer.restart_needed || [];
      say(`${done}${restart.length ? ` — needs a restart: ${restart.join(", ")}` : " — applied at once."}`, "ok");
      await load();
      return true;
    } catch (err) {
      if (err instanceof ApiError && err.status === 412) {
        say("The configuration changed meanwhile: reloaded, try again.", "error");
        await load();
      } else if (err instanceof ApiError && err.body && Array.isArray(err.body.problems)) {
        say(err.body.problems.join(" "), "error");
      } else {
        say(err.message, "error");
      }
      return false;
    }
  }

  function roleSelect(value, label) {
    const select = h("select", { "aria-label": label },
      h("option", { value: "viewer", text: "viewer" }), h("option", { value: "admin", text: "admin" }));
    select.value = value;
    return select;
  }

  function userRow(user) {
    const role = roleSelect(user.role, `Role of ${user.name}`);
    role.addEventListener("change", () => send(userPatch(user.name, "", role.value), `${user.name} is now ${role.value}`));
    const pw = h("input", { type: "password", autocomplete: "new-password", "aria-label": `New password for ${user.name}`,
      placeholder: "new password", class: "users-password" });
    const setPw = h("button", { type: "button", text: "Set password", onclick: async () => {
      if (!pw.value) { say(`Type ${user.name}'s new password first.`, "error"); pw.focus(); return; }
      if (await send(userPatch(user.name, pw.value, user.role), `${user.name}'s password changed`)) pw.value = "";
    } });
    const remove = h("button", { type: "button", class: "danger", text: "Remove", onclick: () => {
      if (confirm(`Remove the user ${user.name}?`)) send({ http: { users: { [user.name]: null } } }, `${user.name} removed`);
    } });
    return h("tr", { dataset: { user: user.name } },
      h("th", { scope: "row", text: user.name }), h("td", {}, role),
      h("td", { text: user.hashed ? "hashed" : "plain text" }),
      h("td", { class: "users-actions" }, pw, setPw, remove));
  }

  function addForm() {
    const name = h("input", { id: "users-new-name", autocomplete: "off", required: true, maxlength: 64 });
    const pw = h("input", { id: "users-new-password", type: "password", autocomplete: "new-password", required: true });
    const role = roleSelect("viewer", "Role of the new user");
    const form = h("form", { class: "users-add" },
      h("label", { for: "users-new-name", text: "Name" }), name,
      h("label", { for: "users-new-password", text: "Password" }), pw, role,
      h("button", { type: "submit", class: "primary", text: "Add user" }));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const n = name.value.trim();
      if (!n || n.includes(":")) { say("A name is needed, without ':'.", "error"); return; }
      if ((current.users || []).some((u) => u.name === n)) { say(`${n} exists already.`, "error"); return; }
      if (await send({ http: { users: { [n]: { password: pw.value, role: role.value } } } }, `${n} added`)) form.reset();
    });
    return form;
  }

  function tokenRow([key, label, what]) {
    const set = Boolean(current.tokens && current.tokens[key]);
    const shown = h("div", { class: "token-shown" });
    const generate = h("button", { type: "button", text: set ? "Replace with a new one" : "Generate", onclick: async () => {
      const token = newToken();
      if (await send({ http: { [key]: token } }, `New ${label.toLowerCase()} saved`)) {
        const row = section.querySelector(`[data-token="${key}"] .token-shown`);
        if (row) row.replaceChildren(h("code", { class: "token-value", text: token }),
          h("span", { text: " Copy it now: it is not shown again." }));
      }
    } });
    const revoke = h("button", { type: "button", class: "danger", text: "Revoke", disabled: !set, onclick: () => {
      if (confirm(`Revoke the ${label.toLowerCase()}? Whoever uses it is refused from now on.`)) {
        send({ http: { [key]: "" } }, `${label} revoked`);
      }
    } });
    return h("div", { class: "token-row", dataset: { token: key } },
      h("p", {}, h("strong", { text: `${label}: ` }), set ? "set" : "not set", h("span", { class: "hint", text: ` (${what})` })),
      h("div", { class: "users-actions" }, generate, revoke), shown);
  }

  function render() {
    const users = current.users || [];
    const table = h("table", { class: "users-table" },
      h("thead", {}, h("tr", {}, ...["Name", "Role", "Password stored", ""].map((t) => h("th", { scope: "col", text: t })))),
      h("tbody", {}, ...users.map(userRow)));
    const plain = users.filter((u) => !u.hashed).map((u) => u.name);
    body.replaceChildren(
      users.length ? table : h("p", { text: "No users: the page is open, or guarded by tokens only." }),
      plain.length ? h("p", { class: "hint", text: `Stored in plain text: ${plain.join(", ")}. Set a password here to store it hashed.` }) : "",
      h("h3", { text: "Add a user" }), addForm(),
      h("h3", { text: "Tokens" }), ...TOKENS.map(tokenRow),
      h("p", { class: "hint", text: "Users and tokens apply at once; other page sessions log in again after a change." }));
  }

  load();
  return { unmount() { stopped = true; section.remove(); } };
}

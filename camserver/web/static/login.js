// The login form: the viewer or admin token, or a user name and password (http.token,
// http.admin_token, http.users); an admin's session may also change things.
// The server answers with an HttpOnly session cookie; the page never keeps the secret itself.

import { ApiError, api } from "./api.js";
import { h, setText } from "./ui.js";

/** Show the login form in `root`; resolves once logged in. */
export function showLogin(root, session) {
  return new Promise((resolve) => {
    const methods = session.methods || ["token"];
    const error = h("p", { class: "form-error", role: "alert" });
    const fields = [];
    if (methods.includes("password")) {
      fields.push(
        h("label", { for: "login-user", text: "User name" }),
        h("input", { id: "login-user", name: "user", autocomplete: "username", autocapitalize: "none" }),
        h("label", { for: "login-password", text: "Password" }),
        h("input", { id: "login-password", name: "password", type: "password", autocomplete: "current-password" }));
    }
    if (methods.includes("token")) {
      if (fields.length) fields.push(h("p", { class: "muted or", text: "or" }));
      fields.push(
        h("label", { for: "login-token", text: (session.admin_methods || []).includes("token") ? "Viewer or admin token" : "Viewer token" }),
        h("input", { id: "login-token", name: "token", type: "password", autocomplete: "current-password" }));
    }
    const button = h("button", { type: "submit", class: "primary", text: "Log in" });
    const form = h("form", { class: "login stack", "aria-labelledby": "login-title" },
      h("h1", { id: "login-title", text: "Log in to camserver" }),
      h("p", { class: "muted", text: "This server asks viewers for a credential (http.token or http.users in config.toml)." }),
      ...fields, error, button);
    root.replaceChildren(h("div", { class: "login-wrap" }, form));
    form.querySelector("input").focus();

    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const data = Object.fromEntries(new FormData(form));
      const body = data.token ? { token: data.token } : { user: data.user || "", password: data.password || "" };
      button.disabled = true;
      setText(error, "");
      try {
        await api("/api/login", { method: "POST", body });
        resolve();
      } catch (err) {
        if (err instanceof ApiError && err.status === 401) setText(error, "That did not work: check the token, or the user name and password.");
        else if (err instanceof ApiError && err.status === 429) setText(error, `Too many tries. ${err.message}.`);
        else setText(error, `Cannot log in: ${err.message}`);
        button.disabled = false;
      }
    });
  });
}

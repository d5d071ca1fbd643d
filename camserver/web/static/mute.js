// Mute: a camera's (or every camera's) notifications held for 30 min, 1 h or until turned back on.
// Events are still recorded. The tile shows a "muted" badge and a menu; the live view's head has one
// for all cameras. The server decides (POST/DELETE /api/cameras/<id>/mute, /api/mute); the state
// shown comes from /api/cameras (muted, muted_until, muted_by).

import { write } from "./api.js";
import { clock, h, setText } from "./ui.js";

const CHOICES = [
  ["", "Notifications on"],
  ["1800", "Mute 30 min"],
  ["3600", "Mute 1 h"],
  ["forever", "Mute until turned on"],
];

/** What a mute state says: "muted until 14:32", "muted" (until turned back on), or "". */
export function muteText(state) {
  if (!state || !state.muted) return "";
  const who = state.muted_by === "all" ? " (all cameras)" : "";
  return state.muted_until ? `muted until ${clock(state.muted_until)}${who}` : `muted${who}`;
}

function menu(label, onPick) {
  const select = h("select", { class: "mute-menu", "aria-label": label, title: label },
    CHOICES.map(([value, text]) => h("option", { value, text })),
    h("option", { value: "timed", text: "Muted for now", disabled: true, hidden: true }));
  select.addEventListener("change", () => onPick(select.value));
  return select;
}

async function send(path, value) {
  if (value === "") return write(path, { method: "DELETE" });
  return write(path, { body: { for_s: value === "forever" ? null : Number(value) } });
}

/** A tile's mute badge and menu: {badge, menu, update(cam)}; `changed()` is called after a change. */
export function cameraMute(id, changed) {
  const badge = h("span", { class: "badge badge-muted", hidden: true });
  let shown = null;
  const select = menu(`Notifications of ${id}`, async (value) => {
    select.disabled = true;
    try {
      await send(`/api/cameras/${encodeURIComponent(id)}/mute`, value);
    } catch (err) {
      window.alert(`Could not change the mute of ${id}: ${err.message}`);
    } finally {
      select.disabled = false;
      changed();
    }
  });
  return {
    badge,
    menu: select,
    update(cam) {
      const text = muteText(cam);
      setText(badge, text);
      badge.hidden = !text;
      // the menu shows the camera's own choice; a mute of all shows in the badge
      const own = cam.muted && cam.muted_by === "camera" ? (cam.muted_until ? "timed" : "forever") : "";
      if (own !== shown && document.activeElement !== select) {
        shown = own;
        select.value = own; // "timed": the badge says until when
      }
    },
  };
}

/** The live view's "all cameras" menu: {el, update(cams)}. */
export function allMute(changed) {
  const status = h("span", { class: "badge badge-muted", hidden: true });
  const select = menu("Notifications of all cameras", async (value) => {
    select.disabled = true;
    try {
      await send("/api/mute", value);
    } catch (err) {
      window.alert(`Could not change the mute of all cameras: ${err.message}`);
    } finally {
      select.disabled = false;
      changed();
    }
  });
  select.options[0].text = "All: notifications on";
  return {
    el: h("div", { class: "mute-all" }, status, select),
    update(cams) {
      const every = (cams || []).find((c) => c.muted_by === "all");
      const text = every ? muteText(every) : "";
      setText(status, text);
      status.hidden = !text;
      if (document.activeElement !== select) select.value = !every ? "" : every.muted_until ? "timed" : "forever";
    },
  };
}

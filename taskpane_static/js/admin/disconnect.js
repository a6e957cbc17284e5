// Disconnect one of the org's mailbox connections: a confirmation step, then DELETE. Sync stops for
// everyone read with it and its secrets are forgotten; the admin can connect again and re-activate.

import * as api from "../api.js";
import { byId, focus, setText, showActionError } from "../dom.js";

/** Show the Disconnect button of ``prefix`` only while its connection is set up. */
export function showDisconnect(prefix, connected) {
  byId(`${prefix}-disconnect`).hidden = !connected;
  if (!connected) {
    byId(`${prefix}-disconnect-confirm`).hidden = true;
    byId(`${prefix}-disconnect`).setAttribute("aria-expanded", "false");
  }
}

/**
 * Wire the Disconnect button and its confirmation for one connection.
 * ``{prefix, provider, reload, changed}``: the ids' prefix, the API's provider name, what to load
 * again afterwards, and who to tell the org's access changed (the Activate picker).
 */
export function initDisconnect({ prefix, provider, reload, changed }) {
  const open = byId(`${prefix}-disconnect`);
  const box = byId(`${prefix}-disconnect-confirm`);
  const yes = byId(`${prefix}-disconnect-yes`);
  const no = byId(`${prefix}-disconnect-no`);
  const status = byId(`${prefix}-disconnect-status`);
  const error = byId(`${prefix}-disconnect-error`);
  const close = () => {
    box.hidden = true;
    open.setAttribute("aria-expanded", "false");
  };
  open.addEventListener("click", () => {
    setText(status, "");
    showActionError(error, "");
    box.hidden = false;
    open.setAttribute("aria-expanded", "true");
    focus(no); // the safe choice first: Enter on a stray key press cancels
  });
  no.addEventListener("click", () => {
    close();
    focus(open);
  });
  yes.addEventListener("click", async () => {
    yes.disabled = true;
    setText(status, "Disconnecting\u2026");
    try {
      const answer = await api.disconnectAdminConnection(provider);
      close();
      await reload();
      changed();
      const n = answer.deactivated;
      setText(status, n ? `Disconnected. Sync is off for the ${n} ${n === 1 ? "person" : "people"} activated `
        + "through it." : "Disconnected.");
      focus(byId(`${prefix}-heading`));
    } catch (failure) {
      setText(status, "");
      showActionError(error, failure.message, yes);
    } finally {
      yes.disabled = false;
    }
  });
}

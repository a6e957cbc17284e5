// Mailbox access: the org's Microsoft 365 tenant consent, its state, and the check that resumes everyone.

import * as api from "../api.js";
import { byId, setText, showActionError } from "../dom.js";
import { initDisconnect, showDisconnect } from "./disconnect.js";
import { when } from "./view.js";

const STATES = {
  not_connected: "Not granted yet",
  ok: "Granted: mailboxes can be read app-only",
  broken: "Broken: sync is stopped for the people activated through it",
};

function fill(view) {
  setText(byId("access-ms-state"), STATES[view.state] || view.state);
  setText(byId("access-ms-tenant"), view.tenant_id || "\u2013");
  setText(byId("access-ms-when"), view.connected_at ? when(view.connected_at) : "\u2013");
  showActionError(byId("access-ms-error"), view.error ? `${view.error.message} (since ${when(view.error.since)})` : "");
  showDisconnect("access-ms", view.connected);
}

/** Load the Microsoft 365 access. */
export async function loadAccess() {
  fill(await api.getAdminMicrosoftAccess());
}

let hooks = { changed: () => {} };

/** Wire the consent and check buttons ({changed}: the org's access changed, e.g. for the Activate picker). */
export function initAccess(given) {
  hooks = { ...hooks, ...given };
  initDisconnect({ prefix: "access-ms", provider: "microsoft", reload: loadAccess, changed: () => hooks.changed() });
  byId("access-ms-consent").addEventListener("click", async () => {
    try {
      const { url } = await api.adminMicrosoftConsentUrl();
      window.location.assign(url);
    } catch (error) {
      showActionError(byId("access-ms-error"), error.message, byId("access-ms-consent"));
    }
  });
  byId("access-ms-check").addEventListener("click", async () => {
    setText(byId("access-ms-status"), "Checking\u2026");
    try {
      const view = await api.checkAdminMicrosoftAccess();
      fill(view);
      hooks.changed();
      setText(byId("access-ms-status"), view.check === "ok"
        ? `The connection works. ${view.resumed} people resumed.` : `Microsoft refused: ${view.check_message}`);
    } catch (error) {
      setText(byId("access-ms-status"), "");
      showActionError(byId("access-ms-error"), error.message, byId("access-ms-check"));
    }
  });
}

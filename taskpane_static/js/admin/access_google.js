// Mailbox access: the org's Google Workspace service account (domain-wide delegation), Save and Test.

import * as api from "../api.js";
import { byId, clearFieldError, setText, showActionError, showFieldError, whileBusy } from "../dom.js";
import { initDisconnect, showDisconnect } from "./disconnect.js";
import { when } from "./view.js";

const STATES = {
  not_connected: "Not set up yet",
  ok: "Set up: mailboxes are read through domain-wide delegation",
  broken: "Broken: sync is stopped for the people activated through it",
};
// A service account key is about 2.4 KB; anything much larger is not one.
const MAX_KEY_BYTES = 8 * 1024;
let hooks = { changed: () => {} };

function fill(view) {
  setText(byId("access-google-state"), STATES[view.state] || view.state);
  setText(byId("access-google-email"), view.client_email || "\u2013");
  setText(byId("access-google-client"), view.client_id || "\u2013");
  setText(byId("access-google-domain-shown"), (view.domains || []).join(", ") || "\u2013");
  setText(byId("access-google-when"), view.connected_at ? when(view.connected_at) : "\u2013");
  // What the Workspace administrator enters under Domain-wide delegation (text only, never markup).
  setText(byId("access-google-authorise-client"), view.client_id || "the client ID of the key you upload");
  setText(byId("access-google-scopes"), (view.scopes || []).join(","));
  if (view.domains && view.domains.length && !byId("access-google-domain").value) {
    byId("access-google-domain").value = view.domains.join(", ");
  }
  showActionError(byId("access-google-error"),
    view.error ? `${view.error.message} (since ${when(view.error.since)})` : "");
  showDisconnect("access-google", view.connected);
}

function readFile(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result || ""));
    reader.onerror = () => reject(new Error("The key file could not be read."));
    reader.readAsText(file);
  });
}

/** Load the Google Workspace access. */
export async function loadGoogleAccess() {
  fill(await api.getAdminGoogleAccess());
}

async function save(event) {
  event.preventDefault();
  const fileInput = byId("access-google-key");
  const domainInput = byId("access-google-domain");
  const keyError = byId("access-google-key-error");
  const domainError = byId("access-google-domain-error");
  clearFieldError(fileInput, keyError);
  clearFieldError(domainInput, domainError);
  showActionError(byId("access-google-error"), "");
  setText(byId("access-google-status"), "");
  const file = fileInput.files && fileInput.files[0];
  if (!file) {
    showFieldError(fileInput, keyError, "Choose the service account's JSON key file.");
    fileInput.focus();
    return;
  }
  if (file.size > MAX_KEY_BYTES) {
    showFieldError(fileInput, keyError, "This file is too large to be a service account key.");
    fileInput.focus();
    return;
  }
  const domain = domainInput.value.trim();
  if (!domain) {
    showFieldError(domainInput, domainError, "Enter your Google Workspace domain, for example example.com.");
    domainInput.focus();
    return;
  }
  const button = byId("access-google-save");
  await whileBusy(button, "Saving\u2026", async () => {
    try {
      const key = await readFile(file);
      const address = byId("access-google-address").value.trim();
      const view = await api.saveAdminGoogleAccess({ key, domain, address });
      fileInput.value = "";  // the key is not kept in the page once saved
      fill(view);
      setText(byId("access-google-status"), "Saved: Google accepted the key for this domain.");
      hooks.changed();
    } catch (error) {
      const fields = { domain: [domainInput, domainError], key: [fileInput, keyError] };
      const field = fields[error.field] || null;
      if (field) {
        showFieldError(field[0], field[1], error.message);
        field[0].focus();
      } else {
        showActionError(byId("access-google-error"), error.message, button);
      }
    }
  });
}

async function check() {
  const address = byId("access-google-address").value.trim();
  const button = byId("access-google-check");
  if (!address) {
    showActionError(byId("access-google-error"), "Enter the address of one mailbox to test with.", button);
    byId("access-google-address").focus();
    return;
  }
  setText(byId("access-google-status"), "Testing\u2026");
  await whileBusy(button, "Testing\u2026", async () => {
    try {
      const view = await api.checkAdminGoogleAccess(address);
      fill(view);
      setText(byId("access-google-status"), view.check === "ok"
        ? `The connection works. ${view.resumed} people resumed.` : `Google refused: ${view.check_message}`);
      hooks.changed();
    } catch (error) {
      setText(byId("access-google-status"), "");
      showActionError(byId("access-google-error"), error.message, button);
    }
  });
}

/** Wire Save and Test ({changed}: the org's access changed, e.g. for the Activate picker). */
export function initGoogleAccess(given) {
  hooks = { ...hooks, ...given };
  initDisconnect({ prefix: "access-google", provider: "google", reload: loadGoogleAccess,
    changed: () => hooks.changed() });
  byId("access-google-form").addEventListener("submit", save);
  byId("access-google-check").addEventListener("click", check);
}

// Mailbox access, on-premises Exchange: the org's service account (ApplicationImpersonation), its state, Test.
//
// The password is write-only: the API says only whether one is saved (password_saved), so the field is
// never filled back and is emptied after each Save.

import * as api from "../api.js";
import { byId, clearFieldError, focus, setText, showActionError, showFieldError } from "../dom.js";
import { initDisconnect, showDisconnect } from "./disconnect.js";
import { when } from "./view.js";

const STATES = {
  not_connected: "Not set up yet",
  ok: "Connected: the service account can impersonate the people you activate",
  broken: "Broken: sync is stopped for the people activated through it",
};
// The API field each input carries (a 400's `field` marks the input it names).
const FIELDS = { login: "access-ex-login", password: "access-ex-password", ews_url: "access-ex-url",
  address: "access-ex-hint" };

let hooks = { changed: () => {} };

function fill(view) {
  setText(byId("access-ex-state"), STATES[view.state] || view.state);
  setText(byId("access-ex-account"), view.login || "\u2013");
  const url = view.ews_url ? `${view.ews_url}${view.autodiscovered ? " (found by Autodiscover)" : ""}` : "\u2013";
  setText(byId("access-ex-ews"), url);
  setText(byId("access-ex-when"), view.connected_at ? when(view.connected_at) : "\u2013");
  setText(byId("access-ex-password-hint"), view.password_saved
    ? "A password is saved (never shown). Type it again to save a change." : "Not saved yet.");
  showActionError(byId("access-ex-broken"),
    view.error ? `${view.error.message} (since ${when(view.error.since)})` : "");
  showDisconnect("access-ex", view.connected);
  // An admin coming back sees the saved login, ready to edit; never the password.
  const login = byId("access-ex-login");
  if (!login.value && view.login) {
    login.value = view.login;
  }
  const ews = byId("access-ex-url");
  if (!ews.value && view.ews_url && !view.autodiscovered) {
    ews.value = view.ews_url;
  }
}

function clearErrors() {
  Object.values(FIELDS).forEach((id) => clearFieldError(byId(id), byId("access-ex-error")));
  showActionError(byId("access-ex-error"), "");
}

/** Load the Exchange service account's view. */
export async function loadExchangeAccess() {
  fill(await api.getAdminExchangeAccess());
}

async function save(event) {
  event.preventDefault();
  clearErrors();
  const status = byId("access-ex-status");
  const error = byId("access-ex-error");
  const login = byId("access-ex-login");
  const password = byId("access-ex-password");
  if (!login.value.trim()) {
    showFieldError(login, error, "Give the service account's login.");
    focus(login);
    return;
  }
  if (!password.value) {
    showFieldError(password, error, "Give the service account's password.");
    focus(password);
    return;
  }
  const button = byId("access-ex-save");
  button.disabled = true;
  setText(status, "Checking the service account with Exchange\u2026");
  try {
    const view = await api.saveAdminExchangeAccess({
      login: login.value.trim(), password: password.value, ewsUrl: byId("access-ex-url").value.trim(),
      address: byId("access-ex-hint").value.trim(),
    });
    password.value = "";
    fill(view);
    setText(status, "Service account saved.");
    hooks.changed();
  } catch (failure) {
    setText(status, "");
    const control = failure.field && FIELDS[failure.field] ? byId(FIELDS[failure.field]) : button;
    if (control === button) {
      showActionError(error, failure.message, button);
    } else {
      showFieldError(control, error, failure.message);
    }
  } finally {
    button.disabled = false;
  }
}

function testOutcome(view) {
  if (view.check !== "ok") {
    return `Exchange refused: ${view.check_message}`;
  }
  const resumed = view.resumed === 1 ? "1 person resumed" : `${view.resumed} people resumed`;
  return `The service account can read this mailbox. ${resumed}.`;
}

async function test(event) {
  event.preventDefault();
  const address = byId("access-ex-test-address");
  const status = byId("access-ex-test-status");
  const error = byId("access-ex-test-error");
  clearFieldError(address, error);
  if (!address.value.includes("@")) {
    showFieldError(address, error, "Give the email address of one mailbox to test with.");
    focus(address);
    return;
  }
  const button = byId("access-ex-test");
  button.disabled = true;
  setText(status, "Testing\u2026");
  try {
    const view = await api.checkAdminExchangeAccess(address.value.trim());
    fill(view);
    setText(status, testOutcome(view));
    hooks.changed();
  } catch (failure) {
    setText(status, "");
    showActionError(error, failure.message, button);
  } finally {
    button.disabled = false;
  }
}

/** Wire Save and Test ({changed}: the org's access changed, e.g. for the Activate picker). */
export function initExchangeAccess(given) {
  hooks = { ...hooks, ...given };
  initDisconnect({ prefix: "access-ex", provider: "exchange", reload: loadExchangeAccess,
    changed: () => hooks.changed() });
  byId("access-ex-form").addEventListener("submit", save);
  byId("access-ex-test-form").addEventListener("submit", test);
}

// The home view: the sync state at a glance, and the warning while sync is not activated.

import { byId, setText, setVisible } from "./dom.js";
import { formatWhen, providerName } from "./format.js";
import { disabledText, heldByAdmin, isSetUp, lastRunTime, stateText } from "./syncview.js";

/** Wire the home view. */
export function initHome(app) {
  byId("home-setup").addEventListener("click", () => app.show("settings"));
  byId("home-open-settings").addEventListener("click", () => app.show("settings"));
  byId("home-reconnect").addEventListener("click", () => app.reconnect());
}

/** Render the sync JSON on the home view. */
export function renderHome(sync) {
  const state = sync.state;
  const stateElement = byId("home-state");
  stateElement.dataset.state = state;
  setText(byId("home-state-label"), stateText(sync));

  // One line says the state: the banner when sync is not set up (titled by the state), else the card's line.
  setVisible(byId("home-not-activated"), !isSetUp(state));
  setText(byId("home-not-activated-title"), stateText(sync));
  setVisible(stateElement, isSetUp(state));
  const disabled = state === "disabled_error";
  setVisible(byId("home-disabled"), disabled);
  setText(byId("home-disabled-text"), disabledText(sync));
  // Every reconnect is refused while the administrator holds the mailbox off: no button that cannot work.
  setVisible(byId("home-reconnect"), disabled && !heldByAdmin(sync));

  const mailbox = sync.mailbox ? `${sync.mailbox} (${providerName(sync.provider)})` : "";
  setText(byId("home-mailbox"), mailbox);
  setVisible(byId("home-mailbox-row"), Boolean(mailbox));

  const last = lastRunTime(sync.last_run);
  setText(byId("home-last"), last ? formatWhen(last) : "");
  setVisible(byId("home-last-row"), Boolean(last));

  setText(byId("home-next"), sync.next_run ? formatWhen(sync.next_run) : "");
  setVisible(byId("home-next-row"), Boolean(sync.next_run));

  setVisible(byId("home-open-settings"), isSetUp(state));
}

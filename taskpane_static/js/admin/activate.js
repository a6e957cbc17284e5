// Activate: where the mailboxes are (the provider picker), addresses pasted or a CSV file, the job's
// progress n of N, the results per person.

import * as api from "../api.js";
import { byId, setText, setVisible, showActionError } from "../dom.js";
import { el } from "./view.js";

const RESULT_NAMES = {
  activated: "Activated",
  already_active: "Already active",
  no_salesforce_user: "No Salesforce user",
  salesforce_user_inactive: "Salesforce user inactive",
  no_mailbox: "No mailbox",
  mailbox_mismatch: "Mailbox does not match",
  not_allowed_by_tenant: "Not allowed by the tenant",
  salesforce_not_authorized: "Not authorised in Salesforce",
};
const POLL_MS = 1000;
// The picker's providers, in the order offered when none is chosen.
const PROVIDERS = ["microsoft", "exchange", "google"];
let hooks = { refreshUsers: () => {} };
let activatedIds = [];
// Per provider: its row of GET /api/admin/connections, or null when this server does not offer it.
let access = {};
// Once the admin picks a provider, loading the access states no longer moves the choice.
let pickedByHand = false;

function picked() {
  const radio = document.querySelector('input[name="activate-provider"]:checked');
  return radio ? radio.value : "microsoft";
}

function stateText(row) {
  if (!row) {
    return "Not available on this server yet";
  }
  if (row.state === "broken") {
    return "Set up, but broken: see Mailbox access";
  }
  return row.ready ? "Set up" : "Not set up yet: see Mailbox access";
}

function explain() {
  const row = access[picked()];
  // The server has the last word (409 org_access_missing, shown as it says); this warns before Activate.
  setText(byId("activate-provider-note"), row && !row.ready ? row.missing : "");
}

/** Show next to the picker whether each provider's org access is set up. */
export async function loadProviders() {
  const { providers } = await api.getAdminConnections();
  access = Object.fromEntries(providers.map((row) => [row.provider, row]));
  PROVIDERS.forEach((name) => {
    setText(byId(`activate-provider-${name}-state`), stateText(access[name]));
    // A provider this server cannot mass-activate is not offered; one merely not set up stays pickable.
    byId(`activate-provider-${name}`).disabled = !access[name];
  });
  // Until the admin chooses, offer the first provider that is set up.
  const first = PROVIDERS.find((name) => access[name] && access[name].ready);
  const current = access[picked()];
  if (!pickedByHand && first && !(current && current.ready)) {
    byId(`activate-provider-${first}`).checked = true;
  }
  explain();
}

function show(activation) {
  const bar = byId("activate-bar");
  bar.max = Math.max(1, activation.total);
  bar.value = activation.done;
  setVisible(bar, true);
  const state = activation.state === "done" ? "Done" : activation.state === "failed" ? "Stopped by an error" : "Working";
  setText(byId("activate-progress"), `${state}: ${activation.done} of ${activation.total} people`);
  const rows = byId("activate-body");
  rows.replaceChildren(...activation.results.map((row) => {
    const tr = el("tr");
    tr.append(el("td", row.address), el("td", RESULT_NAMES[row.result] || row.result), el("td", row.message));
    return tr;
  }));
  setVisible(byId("activate-table"), activation.results.length > 0);
  const link = byId("activate-download");
  link.href = `/api/admin/activations/${encodeURIComponent(activation.id)}/results.csv`;
  setVisible(link, activation.state === "done");
  activatedIds = activation.results.filter((row) => row.result === "activated").map((row) => row.user_id);
  setVisible(byId("activate-undo"), activation.state === "done" && activatedIds.length > 0);
}

async function undo() {
  const status = byId("activate-undo-status");
  try {
    const answer = await api.adminDeactivate(activatedIds);
    setText(status, `Sync turned off for ${answer.done} ${answer.done === 1 ? "person" : "people"}.`);
    setVisible(byId("activate-undo"), false);
    hooks.refreshUsers();
  } catch (error) {
    showActionError(byId("activate-error"), error.message, byId("activate-undo"));
  }
}

async function follow(id) {
  for (;;) {
    const activation = await api.getAdminActivation(id);
    show(activation);
    if (activation.state === "done" || activation.state === "failed") {
      hooks.refreshUsers();
      return;
    }
    await new Promise((resolve) => { setTimeout(resolve, POLL_MS); });
  }
}

async function start(event) {
  event.preventDefault();
  const error = byId("activate-error");
  showActionError(error, "");
  const file = byId("activate-file").files[0];
  const pasted = byId("activate-addresses").value.split(/[\s,;]+/).map((a) => a.trim()).filter(Boolean);
  const everyone = byId("activate-all").checked;
  if (!everyone && !file && !pasted.length) {
    showActionError(error, "Paste at least one address or choose a CSV file.", byId("activate-addresses"));
    return;
  }
  byId("activate-start").disabled = true;
  try {
    let started;
    const provider = picked();
    if (everyone) {
      started = await api.adminActivate("all", provider);
    } else {
      started = file ? await api.adminActivateCsv(await file.text(), provider) : await api.adminActivate(pasted, provider);
    }
    const id = started.job_id;
    setText(byId("activate-progress"), "Queued\u2026");
    await follow(id);
  } catch (failure) {
    showActionError(error, failure.message, byId("activate-addresses"));
  } finally {
    byId("activate-start").disabled = false;
  }
}

/** Wire the form ({refreshUsers}). */
export function initActivate(given) {
  hooks = { ...hooks, ...given };
  byId("activate-form").addEventListener("submit", start);
  byId("activate-undo").addEventListener("click", undo);
  byId("activate-providers").addEventListener("change", () => {
    pickedByHand = true;
    explain();
  });
}

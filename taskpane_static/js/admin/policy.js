// The org policy form: each value with its lock.

import * as api from "../api.js";
import { byId, setText, showActionError } from "../dom.js";

const NAMES = ["sync_emails", "sync_events", "cancelled_events", "backfill_days", "blocklist", "block_free_mail",
  "internal_domains", "admin_email", "mass_activated_may_pause", "mass_activated_may_deactivate"];
const CHECKBOXES = new Set(["sync_emails", "sync_events", "block_free_mail", "mass_activated_may_pause",
  "mass_activated_may_deactivate"]);
// Rules about mass-activated mailboxes, not defaults of a person's preference: no lock to set.
const UNLOCKABLE = new Set(["mass_activated_may_pause", "mass_activated_may_deactivate"]);
const LISTS = new Set(["blocklist", "internal_domains"]);
let hooks = { refreshAudit: () => {} };

function fill(policy) {
  NAMES.forEach((name) => {
    const entry = policy[name] || {};
    const control = byId(`pol-${name}`);
    if (CHECKBOXES.has(name)) {
      control.checked = Boolean(entry.value);
    } else if (LISTS.has(name)) {
      control.value = Array.isArray(entry.value) ? entry.value.join("\n") : "";
    } else if (name === "backfill_days") {
      control.value = entry.value >= 0 ? String(entry.value) : "";
    } else {
      control.value = entry.value || "";
    }
    if (!UNLOCKABLE.has(name)) {
      byId(`lock-${name}`).checked = Boolean(entry.locked);
    }
  });
}

function read() {
  const body = {};
  NAMES.forEach((name) => {
    const control = byId(`pol-${name}`);
    let value;
    if (CHECKBOXES.has(name)) {
      value = control.checked;
    } else if (LISTS.has(name)) {
      value = control.value.split(/[\s,;]+/).map((entry) => entry.trim()).filter(Boolean);
    } else if (name === "backfill_days") {
      value = control.value.trim() === "" ? -1 : Number(control.value);
    } else {
      value = control.value.trim();
    }
    body[name] = UNLOCKABLE.has(name) ? { value } : { value, locked: byId(`lock-${name}`).checked };
  });
  return body;
}

/** Load the policy into the form. */
export async function loadPolicy() {
  fill(await api.getAdminSettings());
}

/** Wire the form. */
export function initPolicy(options) {
  hooks = { ...hooks, ...options };
  byId("policy-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    showActionError(byId("policy-error"), "", byId("policy-save"));
    setText(byId("policy-status"), "");
    try {
      fill(await api.saveAdminSettings(read()));
      setText(byId("policy-status"), "Policy saved.");
      await hooks.refreshAudit();
    } catch (error) {
      showActionError(byId("policy-error"), error.message, byId("policy-save"));
      if (error.field) {
        const control = document.getElementById(`pol-${error.field}`);
        if (control) {
          control.focus();
        }
      }
    }
  });
}

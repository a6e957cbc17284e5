// Shared by the console's modules: words for states and providers, dates, building table cells.

import { formatDateTime, providerName } from "../format.js";

export const STATE_NAMES = {
  running: "Enabled",
  paused: "Paused",
  disabled_error: "Disabled due to an error",
  not_activated: "Not activated",
  deactivated: "Deactivated",
};

const ACCESS_NAMES = {
  delegated: "delegated", app_only: "app-only (admin consent)", impersonation: "service account", domain_wide: "domain-wide delegation", password: "password",
};

export const ACTION_NAMES = {
  sync: "Sync now", pause: "Pause", resume: "Resume", disable: "Disable", enable: "Enable", reset: "Reset",
  settings: "Changed the policy", mass_activate: "Activate", mass_deactivate: "Deactivate",
  disconnect_microsoft: "Disconnected Microsoft 365", disconnect_exchange: "Disconnected on-premises Exchange",
  disconnect_google: "Disconnected Google Workspace",
};

/** "Exchange · password", or "None yet". */
export function providerText(row) {
  if (!row.provider) {
    return "None yet";
  }
  const access = ACCESS_NAMES[row.access_type];
  return access ? `${providerName(row.provider)} \u00b7 ${access}` : providerName(row.provider);
}

/** A date, or "Never". */
export function when(value) {
  return value ? formatDateTime(value) : "Never";
}

/** A new element with text (never markup). */
export function el(tag, text, className) {
  const element = document.createElement(tag);
  if (text !== undefined && text !== null) {
    element.textContent = String(text);
  }
  if (className) {
    element.className = className;
  }
  return element;
}

/** The last run in words: time, counts, error. */
export function lastRunText(run) {
  if (!run) {
    return "No run yet";
  }
  const counts = run.counts || {};
  const parts = [when(run.finished_at), `${counts.written || 0} logged of ${counts.read || 0} read`];
  if (run.error) {
    parts.push(`error: ${run.error}`);
  }
  return parts.join(" \u00b7 ");
}

// The org's audit log: who did what, on whom, when (the last 200).

import * as api from "../api.js";
import { byId } from "../dom.js";
import { ACTION_NAMES, el, when } from "./view.js";

function whom(entry) {
  if (entry.action === "settings" || !entry.targets.length) {
    return "The organisation";
  }
  const names = (entry.target_names || []).filter(Boolean);
  if (names.length && names.length === entry.targets.length) {
    return names.join(", ");
  }
  return `${entry.targets.length} user(s)`;
}

function outcome(entry) {
  const detail = entry.detail || {};
  if (detail.changed) {
    return `Changed: ${detail.changed.join(", ")}`;
  }
  if (detail.total !== undefined) {
    return `${detail.total} address(es) processed`; // a mass activation: its results are per address
  }
  if (detail.done === undefined) {
    return "Done";
  }
  const refused = Object.keys(detail.refused || {}).length;
  return refused ? `Done for ${detail.done}, ${refused} refused` : `Done for ${detail.done}`;
}

/** Load the audit log. */
export async function loadAudit() {
  const body = await api.getAdminAudit();
  const rows = byId("audit-body");
  rows.replaceChildren();
  body.entries.forEach((entry) => {
    const tr = el("tr");
    tr.append(el("td", when(entry.at)), el("td", entry.actor_name || entry.actor),
      el("td", ACTION_NAMES[entry.action] || entry.action), el("td", whom(entry)), el("td", outcome(entry)));
    rows.append(tr);
  });
  if (!body.entries.length) {
    const tr = el("tr");
    const td = el("td", "No administrator action yet.");
    td.colSpan = 5;
    tr.append(td);
    rows.append(tr);
  }
}

/** Wire the refresh button. */
export function initAudit() {
  byId("audit-refresh").addEventListener("click", () => loadAudit());
}

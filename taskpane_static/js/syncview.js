// Reading the sync JSON of GET /api/sync (backend/api/sync.py sync_view) for display.

import { formatInterval } from "./format.js";

const FALLBACK_LABELS = {
  not_activated: "Sync is not activated",
  running: "Sync is running",
  paused: "Sync is paused",
  disabled_error: "Sync is disabled due to an error",
  deactivated: "Sync is deactivated",
};

/** True once a mailbox connection exists (running, paused or disabled by an error). */
export function isSetUp(state) {
  return state === "running" || state === "paused" || state === "disabled_error";
}

/** True when an administrator turned sync off for this mailbox: only they can turn it back on (no Reconnect). */
export function heldByAdmin(sync) {
  return sync.state === "disabled_error" && Boolean(sync.error) && sync.error.action === "ask_admin";
}

/** What the disabled bar says: the reason, and whom to ask when the administrator holds the mailbox. */
export function disabledText(sync) {
  if (sync.state !== "disabled_error" || !sync.error) {
    return "";
  }
  return heldByAdmin(sync) ? `${sync.error.message} Ask them to turn it back on.` : sync.error.message;
}

/** "Sync is running — every 30 minutes", "Sync is paused", ... */
export function stateText(sync) {
  const label = sync.state_label || FALLBACK_LABELS[sync.state] || sync.state;
  if (sync.state === "running") {
    return `${label} \u2014 ${formatInterval(sync.interval_seconds)}`;
  }
  return label;
}

function first(object, names) {
  for (const name of names) {
    if (object && object[name] !== undefined && object[name] !== null) {
      return object[name];
    }
  }
  return null;
}

/** When the last run ended (or started), as the API gave it. */
export function lastRunTime(lastRun) {
  return lastRun ? first(lastRun, ["finished_at", "ended_at", "at", "started_at"]) : null;
}

/** The last run's duration in seconds, or null. */
export function lastRunDuration(lastRun) {
  if (!lastRun) {
    return null;
  }
  const seconds = first(lastRun, ["duration_seconds", "duration"]);
  if (seconds !== null) {
    return Number(seconds);
  }
  const ms = first(lastRun, ["duration_ms"]);
  return ms !== null ? Number(ms) / 1000 : null;
}

/** The last run's counts (read, filtered, matched, written, duplicates, quarantined). */
export function lastRunCounts(lastRun) {
  const counts = (lastRun && (lastRun.counts || lastRun)) || {};
  const pick = (...names) => Number(first(counts, names)) || 0;
  return {
    read: pick("read"),
    filtered: pick("filtered"),
    matched: pick("matched"),
    written: pick("written"),
    duplicates: pick("duplicates", "skipped_duplicates", "duplicate"),
    quarantined: pick("quarantined"),
  };
}

/** Where the last run cut recipient lists (more than 2,000 on one item), in words, or "". */
export function lastRunCuts(lastRun) {
  const counts = (lastRun && (lastRun.counts || lastRun)) || {};
  const cut = Number(counts.recipients_cut) || 0;
  if (!cut) {
    return "";
  }
  const names = { inbox: "Inbox", sent: "Sent Items", calendar: "Calendar" };
  const where = Object.entries(counts.recipients_cut_by || {})
    .map(([folder, n]) => `${names[folder] || folder} ${n}`)
    .join(", ");
  const dropped = Number(counts.recipients_dropped) || 0;
  return `${cut} item${cut === 1 ? "" : "s"} (${where}): ${dropped} recipients past the first 2,000 not matched`;
}

/** The last run's error in words, or "". */
export function lastRunError(lastRun) {
  const error = lastRun && lastRun.error;
  if (!error) {
    return "";
  }
  if (typeof error === "string") {
    return error;
  }
  return typeof error.message === "string" ? error.message : String(error.code || "");
}

// Why items were skipped, in words (the run record's filtered_by keys: backend/sync/filters.py Reason).
const SKIP_WORDS = {
  free_mail: "free mail",
  internal: "only colleagues",
  blocked: "on your blocklist",
  blocked_org: "on your organisation's blocklist",
  private: "private",
  draft: "drafts",
  no_match: "no Contact or Lead",
  no_participants: "nobody else in it",
  too_long: "longer than 24 hours",
  no_start: "no start time",
  cancelled: "cancelled",
  emails_off: "emails turned off",
  events_off: "meetings turned off",
  unreadable: "unreadable",
};

/** One run in a line: "2 emails and 1 meeting logged; skipped: 3 free mail; 1 refused by Salesforce". */
export function runSummary(run) {
  const counts = (run && run.counts) || {};
  const parts = [];
  const emails = Number(counts.emails_written) || 0;
  const meetings = Number(counts.events_written) || 0;
  const plural = (n, one, many) => `${n} ${n === 1 ? one : many}`;
  if (emails || meetings) {
    const logged = [emails ? plural(emails, "email", "emails") : "", meetings ? plural(meetings, "meeting", "meetings") : ""];
    parts.push(`${logged.filter(Boolean).join(" and ")} logged`);
  } else {
    parts.push("nothing new logged");
  }
  const skipped = Object.entries(counts.filtered_by || {}).filter(([, n]) => Number(n) > 0)
    .map(([reason, n]) => `${n} ${SKIP_WORDS[reason] || reason.replace(/_/g, " ")}`);
  if (skipped.length) {
    parts.push(`skipped: ${skipped.join(", ")}`);
  }
  const refused = (Number(counts.quarantined) || 0);
  if (refused) {
    parts.push(`${refused} refused by Salesforce`);
  }
  const error = lastRunError(run);
  if (error) {
    parts.push(`error: ${error}`);
  }
  const text = parts.join("; ");
  return text.charAt(0).toUpperCase() + text.slice(1);
}

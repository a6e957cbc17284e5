// Words and numbers for people: times, durations, intervals, environments.

const ENVIRONMENTS = {
  production: "Production",
  sandbox: "Sandbox",
  mydomain: "My Domain",
};

const PROVIDERS = {
  exchange: "Exchange",
  microsoft: "Microsoft 365",
  google: "Gmail",
};

/** "Production", "Sandbox", "My Domain". */
export function environmentName(environment) {
  return ENVIRONMENTS[environment] || "";
}

/** "Exchange", "Microsoft 365", "Gmail". */
export function providerName(provider) {
  return PROVIDERS[provider] || provider || "";
}

/** A Date from an ISO 8601 string or epoch seconds, or null. */
export function toDate(value) {
  if (value === null || value === undefined || value === "") {
    return null;
  }
  const date = typeof value === "number" ? new Date(value * 1000) : new Date(value);
  return Number.isNaN(date.getTime()) ? null : date;
}

/** "21 Nov 2026, 14:05". */
export function formatDateTime(value) {
  const date = toDate(value);
  if (!date) {
    return "";
  }
  return date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

/** "14:05" (today) or "21 Nov, 14:05". */
export function formatClock(value) {
  const date = toDate(value);
  if (!date) {
    return "";
  }
  const today = new Date();
  if (date.toDateString() === today.toDateString()) {
    return date.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
  }
  return date.toLocaleString(undefined, { day: "numeric", month: "short", hour: "2-digit", minute: "2-digit" });
}

/** "5 minutes ago", "in 25 minutes", "just now". */
export function formatRelative(value, now = Date.now()) {
  const date = toDate(value);
  if (!date) {
    return "";
  }
  const seconds = Math.round((date.getTime() - now) / 1000);
  if (Math.abs(seconds) < 45) {
    return seconds > 0 ? "in less than a minute" : "just now";
  }
  const rtf = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
  const minutes = Math.round(seconds / 60);
  if (Math.abs(minutes) < 60) {
    return rtf.format(minutes, "minute");
  }
  const hours = Math.round(minutes / 60);
  if (Math.abs(hours) < 24) {
    return rtf.format(hours, "hour");
  }
  return rtf.format(Math.round(hours / 24), "day");
}

/** "14:05 (5 minutes ago)". */
export function formatWhen(value) {
  const clock = formatClock(value);
  if (!clock) {
    return "";
  }
  return `${clock} (${formatRelative(value)})`;
}

/** "0.8 s", "12 s", "2 min 5 s". */
export function formatDuration(seconds) {
  const value = Number(seconds);
  if (!Number.isFinite(value) || value < 0) {
    return "";
  }
  if (value < 10) {
    return `${value.toFixed(1)} s`;
  }
  if (value < 60) {
    return `${Math.round(value)} s`;
  }
  const minutes = Math.floor(value / 60);
  const rest = Math.round(value % 60);
  return rest ? `${minutes} min ${rest} s` : `${minutes} min`;
}

/** "every 30 minutes", "every hour", "every 2 hours". */
export function formatInterval(seconds) {
  const value = Number(seconds) || 1800;
  const minutes = Math.round(value / 60);
  if (minutes < 60 || minutes % 60 !== 0) {
    return `every ${minutes} minute${minutes === 1 ? "" : "s"}`;
  }
  const hours = minutes / 60;
  return hours === 1 ? "every hour" : `every ${hours} hours`;
}

/** "You can try again at 14:32." for a wait in seconds. */
export function retryText(retryAfterSeconds) {
  const seconds = Number(retryAfterSeconds);
  if (!Number.isFinite(seconds) || seconds <= 0) {
    return "";
  }
  const at = new Date(Date.now() + seconds * 1000);
  return `You can try again at ${at.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" })}.`;
}

/** A whole number for display ("1,204"), or "0". */
export function formatCount(value) {
  const number = Number(value);
  return Number.isFinite(number) ? number.toLocaleString() : "0";
}

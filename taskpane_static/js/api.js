// Every call the task pane and the admin console make to the Sidebar Sync API goes through this module.
//
// The pane lives in a cross-site iframe in Outlook on the web, where third-party cookies are
// blocked, so it authenticates with a bearer token (kept in localStorage) and never sends cookies.
// The admin console is a top-level page: its calls (`console: true`) send the session cookie
// instead, and every state-changing one carries the session's CSRF token.
// Every /api error is {"error": {"code", "message", ...}}; callers get an ApiError carrying them.

const TOKEN_KEY = "sidebarSync.session";

// 401 codes meaning "this pane's session is over": drop the token and show the login view.
// Other 401s (a mailbox proof refused at login, say) are errors of the action, not of the session.
const SESSION_ENDED = new Set([
  "unauthorized",
  "invalid_token",
  "token_expired",
  "token_revoked",
  "salesforce_revoked",
]);

const GENERIC_MESSAGES = {
  0: "Could not reach Sidebar Sync. Check your connection and try again.",
  400: "The request was not accepted.",
  401: "Log in to Salesforce first.",
  403: "You are not allowed to do this.",
  404: "Sidebar Sync could not find what was asked for.",
  409: "This cannot be done right now.",
  413: "What you sent is too large.",
  429: "Too many attempts. Try again later.",
  500: "Something went wrong on our side. Try again shortly.",
  502: "A service Sidebar Sync depends on did not answer. Try again shortly.",
  503: "Sidebar Sync is unavailable for a moment. Try again shortly.",
  504: "A service Sidebar Sync depends on took too long to answer. Try again shortly.",
};

/** An error the API returned (or a network failure, status 0), with a message for a person. */
export class ApiError extends Error {
  constructor(status, error) {
    const body = error && typeof error === "object" ? error : {};
    const message = typeof body.message === "string" && body.message
      ? body.message
      : GENERIC_MESSAGES[status] || GENERIC_MESSAGES[Math.floor(status / 100) * 100] || GENERIC_MESSAGES[500];
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = typeof body.code === "string" ? body.code : (status === 0 ? "network_error" : "http_error");
    this.field = typeof body.field === "string" ? body.field : null;
    this.retryAfter = Number.isFinite(Number(body.retry_after)) && body.retry_after !== null
      ? Number(body.retry_after) : null;
    this.details = body;
  }

  /** True when the session is over and the person must log in again. */
  get endsSession() {
    return this.status === 401 && SESSION_ENDED.has(this.code);
  }
}

// localStorage can throw (storage disabled, some embedded browsers); keep a copy in memory too.
let memoryToken = null;
const sessionEndedListeners = new Set();

function readStored() {
  try {
    const raw = window.localStorage.getItem(TOKEN_KEY);
    return raw ? JSON.parse(raw) : null;
  } catch {
    return memoryToken;
  }
}

/** The bearer token, or null (none, or expired by its own clock). */
export function getToken() {
  const stored = readStored() || memoryToken;
  if (!stored || typeof stored.token !== "string") {
    return null;
  }
  if (stored.expires_at && Date.parse(stored.expires_at) <= Date.now()) {
    clearToken();
    return null;
  }
  return stored.token;
}

/** Keep the token from POST /api/session. */
export function setToken(token, expiresAt) {
  memoryToken = { token, expires_at: expiresAt || null };
  try {
    window.localStorage.setItem(TOKEN_KEY, JSON.stringify(memoryToken));
  } catch {
    // Memory only: the person logs in again when the pane reloads.
  }
}

/** Forget the token. */
export function clearToken() {
  memoryToken = null;
  try {
    window.localStorage.removeItem(TOKEN_KEY);
  } catch {
    // Nothing stored.
  }
}

/** Call `listener(apiError)` whenever a call finds the session over (after the token is dropped). */
export function onSessionEnded(listener) {
  sessionEndedListeners.add(listener);
  return () => sessionEndedListeners.delete(listener);
}

let consoleCsrf = "";

/** Keep the console session's CSRF token (from GET /api/admin/session). */
export function setConsoleCsrf(token) {
  consoleCsrf = typeof token === "string" ? token : "";
}

async function request(method, path, { body, auth = true, token, console: fromConsole = false } = {}) {
  if (fromConsole) {
    return consoleRequest(method, path, body);
  }
  const headers = { Accept: "application/json" };
  const bearer = auth ? (token || getToken()) : null;
  if (auth && !bearer) {
    const error = new ApiError(401, { code: "unauthorized", message: "Log in to Salesforce first." });
    sessionEndedListeners.forEach((listener) => listener(error));
    throw error;
  }
  if (bearer) {
    headers.Authorization = `Bearer ${bearer}`;
  }
  const init = { method, headers, credentials: "omit", cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await send(path, init);
  const data = await jsonOf(response);
  if (!response.ok) {
    const error = new ApiError(response.status, data && data.error);
    // Only the session this call used can end here; a call made with an explicit old token
    // (logging out a previous account) must not end the new session.
    if (auth && !token && error.endsSession) {
      clearToken();
      sessionEndedListeners.forEach((listener) => listener(error));
    }
    throw error;
  }
  return data;
}

async function send(path, init) {
  try {
    return await fetch(path, init);
  } catch {
    throw new ApiError(0, null);
  }
}

async function jsonOf(response) {
  let data = null;
  const type = response.headers.get("Content-Type") || "";
  if (response.status !== 204 && type.includes("application/json")) {
    try {
      data = await response.json();
    } catch {
      data = null;
    }
  }
  return data;
}

async function consoleRequest(method, path, body) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") {
    headers["X-CSRF-Token"] = consoleCsrf;
  }
  const init = { method, headers, credentials: "same-origin", cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await send(path, init);
  const data = await jsonOf(response);
  if (!response.ok) {
    const error = new ApiError(response.status, data && data.error);
    if (error.endsSession) {
      sessionEndedListeners.forEach((listener) => listener(error));
    }
    throw error;
  }
  return data;
}

/** GET /api/config: providers, NAA settings, whether a mailbox proof is required (public). */
export function getConfig() {
  return request("GET", "/api/config", { auth: false });
}

/** POST /api/session: trade the dialog's one-time code for a bearer token (kept by the caller). */
export function createSession(code, mailbox, mailboxProof, verifier) {
  const body = { code, mailbox, verifier };
  if (mailboxProof) {
    body.mailbox_proof = mailboxProof;
  }
  return request("POST", "/api/session", { body, auth: false });
}

/** DELETE /api/session: log out (this token, or an explicit older one). */
export function deleteSession(token) {
  return request("DELETE", "/api/session", token ? { token } : {});
}

/** DELETE /api/sessions: log out everywhere (every task pane session of this user). */
export function deleteAllSessions() {
  return request("DELETE", "/api/sessions");
}

/** GET /api/me: the user, the add-in mailbox and the Salesforce account. */
export function getMe() {
  return request("GET", "/api/me");
}

/** POST /api/dialog: the start URL of a sign-in dialog for a logged-in pane. */
export function dialogUrl(provider, options = {}) {
  return request("POST", "/api/dialog", { body: { provider, ...options } });
}

/** GET /api/sync: the sync state the pane renders. */
export function getSync() {
  return request("GET", "/api/sync");
}

/** PUT /api/sync/settings: what to sync and the blocklist. */
export function saveSyncSettings(settings) {
  return request("PUT", "/api/sync/settings", { body: settings });
}

/** POST /api/sync/exchange: connect an on-premises Exchange mailbox. */
export function connectExchange({ login, password, ewsUrl }) {
  const body = { login, password };
  if (ewsUrl) {
    body.ews_url = ewsUrl;
  }
  return request("POST", "/api/sync/exchange", { body });
}

/** POST /api/sync/pause|resume|deactivate|run. */
export function syncAction(action) {
  if (!["pause", "resume", "deactivate", "run"].includes(action)) {
    throw new Error(`unknown sync action ${action}`);
  }
  return request("POST", `/api/sync/${action}`, { body: {} });
}

// --- The admin console (cookie session + CSRF) ------------------------------------------------

const ADMIN_ACTIONS = ["enable", "disable", "pause", "resume", "sync", "reset"];

function query(params) {
  const search = new URLSearchParams();
  Object.entries(params || {}).forEach(([name, value]) => {
    if (value !== undefined && value !== null && value !== "") {
      search.set(name, String(value));
    }
  });
  const text = search.toString();
  return text ? `?${text}` : "";
}

/** GET /api/admin/session: who is signed in to the console, is_admin, the CSRF token. */
export function getAdminSession() {
  return request("GET", "/api/admin/session", { console: true });
}

/** GET /api/admin/summary: the org at a glance. */
export function getAdminSummary() {
  return request("GET", "/api/admin/summary", { console: true });
}

/** GET /api/admin/users: a page of the org's users ({state, provider, q, sort, order, page, per_page}). */
export function getAdminUsers(params) {
  return request("GET", `/api/admin/users${query(params)}`, { console: true });
}

/** GET /api/admin/users/<id>: one user with runs and quarantined items. */
export function getAdminUser(uid) {
  return request("GET", `/api/admin/users/${encodeURIComponent(uid)}`, { console: true });
}

/** POST /api/admin/users/<id>/<action>. */
export function adminUserAction(uid, action) {
  if (!ADMIN_ACTIONS.includes(action)) {
    throw new Error(`unknown admin action ${action}`);
  }
  return request("POST", `/api/admin/users/${encodeURIComponent(uid)}/${action}`, { console: true });
}

/** POST /api/admin/users/bulk: one action on a selection. */
export function adminBulkAction(action, ids) {
  return request("POST", "/api/admin/users/bulk", { console: true, body: { action, ids } });
}

/** GET /api/admin/settings: the org policy. */
export function getAdminSettings() {
  return request("GET", "/api/admin/settings", { console: true });
}

/** PUT /api/admin/settings: change values and locks. */
export function saveAdminSettings(changes) {
  return request("PUT", "/api/admin/settings", { console: true, body: changes });
}

/** GET /api/admin/audit: the last 200 administrator actions. */
export function getAdminAudit() {
  return request("GET", "/api/admin/audit", { console: true });
}

/** GET /api/admin/connections/microsoft: the org's Microsoft 365 app-only access (no secret). */
export function getAdminMicrosoftAccess() {
  return request("GET", "/api/admin/connections/microsoft", { console: true });
}

/** POST /api/admin/connections/microsoft/consent: the admin-consent URL bound to this org. */
export function adminMicrosoftConsentUrl() {
  return request("POST", "/api/admin/connections/microsoft/consent", { console: true });
}

/** POST /api/admin/connections/microsoft/check: check the access now (everyone it stopped resumes). */
export function checkAdminMicrosoftAccess() {
  return request("POST", "/api/admin/connections/microsoft/check", { console: true });
}

/** GET /api/admin/connections/exchange: the org's Exchange service account (never its password). */
export function getAdminExchangeAccess() {
  return request("GET", "/api/admin/connections/exchange", { console: true });
}

/** PUT /api/admin/connections/exchange: save the service account once its login is proved. */
export function saveAdminExchangeAccess({ login, password, ewsUrl, address }) {
  const body = { login, password };
  // Empty means "not given": the server then uses Autodiscover and the admin's own address.
  if (ewsUrl) {
    body.ews_url = ewsUrl;
  }
  if (address) {
    body.address = address;
  }
  return request("PUT", "/api/admin/connections/exchange", { console: true, body });
}

/** POST /api/admin/connections/exchange/check: Test the service account against one mailbox. */
export function checkAdminExchangeAccess(address) {
  return request("POST", "/api/admin/connections/exchange/check", { console: true, body: { address } });
}

/** DELETE /api/admin/connections/{provider}: sync off for everyone read with it, its secrets forgotten. */
export function disconnectAdminConnection(provider) {
  return request("DELETE", `/api/admin/connections/${encodeURIComponent(provider)}`, { console: true });
}

/** GET /api/admin/connections: the providers mass activation supports, each set up or not (the picker). */
export function getAdminConnections() {
  return request("GET", "/api/admin/connections", { console: true });
}

/** POST /api/admin/activate: mass activation of addresses through `provider`; {job_id}. */
export function adminActivate(users, provider = "microsoft") {
  return request("POST", "/api/admin/activate", { console: true, body: { provider, users } });
}

/** POST /api/admin/activate with a CSV file's text, through `provider`; {job_id}. */
export async function adminActivateCsv(text, provider = "microsoft") {
  const response = await send(`/api/admin/activate?provider=${encodeURIComponent(provider)}`, {
    method: "POST", credentials: "same-origin", cache: "no-store", body: text,
    headers: { Accept: "application/json", "Content-Type": "text/csv", "X-CSRF-Token": consoleCsrf },
  });
  const data = await jsonOf(response);
  if (!response.ok) {
    throw new ApiError(response.status, data && data.error);
  }
  return data;
}

/** POST /api/admin/deactivate: turn sync off for mass-activated people. */
export function adminDeactivate(ids) {
  return request("POST", "/api/admin/deactivate", { console: true, body: { ids } });
}

/** GET /api/admin/activations/<id>: progress and results. */
export function getAdminActivation(id) {
  return request("GET", `/api/admin/activations/${encodeURIComponent(id)}`, { console: true });
}

/** POST /admin/logout: end the console session. */
export async function consoleLogout() {
  const response = await send("/admin/logout", {
    method: "POST", headers: { "X-CSRF-Token": consoleCsrf }, credentials: "same-origin", cache: "no-store",
  });
  if (!response.ok && response.status !== 204) {
    throw new ApiError(response.status, null);
  }
}

/** GET /api/items/status: what sync did with one email (message_id) or meeting (kind=event, item_id). */
export function getItemStatus(query) {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query)) {
    if (value !== undefined && value !== null && value !== "") {
      params.set(name, String(value));
    }
  }
  return request("GET", `/api/items/status?${params.toString()}`);
}

/** POST /api/items/log: Log it now (the server reads the item from the mailbox by Outlook's id). */
export function logItem(body) {
  return request("POST", "/api/items/log", { body });
}

/** POST /api/items/block: never log this address or domain (the person's blocklist). */
export function blockEntry(entry) {
  return request("POST", "/api/items/block", { body: { entry } });
}

// --- The admin console: the org's Google Workspace service account --------------------------

/** GET /api/admin/connections/google: the service account, the domain and what to authorise (never the key). */
export function getAdminGoogleAccess() {
  return request("GET", "/api/admin/connections/google", { console: true });
}

/** PUT /api/admin/connections/google: save the JSON key's text and the domain after Google accepts them. */
export function saveAdminGoogleAccess({ key, domain, address }) {
  const body = { key, domain };
  if (address) {
    body.address = address;
  }
  return request("PUT", "/api/admin/connections/google", { console: true, body });
}

/** POST /api/admin/connections/google/check: a delegated token for one mailbox (everyone it stopped resumes). */
export function checkAdminGoogleAccess(address) {
  return request("POST", "/api/admin/connections/google/check", { console: true, body: { address } });
}

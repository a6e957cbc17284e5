// The admin console: who is signed in, the sections, and what the sections share.

import * as api from "../api.js";
import { byId, focus, setText, setVisible, showActionError } from "../dom.js";
import { initAccess, loadAccess } from "./access.js";
import { initExchangeAccess, loadExchangeAccess } from "./access_exchange.js";
import { initGoogleAccess, loadGoogleAccess } from "./access_google.js";
import { initActivate, loadProviders } from "./activate.js";
import { initAudit, loadAudit } from "./audit.js";
import { initPolicy, loadPolicy } from "./policy.js";
import { initUsers, loadUsers } from "./users.js";
import { when } from "./view.js";

const VIEWS = ["view-signin", "view-denied", "view-console"];

function showView(id) {
  setVisible(byId("loading"), false);
  VIEWS.forEach((view) => setVisible(byId(view), view === id));
  setVisible(byId("nav"), id === "view-console");
}

function signIn(reason) {
  setVisible(byId("who"), false);
  setText(byId("signin-reason"), reason || "");
  showView("view-signin");
  focus(byId("main"));
}

/** Refresh the summary tiles. */
export async function loadSummary() {
  const summary = await api.getAdminSummary();
  Object.entries(summary.mailboxes || {}).forEach(([state, count]) => {
    const tile = document.getElementById(`sum-${state}`);
    if (tile) {
      setText(tile, count);
    }
  });
  setText(byId("sum-runs"), summary.runs_24h);
  setText(byId("sum-failures"), summary.failures_24h);
  const usage = summary.api_usage;
  setText(byId("sum-api"), usage
    ? `${usage.used.toLocaleString()} of ${usage.limit.toLocaleString()} (${usage.percent}%, budget ${usage.budget_percent}%)`
    : "Not known yet");
  const never = summary.never_succeeded ? `${summary.never_succeeded} never synced` : "";
  const oldest = summary.oldest_last_success_at ? when(summary.oldest_last_success_at) : "";
  setText(byId("sum-oldest"), [oldest, never].filter(Boolean).join(" \u00b7 ") || "\u2013");
}

/** Show an error of a whole section (a failed load). */
export function consoleError(error) {
  if (error && error.endsSession) {
    return;
  }
  showActionError(byId("console-error"), error ? error.message : "");
}

async function boot() {
  api.onSessionEnded((error) => signIn(error.message));
  byId("logout").addEventListener("click", async () => {
    try {
      await api.consoleLogout();
    } catch {
      // The session is gone either way for this page.
    }
    signIn("You are logged out.");
  });
  let session;
  try {
    session = await api.getAdminSession();
  } catch (error) {
    if (error.status === 401) {
      signIn("");
    } else {
      setText(byId("loading"), error.message);
    }
    return;
  }
  api.setConsoleCsrf(session.csrf);
  setText(byId("who-name"), `${session.user.name || session.user.username} (${session.user.username})`);
  setVisible(byId("who"), true);
  if (!session.is_admin) {
    showView("view-denied");
    focus(byId("denied-heading"));
    return;
  }
  showView("view-console");
  initUsers({ refreshSummary: () => loadSummary().catch(consoleError), refreshAudit: () => loadAudit() });
  initPolicy({ refreshAudit: () => loadAudit() });
  initAudit();
  const accessChanged = () => loadProviders().catch(consoleError);
  initAccess({ changed: accessChanged });
  initExchangeAccess({ changed: accessChanged });
  initGoogleAccess({ changed: accessChanged });
  initActivate({ refreshUsers: () => { loadUsers().catch(consoleError); loadSummary().catch(consoleError); } });
  await Promise.all([loadSummary(), loadUsers(), loadPolicy(), loadAudit(), loadAccess(),
    loadExchangeAccess(), loadGoogleAccess(), loadProviders()]
    .map((p) => p.catch(consoleError)));
}

boot();

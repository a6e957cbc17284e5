// The task pane's entry point: waits for Office, then shows the login view or the app.
//
// Views are sections of taskpane.html shown one at a time; moving between them moves focus to the
// new view's heading so keyboard and screen reader users land in the right place.
// Deep link: taskpane.html#sync-settings opens Sync settings (notification emails link there).

import * as api from "./api.js";
import { byId, focus, setText, setVisible, showActionError } from "./dom.js";
import { environmentName } from "./format.js";
import { initHome, renderHome } from "./home.js";
import { openInBrowser, ownUrl, whenReady } from "./host.js";
import { initItems } from "./items.js";
import { initLogin } from "./login.js";
import { setupMenu } from "./menu.js";
import { initSettings } from "./settings.js";
import { isSetUp } from "./syncview.js";

const VIEWS = {
  loading: ["view-loading", "loading-heading"],
  login: ["view-login", "login-heading"],
  home: ["view-home", "home-heading"],
  settings: ["view-settings", "settings-heading"],
};
const SETTINGS_HASH = "#sync-settings";
// After "Sync now" or a new connection, the pane looks for the run's result for a while.
const WATCH_DELAYS_MS = [2000, 3000, 5000];
const WATCH_STEP_MS = 5000;
const WATCH_MAX_MS = 3 * 60 * 1000;
const STALE_MS = 30 * 1000;

const app = {
  config: { providers: {}, naa: {} },
  me: null,
  sync: null,
  view: "loading",
  fetchedAt: 0,
};

let login;
let settings;
let menu;
let items;
let watchTimer = null;
// The view "Switch account" was chosen from, for Cancel.
let switchFrom = "home";
let wantSettings = window.location.hash === SETTINGS_HASH;
// The first view after loading keeps the browser's own focus; later view changes move it.
let firstView = true;

function loggedIn() {
  return app.view === "home" || app.view === "settings";
}

/** Show one view (and the header when logged in); focus its heading unless told not to. */
function show(name, { moveFocus = true } = {}) {
  for (const [view, [sectionId]] of Object.entries(VIEWS)) {
    setVisible(byId(sectionId), view === name);
  }
  const inApp = name === "home" || name === "settings";
  setVisible(byId("app-header"), inApp);
  // Messages about the previous view's actions do not belong to the next one.
  setText(byId("app-status"), "");
  showActionError(byId("app-error"), "");
  if (menu) {
    menu.close(false);
  }
  app.view = name;
  if (inApp) {
    wantSettings = false;
    const hash = name === "settings" ? SETTINGS_HASH : "";
    if (window.location.hash !== hash) {
      window.history.replaceState(null, "", `${window.location.pathname}${window.location.search}${hash}`);
    }
  }
  window.scrollTo(0, 0);
  if (moveFocus) {
    focus(byId(VIEWS[name][1]));
  }
  if (name === "settings" && Date.now() - app.fetchedAt > STALE_MS) {
    refreshSync();
  }
}

/** Render the sync JSON everywhere it shows. */
function setSync(sync) {
  const ranSince = app.sync && sync.last_run && JSON.stringify(app.sync.last_run) !== JSON.stringify(sync.last_run);
  app.sync = sync;
  app.fetchedAt = Date.now();
  renderHome(sync);
  settings.render(sync, app.config);
  items.renderMismatch();
  if (ranSince) {
    // A run ended: what it did with the open item may have changed ("Not yet" becomes an answer).
    items.refresh({ keepMessages: true });
  }
  setText(byId("menu-sync"), isSetUp(sync.state) ? "Sync settings" : "Set up sync");
}

function renderAccount(me) {
  const salesforce = (me && me.salesforce) || {};
  setText(byId("menu-account-name"), salesforce.username || (me && me.user && me.user.email) || "");
  let environment = environmentName(salesforce.environment);
  if (salesforce.environment === "mydomain" && salesforce.instance_url) {
    try {
      environment = `${environment} \u00b7 ${new URL(salesforce.instance_url).host}`;
    } catch {
      // Keep the plain name.
    }
  }
  setText(byId("menu-account-env"), environment);
  // Administration: for the org's Sidebar Sync administrators only (the API checks again).
  setVisible(byId("menu-admin"), Boolean(me && me.is_admin));
}

async function refreshSync() {
  if (!api.getToken()) {
    return;
  }
  try {
    setSync(await api.getSync());
  } catch (error) {
    if (!error.endsSession) {
      showActionError(byId("app-error"), error.message);
    }
  }
}

function stopWatching() {
  if (watchTimer !== null) {
    window.clearTimeout(watchTimer);
    watchTimer = null;
  }
}

/** Poll GET /api/sync for a while until the last run changes (after Sync now or a connection). */
function watchRuns() {
  stopWatching();
  const baseline = JSON.stringify(app.sync ? app.sync.last_run : null);
  const started = Date.now();
  let step = 0;
  const schedule = () => {
    const delay = step < WATCH_DELAYS_MS.length ? WATCH_DELAYS_MS[step] : WATCH_STEP_MS;
    step += 1;
    watchTimer = window.setTimeout(tick, delay);
  };
  const tick = async () => {
    watchTimer = null;
    try {
      const sync = await api.getSync();
      setSync(sync);
      const settled = JSON.stringify(sync.last_run) !== baseline && !sync.job;
      if (settled || sync.state !== "running" || Date.now() - started > WATCH_MAX_MS) {
        return;
      }
    } catch {
      return;
    }
    schedule();
  };
  schedule();
}

/** Load the user and the sync state, then show home (or Sync settings when linked there). */
async function enterApp() {
  showActionError(byId("app-error"), "");
  try {
    const [me, sync] = await Promise.all([api.getMe(), api.getSync()]);
    app.me = me;
    renderAccount(me);
    setSync(sync);
    items.refresh();
  } catch (error) {
    if (error.endsSession) {
      return; // the session-ended listener shows the login view with the reason
    }
    setText(byId("home-state-label"), "Sync status is unavailable right now.");
    show("home");
    showActionError(byId("app-error"), `Could not load your sync status. ${error.message}`);
    return;
  }
  show(wantSettings || window.location.hash === SETTINGS_HASH ? "settings" : "home", { moveFocus: !firstView });
  firstView = false;
}

/** Show the login view, with the reason the session ended (if any). */
function showLogin(reason, notice = "") {
  stopWatching();
  app.me = null;
  app.sync = null;
  settings.reset();
  login.prepare(reason);
  setText(byId("login-status"), notice);
  show("login", { moveFocus: !firstView });
  firstView = false;
}

/** A new session from the sign-in dialog. */
async function signedIn(session) {
  api.setToken(session.token, session.expires_at);
  await enterApp();
}

/** "Switch account": the login view in its switch mode; the current session stays until a new one exists. */
function switchAccount() {
  switchFrom = app.view;
  login.prepareSwitch(app.me);
  show("login");
}

/** Back from "Switch account" without switching. */
function cancelSwitch() {
  show(switchFrom === "settings" ? "settings" : "home", { moveFocus: false });
  focus(byId("menu-button"));
}

/** A new session from the switch-account dialog: it replaces the current one. */
async function switched(session) {
  const oldToken = api.getToken();
  api.setToken(session.token, session.expires_at);
  if (oldToken && oldToken !== session.token) {
    // The earlier account's session is no longer needed; its failure changes nothing here.
    api.deleteSession(oldToken).catch(() => {});
  }
  await enterApp();
  if (loggedIn()) {
    const name = app.me && app.me.salesforce ? app.me.salesforce.username : "";
    setText(byId("app-status"), name ? `Logged in to Salesforce as ${name}.` : "");
    focus(byId("menu-button"));
  }
}

async function logOut(everywhere = false) {
  try {
    await (everywhere ? api.deleteAllSessions() : api.deleteSession());
  } catch {
    // Logged out on the server already (or unreachable): forgetting the token is what matters.
  }
  api.clearToken();
  showLogin("", everywhere
    ? "You are logged out on every device. Sync keeps running on the server."
    : "You are logged out. Sync keeps running on the server.");
}

function reconnect() {
  if (app.view !== "settings") {
    show("settings", { moveFocus: false });
  }
  settings.reconnect(app.sync);
}

Object.assign(app, { show, setSync, signedIn, switched, cancelSwitch, reconnect, watchRuns, refreshSync });

function wire() {
  login = initLogin(app);
  settings = initSettings(app);
  initHome(app);
  items = initItems(app);
  menu = setupMenu(byId("menu-button"), byId("app-menu"));
  byId("menu-sync").addEventListener("click", () => show("settings"));
  byId("menu-admin").addEventListener("click", () => {
    menu.close(false);
    openInBrowser(ownUrl("/admin"));
  });
  byId("menu-switch").addEventListener("click", () => {
    menu.close(false);
    switchAccount();
  });
  byId("menu-logout").addEventListener("click", () => {
    menu.close(false);
    logOut();
  });
  byId("menu-logout-all").addEventListener("click", () => {
    menu.close(false);
    logOut(true);
  });
  byId("settings-back").addEventListener("click", () => show("home"));
  byId("settings-reconnect").addEventListener("click", () => reconnect());

  api.onSessionEnded((error) => {
    // Logged in (switching accounts included): leave the app for the login view with the reason.
    if (app.view !== "login" || app.me) {
      showLogin(error.message);
    } else {
      login.prepare(error.message);
    }
  });
  window.addEventListener("hashchange", () => {
    if (window.location.hash === SETTINGS_HASH) {
      if (loggedIn()) {
        show("settings");
      } else {
        wantSettings = true;
      }
    }
  });
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible" && loggedIn() && Date.now() - app.fetchedAt > STALE_MS) {
      refreshSync();
    }
  });
}

async function boot() {
  wire();
  await whenReady();
  items.listen();
  try {
    app.config = await api.getConfig();
  } catch (error) {
    showActionError(byId("app-error"), error.message);
  }
  if (api.getToken()) {
    await enterApp();
  } else {
    showLogin("");
  }
}

boot();

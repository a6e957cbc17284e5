// The Sync settings view: state, last and next run, controls, mailbox connection, what to sync.

import * as api from "./api.js";
import {
  byId,
  clearFieldError,
  focus,
  reveal,
  setText,
  setVisible,
  showActionError,
  showFieldError,
  whileBusy,
} from "./dom.js";
import { formatCount, formatDateTime, formatDuration, formatWhen, providerName, retryText } from "./format.js";
import { DialogError, openDialog } from "./host.js";
import { renderPolicy, withoutLocked } from "./policy.js";
import {
  disabledText,
  heldByAdmin,
  isSetUp,
  lastRunCounts,
  lastRunCuts,
  lastRunDuration,
  lastRunError,
  lastRunTime,
  runSummary,
  stateText,
} from "./syncview.js";

const PROVIDER_SECTIONS = {
  exchange: "provider-exchange",
  microsoft: "provider-microsoft",
  google: "provider-google",
};
const DEFAULT_ORDER = ["exchange", "microsoft", "google"];
const MAX_LOGIN = 256;
const EXCHANGE_FIELDS = { login: "exchange-login", password: "exchange-password", ews_url: "exchange-ews-url" };
const ADMIN_HINT = "Tell your Microsoft 365 administrator: \u201cPlease grant admin consent for Sidebar Sync in "
  + "Microsoft Entra ID (Enterprise applications) so I can connect my mailbox.\u201d";

// Words for what refuses connecting or resuming the mailbox, whatever the server's message
// (locked_by_admin on a setting is the policy's lock: its own message is shown there).
const MAILBOX_CODE_TEXT = {
  locked_by_admin: "Your administrator turned sync off for this mailbox. Ask them to turn it back on.",
};

/** An error message with "when to try again" for rate limits; ``codes`` gives words for some codes. */
function errorText(error, codes = {}) {
  if (error && typeof error.code === "string" && Object.hasOwn(codes, error.code)) {
    return codes[error.code];
  }
  if (error instanceof api.ApiError && error.code === "rate_limited" && error.retryAfter) {
    return `${error.message} ${retryText(error.retryAfter)}`.trim();
  }
  return error && error.message ? error.message : "Something went wrong. Try again.";
}

/** Wire the settings view; returns {render, reconnect}. */
export function initSettings(app) {
  const el = {
    exchangeForm: byId("exchange-form"),
    exchangeConnect: byId("exchange-connect"),
    exchangeStatus: byId("exchange-status"),
    exchangeError: byId("exchange-error"),
    login: byId("exchange-login"),
    password: byId("exchange-password"),
    ewsUrl: byId("exchange-ews-url"),
    moreToggle: byId("exchange-more-toggle"),
    more: byId("exchange-more"),
    microsoftConnect: byId("microsoft-connect"),
    microsoftStatus: byId("microsoft-status"),
    microsoftError: byId("microsoft-error"),
    googleConnect: byId("google-connect"),
    googleStatus: byId("google-status"),
    googleError: byId("google-error"),
    controlsStatus: byId("controls-status"),
    controlsError: byId("controls-error"),
    syncNow: byId("sync-now"),
    pause: byId("sync-pause"),
    resume: byId("sync-resume"),
    deactivate: byId("sync-deactivate"),
    confirm: byId("deactivate-confirm"),
    confirmYes: byId("deactivate-yes"),
    confirmNo: byId("deactivate-no"),
    settingsForm: byId("settings-form"),
    save: byId("settings-save"),
    saveStatus: byId("settings-save-status"),
    saveError: byId("settings-save-error"),
    emails: byId("set-emails"),
    events: byId("set-events"),
    blocklist: byId("set-blocklist"),
    blocklistError: byId("set-blocklist-error"),
  };
  let settingsDirty = false;
  // The values the form last showed (GET /api/sync's settings): Save sends only what the person changed,
  // so the org defaults the form merely echoes keep following the administrator.
  let shownSettings = {};
  // Messages that describe the sync state hold only while that state lasts: each remembers what
  // it said it about, and every render drops those the new state contradicts (one state, every line).
  const stateLines = new Map();

  function sayState(element, text, stillTrue) {
    setText(element, text);
    if (text) {
      stateLines.set(element, stillTrue);
    } else {
      stateLines.delete(element);
    }
  }

  function settleStateLines(sync) {
    for (const [element, stillTrue] of stateLines) {
      const text = stillTrue(sync);
      if (text === false || text === "") {
        setText(element, "");
        stateLines.delete(element);
      } else if (typeof text === "string") {
        setText(element, text);
      }
    }
  }

  /** "Connected to a@x. Sync is running — every 30 minutes." while that connection is the one in use. */
  function connectedLine(element, provider, address) {
    const line = (sync) => (sync.provider === provider && isSetUp(sync.state)
      ? `Connected to ${address || sync.mailbox}. ${stateText(sync)}.` : false);
    sayState(element, line(app.sync), line);
  }

  // --- Exchange --------------------------------------------------------------------------------
  function setMoreOpen(open) {
    setVisible(el.more, open);
    el.moreToggle.setAttribute("aria-expanded", String(open));
  }
  el.moreToggle.addEventListener("click", () => {
    // The EWS URL stays visible while it holds a value: hiding it would hide what will be sent.
    const open = el.moreToggle.getAttribute("aria-expanded") !== "true";
    setMoreOpen(open || Boolean(el.ewsUrl.value.trim()));
    if (open) {
      focus(el.ewsUrl);
    }
  });
  for (const id of Object.values(EXCHANGE_FIELDS)) {
    const input = byId(id);
    input.addEventListener("input", () => clearFieldError(input, byId(`${id}-error`)));
  }

  function clearExchangeErrors() {
    for (const id of Object.values(EXCHANGE_FIELDS)) {
      clearFieldError(byId(id), byId(`${id}-error`));
    }
    showActionError(el.exchangeError, "", el.exchangeConnect);
  }

  el.exchangeForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearExchangeErrors();
    setText(el.exchangeStatus, "");
    const login = el.login.value.trim();
    const password = el.password.value;
    const ewsUrl = el.ewsUrl.value.trim();
    if (!login) {
      showFieldError(el.login, byId("exchange-login-error"), "Enter your login: your email address or DOMAIN\\user.");
      focus(el.login);
      return;
    }
    if (login.length > MAX_LOGIN) {
      showFieldError(el.login, byId("exchange-login-error"), `Login is too long (at most ${MAX_LOGIN} characters).`);
      focus(el.login);
      return;
    }
    if (!password) {
      showFieldError(el.password, byId("exchange-password-error"), "Enter your password.");
      focus(el.password);
      return;
    }
    await whileBusy(el.exchangeConnect, "Connecting\u2026", async () => {
      setText(el.exchangeStatus, "Connecting to Exchange\u2026");
      try {
        const sync = await api.connectExchange({ login, password, ewsUrl });
        el.password.value = "";
        app.setSync(sync);
        connectedLine(el.exchangeStatus, "exchange", sync.mailbox || login);
        app.watchRuns();
      } catch (error) {
        // Never keep (or echo) a password that did not work.
        el.password.value = "";
        setText(el.exchangeStatus, "");
        if (error.endsSession) {
          return;
        }
        let message = errorText(error, MAILBOX_CODE_TEXT);
        if (ewsUrl) {
          // The EWS URL was entered: advice to enter it is no advice.
          message = message.replace(/,? or enter the EWS URL under More( \([^)]*\))?\./, ".")
            .replace(/ ?Enter the EWS URL under More( \([^)]*\))?\./, "").trim();
        }
        const fieldId = error.field && EXCHANGE_FIELDS[error.field];
        if (fieldId) {
          if (error.field === "ews_url") {
            setMoreOpen(true);
          }
          showFieldError(byId(fieldId), byId(`${fieldId}-error`), message);
          focus(byId(fieldId));
        } else {
          if (error.code === "ews_unreachable" || error.code === "not_ews") {
            // The next step the message suggests is the EWS URL under More: show it.
            setMoreOpen(true);
          }
          if (error.code === "ews_host_unconfirmed" && typeof error.details.ews_url === "string") {
            // Autodiscover named a host outside the login's domain: show it; connecting again with
            // it as the EWS URL (and the password typed again) is the person's confirmation.
            el.ewsUrl.value = error.details.ews_url;
            setMoreOpen(true);
            showActionError(el.exchangeError, `${message} To confirm, enter your password and connect again.`,
              el.exchangeConnect);
            focus(el.password);
            return;
          }
          showActionError(el.exchangeError, message, el.exchangeConnect);
          // Keyboard and screen reader users land on what went wrong.
          focus(el.exchangeError);
        }
      }
    });
  });

  // --- Microsoft 365 and Gmail (consent in the Office dialog) ----------------------------------
  async function connectByConsent(provider, button, status, errorElement, busyLabel) {
    showActionError(errorElement, "", button);
    setText(status, "");
    await whileBusy(button, busyLabel, async () => {
      try {
        const { url } = await api.dialogUrl(provider);
        setText(status, `Sign in to ${providerName(provider)} in the window that opened.`);
        const result = await openDialog(url);
        if (!result || result.status !== "ok") {
          throw Object.assign(new Error(result && result.error && result.error.message
            ? result.error.message : "The sign-in did not complete. Try again."), {
            code: result && result.error ? result.error.code : "sign_in_failed",
            details: (result && result.error) || {},
          });
        }
        const sync = await api.getSync();
        app.setSync(sync);
        connectedLine(status, provider, result.mailbox || sync.mailbox || providerName(provider));
        app.watchRuns();
      } catch (error) {
        setText(status, "");
        if (error.endsSession) {
          return;
        }
        showConsentError(errorElement, button, error);
        if (!(error instanceof DialogError && error.closedByUser)) {
          focus(errorElement);
        }
      }
    });
  }

  function showConsentError(errorElement, button, error) {
    const message = error instanceof DialogError ? error.message : errorText(error, MAILBOX_CODE_TEXT);
    showActionError(errorElement, message, button);
    if (error.code === "admin_approval_required") {
      // What it is, and what to tell the admin (with the consent link when the server gave one).
      const hint = document.createElement("p");
      hint.className = "form-error-detail";
      hint.textContent = ADMIN_HINT;
      errorElement.appendChild(hint);
      const link = error.details && error.details.admin_consent_url;
      if (typeof link === "string" && /^https:\/\//.test(link)) {
        const linkText = document.createElement("p");
        linkText.className = "form-error-detail copyable";
        linkText.textContent = `Approval link for your administrator: ${link}`;
        errorElement.appendChild(linkText);
      }
    }
  }

  el.microsoftConnect.addEventListener("click", () => connectByConsent(
    "microsoft", el.microsoftConnect, el.microsoftStatus, el.microsoftError, "Waiting for Microsoft\u2026",
  ));
  el.googleConnect.addEventListener("click", () => connectByConsent(
    "google", el.googleConnect, el.googleStatus, el.googleError, "Waiting for Google\u2026",
  ));

  // --- Pause, Resume, Sync now, Deactivate ------------------------------------------------------
  const DONE = {
    pause: "Sync is paused. Nothing is logged until you resume.",
    resume: "Sync resumed. A run starts now.",
    run: "Sync started. The result appears here when the run ends.",
    deactivate: "Sync is deactivated. The mailbox connection was removed; your Salesforce login stays.",
  };
  // The state each message is true in; "run" and "resume" only while their run is on its way.
  const DONE_WHILE = {
    pause: (sync) => sync.state === "paused",
    resume: (sync) => sync.state === "running" && Boolean(sync.job),
    run: (sync) => sync.state === "running" && Boolean(sync.job),
    deactivate: (sync) => sync.state === "deactivated" || sync.state === "not_activated",
  };

  async function control(action, button, busyLabel) {
    showActionError(el.controlsError, "", button);
    setText(el.controlsStatus, "");
    await whileBusy(button, busyLabel, async () => {
      try {
        const sync = await api.syncAction(action);
        // Said before rendering: a run that already ended (or a state changed meanwhile) drops it.
        sayState(el.controlsStatus, DONE[action], (next) => DONE_WHILE[action](next));
        app.setSync(sync);
        if (action === "run" || action === "resume") {
          app.watchRuns();
        }
      } catch (error) {
        if (!error.endsSession) {
          showActionError(el.controlsError, errorText(error, MAILBOX_CODE_TEXT), button);
          if (error.code === "invalid_state" || error.code === "locked_by_policy") {
            // The state or the org policy changed elsewhere (another device, the engine, the admin): show it now.
            await app.refreshSync();
          }
        }
      }
    });
    // The pressed button may be hidden now (Pause becomes Resume): keep focus somewhere sensible.
    if (button.hidden || document.activeElement === document.body) {
      focus(firstVisible([el.resume, el.pause, el.syncNow]) || byId("settings-heading"));
    }
  }

  function firstVisible(buttons) {
    return buttons.find((button) => !button.hidden) || null;
  }

  el.syncNow.addEventListener("click", () => control("run", el.syncNow, "Starting\u2026"));
  el.pause.addEventListener("click", () => control("pause", el.pause, "Pausing\u2026"));
  el.resume.addEventListener("click", () => control("resume", el.resume, "Resuming\u2026"));

  function setConfirmOpen(open) {
    setVisible(el.confirm, open);
    el.deactivate.setAttribute("aria-expanded", String(open));
  }
  el.deactivate.addEventListener("click", () => {
    const open = el.confirm.hidden;
    setConfirmOpen(open);
    if (open) {
      focus(el.confirmNo);
    }
  });
  el.confirmNo.addEventListener("click", () => {
    setConfirmOpen(false);
    focus(el.deactivate);
  });
  el.confirm.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      event.preventDefault();
      setConfirmOpen(false);
      focus(el.deactivate);
    }
  });
  el.confirmYes.addEventListener("click", async () => {
    await control("deactivate", el.confirmYes, "Deactivating\u2026");
    setConfirmOpen(false);
    focus(byId("connect-heading"));
  });

  // --- What to sync -----------------------------------------------------------------------------
  el.settingsForm.addEventListener("input", () => {
    settingsDirty = true;
    setText(el.saveStatus, "");
  });
  el.blocklist.addEventListener("input", () => clearFieldError(el.blocklist, el.blocklistError));

  el.settingsForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearFieldError(el.blocklist, el.blocklistError);
    showActionError(el.saveError, "", el.save);
    setText(el.saveStatus, "");
    const cancelled = el.settingsForm.querySelector('input[name="cancelled_events"]:checked');
    const body = {
      sync_emails: el.emails.checked,
      sync_events: el.events.checked,
      // One entry per line, empty lines included, so the server's "Line N" matches the box.
      blocklist: el.blocklist.value.replace(/\s+$/, "").split("\n").map((entry) => entry.trim()),
    };
    if (cancelled) {
      body.cancelled_events = cancelled.value;
    }
    await whileBusy(el.save, "Saving\u2026", async () => {
      try {
        const sync = await api.saveSyncSettings(changedSettings(withoutLocked(body)));
        settingsDirty = false;
        app.setSync(sync);
        setText(el.saveStatus, "Saved.");
      } catch (error) {
        if (error.endsSession) {
          return;
        }
        if (error.field === "blocklist") {
          showFieldError(el.blocklist, el.blocklistError, errorText(error));
          focus(el.blocklist);
        } else {
          showActionError(el.saveError, errorText(error), el.save);
        }
      }
    });
  });

  function fillSettings(settings) {
    if (settingsDirty || !settings) {
      return;
    }
    el.emails.checked = settings.sync_emails !== false;
    el.events.checked = settings.sync_events !== false;
    const mode = settings.cancelled_events === "delete" ? "delete" : "mark";
    byId(`set-cancelled-${mode}`).checked = true;
    el.blocklist.value = Array.isArray(settings.blocklist) ? settings.blocklist.join("\n") : "";
    shownSettings = { sync_emails: el.emails.checked, sync_events: el.events.checked, cancelled_events: mode,
      blocklist: el.blocklist.value };
  }

  /** The fields of `body` that differ from what the form showed (the blocklist compared as the box's text). */
  function changedSettings(body) {
    return Object.fromEntries(Object.entries(body).filter(([name, value]) => (name === "blocklist"
      ? el.blocklist.value !== shownSettings.blocklist : value !== shownSettings[name])));
  }

  // --- Rendering --------------------------------------------------------------------------------
  function renderStatus(sync) {
    const state = sync.state;
    byId("settings-state").dataset.state = state;
    setText(byId("settings-state-label"), stateText(sync));

    const mailbox = sync.mailbox ? `${sync.mailbox} \u00b7 ${providerName(sync.provider)}` : "";
    setText(byId("settings-mailbox"), mailbox ? `Mailbox: ${mailbox}` : "");
    setVisible(byId("settings-mailbox"), Boolean(mailbox));

    const disabled = state === "disabled_error";
    setVisible(byId("settings-disabled"), disabled);
    setText(byId("settings-disabled-text"), disabledText(sync));
    // Every reconnect is refused while the administrator holds the mailbox off: no button that cannot work.
    setVisible(byId("settings-reconnect"), disabled && !heldByAdmin(sync));
    const since = disabled && sync.error && sync.error.since ? formatDateTime(sync.error.since) : "";
    setText(byId("settings-disabled-since"), since ? `Since ${since}.` : "");

    setVisible(byId("settings-not-activated"), !isSetUp(state));
    const backoff = sync.backoff && sync.backoff.message;
    setVisible(byId("settings-backoff"), Boolean(backoff));
    setText(byId("settings-backoff-text"), backoff || "");
  }

  const JOB_TEXT = {
    queued: "A run is queued and starts shortly.",
    running: "A run is in progress\u2026",
    retry_scheduled: "The last attempt failed; it is retried shortly.",
  };

  function renderProgress(sync) {
    const text = sync.state === "running" ? JOB_TEXT[sync.job] || "" : "";
    setVisible(byId("run-progress"), Boolean(text));
    setText(byId("run-progress-text"), text);
  }

  function renderLastRun(lastRun) {
    setVisible(byId("last-run-none"), !lastRun);
    setVisible(byId("last-run"), Boolean(lastRun));
    if (!lastRun) {
      return;
    }
    setText(byId("last-run-when"), formatWhen(lastRunTime(lastRun)) || "\u2014");
    const duration = lastRunDuration(lastRun);
    setText(byId("last-run-duration"), duration !== null ? formatDuration(duration) : "");
    setVisible(byId("last-run-duration-row"), duration !== null);
    const counts = lastRunCounts(lastRun);
    for (const [name, value] of Object.entries(counts)) {
      setText(byId(`last-run-${name}`), formatCount(value));
    }
    const cuts = lastRunCuts(lastRun);
    setText(byId("last-run-cuts"), cuts);
    setVisible(byId("last-run-cuts-row"), Boolean(cuts));
    const error = lastRunError(lastRun);
    setText(byId("last-run-error"), error);
    setVisible(byId("last-run-error-row"), Boolean(error));
  }

  function renderRecentRuns(runs) {
    const list = byId("recent-runs");
    list.replaceChildren();
    for (const run of runs.slice(0, 10)) {
      const item = document.createElement("li");
      item.className = "recent-run";
      const when = document.createElement("span");
      when.className = "recent-run-when";
      when.textContent = `${formatWhen(lastRunTime(run)) || "\u2014"}${run.trigger === "log_now" ? " (Log it now)" : ""}`;
      const what = document.createElement("span");
      what.className = "recent-run-what";
      what.textContent = runSummary(run);
      item.append(when, what);
      list.appendChild(item);
    }
    setVisible(list, runs.length > 0);
    setVisible(byId("recent-runs-none"), runs.length === 0);
  }

  function renderNextRun(sync) {
    let text;
    if (sync.next_run) {
      text = formatWhen(sync.next_run);
    } else if (sync.state === "running") {
      text = "Soon";
    } else if (sync.state === "paused") {
      text = "None while sync is paused";
    } else if (heldByAdmin(sync)) {
      text = "None until your administrator turns sync back on";
    } else if (sync.state === "disabled_error") {
      text = "None until you reconnect";
    } else {
      text = "None until sync is set up";
    }
    setText(byId("next-run"), text);
  }

  function renderControls(sync) {
    const state = sync.state;
    // Pause / Deactivate the org policy refuses for a mass-activated mailbox: hidden, and the reason said.
    const locked = sync.locked_controls || {};
    setVisible(el.syncNow, state === "running");
    setVisible(el.pause, state === "running" && !locked.pause);
    setVisible(el.resume, state === "paused");
    setVisible(el.deactivate, isSetUp(state) && !locked.deactivate);
    setVisible(byId("sync-controls"), isSetUp(state));
    const reasons = [...new Set([state === "running" ? locked.pause : "", locked.deactivate]
      .filter((reason) => isSetUp(state) && reason))];
    setText(byId("controls-policy"), reasons.join(" "));
    setVisible(byId("controls-policy"), reasons.length > 0);
    if (!isSetUp(state) || locked.deactivate) {
      setConfirmOpen(false);
    }
  }

  function renderConnect(sync, config) {
    const providers = (config && config.providers) || {};
    const state = sync.state;
    let heading = "Connect your mailbox";
    let intro = "Choose where your mailbox lives. Sync then runs every 30 minutes, whether Outlook is open or not.";
    if (heldByAdmin(sync)) {
      heading = "Mailbox connection";
      intro = "Your administrator turned sync off for this mailbox; only they can turn it back on. Your "
        + "connection and where sync stopped are kept.";
    } else if (state === "disabled_error") {
      heading = "Reconnect your mailbox";
      intro = "Connect again with your current password or account to re-enable sync. Nothing is lost: sync "
        + "continues where it stopped.";
    } else if (isSetUp(state)) {
      heading = "Mailbox connection";
      intro = `Connected to ${sync.mailbox || "your mailbox"} (${providerName(sync.provider)}). Connect again after a `
        + "password change, or to switch how the mailbox is reached.";
    }
    setText(byId("connect-heading"), heading);
    setText(byId("connect-intro"), intro);

    setVisible(byId("provider-microsoft"), providers.microsoft !== false);
    setVisible(byId("provider-google"), providers.google === true);
    setVisible(byId("provider-exchange"), providers.exchange !== false);

    // The suggested provider (Microsoft 365 when the add-in runs there) comes first, then the
    // connected one; the rest keep their usual order.
    const lead = [sync.suggested_provider, sync.provider].filter((name) => PROVIDER_SECTIONS[name]);
    const order = [...new Set([...lead, ...DEFAULT_ORDER])];
    const container = byId("providers");
    for (const name of order) {
      container.appendChild(byId(PROVIDER_SECTIONS[name]));
    }

    const connection = sync.connection || {};
    if (!el.login.value && typeof connection.login === "string") {
      el.login.value = connection.login;
    }
    if (!el.ewsUrl.value && typeof connection.ews_url === "string") {
      el.ewsUrl.value = connection.ews_url;
    }
    if (el.ewsUrl.value.trim()) {
      setMoreOpen(true);
    }
  }

  return {
    /** Forget what the previous person typed or was told (after logging out). */
    reset() {
      for (const form of [el.exchangeForm, el.settingsForm]) {
        form.reset();
      }
      clearExchangeErrors();
      clearFieldError(el.blocklist, el.blocklistError);
      setMoreOpen(false);
      setConfirmOpen(false);
      settingsDirty = false;
      shownSettings = {};
      stateLines.clear();
      for (const id of ["exchange-status", "microsoft-status", "google-status", "controls-status",
        "settings-save-status"]) {
        setText(byId(id), "");
      }
      for (const [element, button] of [[el.microsoftError, el.microsoftConnect], [el.googleError, el.googleConnect],
        [el.controlsError, null], [el.saveError, el.save]]) {
        showActionError(element, "", button);
      }
    },

    /** Render everything from the sync JSON. */
    render(sync, config) {
      settleStateLines(sync);
      renderRecentRuns(sync.recent_runs || []);
      setText(byId("interval-text"), sync.interval && sync.interval.text && isSetUp(sync.state)
        ? `Background sync runs ${sync.interval.text}. Sync now does not change that.`
          + (sync.instant_sync && sync.instant_sync.text ? ` ${sync.instant_sync.text}.` : "") : "");
      renderStatus(sync);
      renderProgress(sync);
      renderLastRun(sync.last_run);
      renderNextRun(sync);
      renderControls(sync);
      renderConnect(sync, config);
      fillSettings(sync.settings);
      renderPolicy(sync.policy);
    },

    /** Lead the person to the connect form of the provider sync used (after "Reconnect"). */
    reconnect(sync) {
      const provider = sync && sync.provider;
      if (provider === "exchange") {
        reveal(byId("provider-exchange"));
        focus(el.login.value ? el.password : el.login);
      } else if (provider === "microsoft") {
        reveal(byId("provider-microsoft"));
        focus(el.microsoftConnect);
      } else if (provider === "google") {
        reveal(byId("provider-google"));
        focus(el.googleConnect);
      } else {
        reveal(byId("connect-heading"));
      }
    },
  };
}

/* global Office */
// The Office host: readiness, the add-in mailbox, and sign-in dialogs.
//
// Sign-in pages run in the Office dialog (a top-level window where the server's session cookie is
// first-party) and hand their result back as a JSON string through messageParent. Opened outside
// Office (a plain browser, for development), the pane falls back to a popup window whose final
// page posts the same string to its opener, on our own origin only.

const DIALOG_OPTIONS = { height: 60, width: 30, promptBeforeOpen: false };
const BROWSER_MESSAGE_TYPE = "sidebar-sync-dialog";

// Words for the Office dialog error codes a person can meet.
const DIALOG_ERRORS = {
  12002: "The sign-in page could not be opened. Try again.",
  12003: "The sign-in page must use https.",
  12004: "The sign-in page is not on a domain this add-in trusts.",
  12005: "The sign-in page must use https.",
  12006: "The sign-in window was closed before you finished.",
  12007: "A sign-in window is already open. Finish or close it first.",
  12009: "The sign-in window was blocked. Allow it when Outlook asks, then try again.",
  12011: "Your browser blocked the sign-in window. Allow pop-ups for Outlook, then try again.",
};

/** A sign-in dialog that did not finish (closed, blocked, failed to open). */
export class DialogError extends Error {
  constructor(code) {
    super(DIALOG_ERRORS[code] || `The sign-in window could not be used (error ${code}). Try again.`);
    this.name = "DialogError";
    this.code = code;
    this.closedByUser = code === 12006;
  }
}

function office() {
  return typeof Office !== "undefined" ? Office : null;
}

/** Resolves with Office.onReady's info, or null when office.js is not there (plain browser, offline). */
export function whenReady() {
  const host = office();
  if (!host || typeof host.onReady !== "function") {
    return Promise.resolve(null);
  }
  return new Promise((resolve) => {
    host.onReady((info) => resolve(info || null));
  });
}

/** The Office mailbox object, or null outside Outlook. */
export function mailbox() {
  try {
    const host = office();
    return (host && host.context && host.context.mailbox) || null;
  } catch {
    return null;
  }
}

/** The add-in mailbox's address as Outlook reports it (a claim; the proof backs it), or "". */
export function mailboxAddress() {
  try {
    const box = mailbox();
    const address = box && box.userProfile && box.userProfile.emailAddress;
    return typeof address === "string" ? address.trim() : "";
  } catch {
    return "";
  }
}

function addressOf(detail) {
  return detail && typeof detail.emailAddress === "string" ? detail.emailAddress.trim() : "";
}

function isoOf(value) {
  const date = value instanceof Date ? value : (value ? new Date(value) : null);
  return date && !Number.isNaN(date.getTime()) ? date.toISOString() : "";
}

/**
 * The email or meeting open next to the pane (read surfaces), or null: {kind: "email"|"event",
 * messageId, itemId, restId, date, from, people}. Only identifiers and addresses are read, never content.
 */
export function currentItem() {
  try {
    const box = mailbox();
    const item = box && box.item;
    if (!item) {
      return null;
    }
    const host = office();
    const types = (host && host.MailboxEnums && host.MailboxEnums.ItemType) || { Message: "message", Appointment: "appointment" };
    const kind = item.itemType === types.Appointment ? "event" : item.itemType === types.Message ? "email" : "";
    if (!kind) {
      return null;
    }
    const itemId = typeof item.itemId === "string" ? item.itemId : "";
    let restId = "";
    if (itemId && typeof box.convertToRestId === "function") {
      try {
        const version = host.MailboxEnums && host.MailboxEnums.RestVersion ? host.MailboxEnums.RestVersion.v2_0 : "v2.0";
        restId = box.convertToRestId(itemId, version);
      } catch {
        restId = "";
      }
    }
    const list = (value) => (Array.isArray(value) ? value.map(addressOf).filter(Boolean) : []);
    const from = kind === "email" ? addressOf(item.from) : addressOf(item.organizer);
    const people = kind === "email"
      ? [from, ...list(item.to), ...list(item.cc)]
      : [from, ...list(item.requiredAttendees), ...list(item.optionalAttendees)];
    return {
      kind,
      messageId: kind === "email" && typeof item.internetMessageId === "string" ? item.internetMessageId : "",
      itemId,
      restId,
      date: isoOf(kind === "email" ? item.dateTimeCreated : item.start),
      from,
      people: people.filter(Boolean),
    };
  } catch {
    return null;
  }
}

/** Call `handler()` whenever Outlook's selected item changes (a pinned pane stays open across items). */
export function onItemChanged(handler) {
  const host = office();
  const box = mailbox();
  if (!host || !box || typeof box.addHandlerAsync !== "function" || !host.EventType || !host.EventType.ItemChanged) {
    return;
  }
  box.addHandlerAsync(host.EventType.ItemChanged, () => handler());
}

/** Office.context.requirements.isSetSupported, false outside Office. */
export function isSetSupported(name, version) {
  try {
    const host = office();
    return Boolean(host && host.context && host.context.requirements
      && host.context.requirements.isSetSupported(name, version));
  } catch {
    return false;
  }
}

function hasDialogApi() {
  const host = office();
  return Boolean(host && host.context && host.context.ui
    && typeof host.context.ui.displayDialogAsync === "function");
}

function parseResult(message) {
  try {
    const payload = JSON.parse(message);
    if (payload && typeof payload === "object" && typeof payload.status === "string") {
      return payload;
    }
  } catch {
    // fall through
  }
  return {
    status: "error",
    error: { code: "bad_dialog_message", message: "The sign-in window sent an answer Sidebar Sync could not read. Try again." },
  };
}

function openOfficeDialog(url) {
  const host = office();
  return new Promise((resolve, reject) => {
    host.context.ui.displayDialogAsync(url, DIALOG_OPTIONS, (result) => {
      if (result.status === host.AsyncResultStatus.Failed) {
        reject(new DialogError(result.error && result.error.code));
        return;
      }
      const dialog = result.value;
      let settled = false;
      dialog.addEventHandler(host.EventType.DialogMessageReceived, (arg) => {
        // Only our own pages end a sign-in; a provider's page must not speak for them, and a
        // message whose origin Office does not tell is refused too.
        if (settled || arg.origin !== window.location.origin) {
          return;
        }
        settled = true;
        try {
          dialog.close();
        } catch {
          // Already closed.
        }
        resolve(parseResult(arg.message));
      });
      dialog.addEventHandler(host.EventType.DialogEventReceived, (arg) => {
        if (settled) {
          return;
        }
        settled = true;
        reject(new DialogError(arg && arg.error));
      });
    });
  });
}

function openBrowserWindow(url) {
  return new Promise((resolve, reject) => {
    const popup = window.open(url, "sidebar-sync-signin", "popup,width=520,height=700");
    if (!popup) {
      reject(new DialogError(12011));
      return;
    }
    let timer = null;
    const finish = () => {
      window.removeEventListener("message", onMessage);
      window.clearInterval(timer);
    };
    const onMessage = (event) => {
      if (event.source !== popup || event.origin !== window.location.origin) {
        return;
      }
      const data = event.data;
      if (!data || data.type !== BROWSER_MESSAGE_TYPE || typeof data.result !== "string") {
        return;
      }
      finish();
      popup.close();
      resolve(parseResult(data.result));
    };
    window.addEventListener("message", onMessage);
    timer = window.setInterval(() => {
      if (popup.closed) {
        finish();
        reject(new DialogError(12006));
      }
    }, 400);
  });
}

/**
 * Open a sign-in dialog at `url` (on this origin) and resolve with the JSON its last page hands
 * back: {"status": "ok", ...} or {"status": "error", "error": {code, message}}. Rejects with a
 * DialogError when the dialog is closed, blocked or cannot open.
 */
export function openDialog(url) {
  return hasDialogApi() ? openOfficeDialog(url) : openBrowserWindow(url);
}

/** An absolute URL on the pane's own origin (the first dialog page must be on it). */
export function ownUrl(path) {
  return new URL(path, window.location.origin).toString();
}

/**
 * Open `url` in the person's browser, outside Outlook (the admin console is a wide page):
 * Office.context.ui.openBrowserWindow where the host has it, a new tab otherwise.
 */
export function openInBrowser(url) {
  const host = office();
  if (host && host.context && host.context.ui && typeof host.context.ui.openBrowserWindow === "function") {
    host.context.ui.openBrowserWindow(url);
    return;
  }
  window.open(url, "_blank", "noopener");
}

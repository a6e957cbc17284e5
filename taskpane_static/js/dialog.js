/* global Office */
// The last page of a sign-in dialog (backend/templates/dialog_result.html) hands its result, a
// JSON string in #dialog-result's data-result attribute, to the task pane with messageParent.
// Opened in a plain browser (no Office), the page stays as it is, except that a popup opened by
// the task pane on our own origin (the pane's development fallback) gets the same string.

const BROWSER_MESSAGE_TYPE = "sidebar-sync-dialog";

function resultString() {
  const holder = document.getElementById("dialog-result");
  const value = holder ? holder.getAttribute("data-result") : null;
  return typeof value === "string" && value ? value : null;
}

function openerOnOurOrigin() {
  try {
    // Reading the opener's origin throws when it is another site's window: then it gets nothing.
    return Boolean(window.opener && window.opener.location.origin === window.location.origin);
  } catch {
    return false;
  }
}

function deliver(info) {
  const result = resultString();
  if (!result) {
    return;
  }
  const ui = typeof Office !== "undefined" && Office.context ? Office.context.ui : null;
  let sent = false;
  if (ui && typeof ui.messageParent === "function") {
    try {
      // Office keeps the dialog's host information across the provider's redirects, so this
      // works on our callback page even though the dialog visited another site in between.
      // Only a pane on our own origin may receive the code.
      ui.messageParent(result, { targetOrigin: window.location.origin });
      sent = true;
    } catch {
      // Not inside an Office dialog after all.
    }
  }
  const inOffice = Boolean(info && info.host);
  if ((!sent || !inOffice) && openerOnOurOrigin()) {
    window.opener.postMessage({ type: BROWSER_MESSAGE_TYPE, result }, window.location.origin);
  }
}

if (typeof Office !== "undefined" && typeof Office.onReady === "function") {
  Office.onReady((info) => deliver(info));
} else {
  deliver(null);
}

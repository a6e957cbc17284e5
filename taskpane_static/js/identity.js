// The best proof of the add-in mailbox the host offers, sent with POST /api/session.
//
// Microsoft 365: a Nested App Authentication (NAA) access token for our API, from MSAL.js.
// On-premises Exchange: the Exchange identity token (getUserIdentityTokenAsync), which Microsoft
// 365 no longer issues. Neither available: no proof; the server answers mailbox_proof_required
// when it insists, and the pane shows that message.

import { isSetSupported, mailbox } from "./host.js";

// MSAL.js is loaded only when NAA is possible. NAA needs MSAL.js 3.11 or later
// (createNestablePublicClientApplication), and Microsoft's CDN hosts only 2.x builds, so the backend
// serves a vendored copy and names it in /api/config as `naa.msal_url`. The CDN build below is the
// fallback for a backend that names none: finding no NAA in it, the pane tries the next proof.
const MSAL_URL = "https://alcdn.msauth.net/browser/2.35.0/js/msal-browser.min.js";
const DEFAULT_AUTHORITY = "https://login.microsoftonline.com/common";
const HOST_TIMEOUT_MS = 15000;

let msalLoading = null;

function loadScript(src) {
  return new Promise((resolve, reject) => {
    const script = document.createElement("script");
    script.src = src;
    script.async = true;
    script.addEventListener("load", () => resolve());
    script.addEventListener("error", () => reject(new Error("MSAL.js did not load")));
    document.head.appendChild(script);
  });
}

async function loadMsal(url) {
  if (window.msal && typeof window.msal.createNestablePublicClientApplication === "function") {
    return window.msal;
  }
  if (!msalLoading) {
    msalLoading = loadScript(url || MSAL_URL).finally(() => {
      msalLoading = null;
    });
  }
  await msalLoading;
  const msal = window.msal;
  if (!msal || typeof msal.createNestablePublicClientApplication !== "function") {
    throw new Error("this MSAL.js has no Nested App Authentication");
  }
  return msal;
}

function withTimeout(promise, ms) {
  return new Promise((resolve, reject) => {
    const timer = window.setTimeout(() => reject(new Error("timed out")), ms);
    promise.then(
      (value) => {
        window.clearTimeout(timer);
        resolve(value);
      },
      (error) => {
        window.clearTimeout(timer);
        reject(error);
      },
    );
  });
}

/** An NAA access token for our API scope, or null. */
async function naaToken(naa) {
  const msal = await loadMsal(naa.msal_url);
  const pca = await msal.createNestablePublicClientApplication({
    auth: { clientId: naa.client_id, authority: naa.authority || DEFAULT_AUTHORITY },
  });
  const request = { scopes: [naa.scope] };
  let result = null;
  try {
    result = await pca.acquireTokenSilent(request);
  } catch {
    // Silent acquisition fails when consent or interaction is needed: ask once, in a popup.
    result = await pca.acquireTokenPopup(request);
  }
  return result && typeof result.accessToken === "string" ? result.accessToken : null;
}

/** The Exchange identity token (on-premises), or null. */
function exchangeIdentityToken(box) {
  return new Promise((resolve) => {
    try {
      box.getUserIdentityTokenAsync((result) => {
        const ok = result && result.status !== "failed" && typeof result.value === "string" && result.value;
        resolve(ok ? result.value : null);
      });
    } catch {
      resolve(null);
    }
  });
}

/** The mailbox proof for POST /api/session, or null when the host offers none. */
export async function mailboxProof(config) {
  const box = mailbox();
  if (!box) {
    return null;
  }
  const naa = (config && config.naa) || {};
  if (naa.client_id && naa.scope && isSetSupported("NestedAppAuth", "1.1")) {
    try {
      const token = await withTimeout(naaToken(naa), HOST_TIMEOUT_MS * 4);
      if (token) {
        return token;
      }
    } catch {
      // NAA unavailable here (MSAL missing, popup refused): try the next proof.
    }
  }
  // Legacy Exchange tokens are switched off in Microsoft 365; only on-premises Exchange issues them.
  const accountType = box.userProfile && box.userProfile.accountType;
  if (accountType === "office365" || accountType === "outlookCom") {
    return null;
  }
  if (typeof box.getUserIdentityTokenAsync !== "function") {
    return null;
  }
  try {
    return await withTimeout(exchangeIdentityToken(box), HOST_TIMEOUT_MS);
  } catch {
    return null;
  }
}

// The login view and the Salesforce sign-in (first login and "Switch account").

import * as api from "./api.js";
import { byId, clearFieldError, focus, setText, setVisible, showActionError, showFieldError, whileBusy } from "./dom.js";
import { DialogError, mailboxAddress, openDialog, ownUrl } from "./host.js";
import { mailboxProof } from "./identity.js";

/** A sign-in dialog that ended with an error page (its code and message come from the server). */
export class SignInError extends Error {
  constructor(error) {
    const body = error && typeof error === "object" ? error : {};
    super(typeof body.message === "string" && body.message ? body.message : "The sign-in did not complete. Try again.");
    this.name = "SignInError";
    this.code = typeof body.code === "string" ? body.code : "sign_in_failed";
    this.details = body;
  }
}

const EMAIL = /^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$/;
const TEXT = {
  login: {
    heading: "Log in to Salesforce",
    lead: "Sidebar Sync logs your emails and meetings in Salesforce. Log in with your Salesforce account to get started.",
  },
  switch: {
    heading: "Switch Salesforce account",
    lead: "Log in with another Salesforce account, or in another environment. Sync for the current account keeps running on the server.",
  },
};

/** Trade a dialog result for a session: mailbox, proof, POST /api/session. Returns the session. */
export async function finishSignIn(app, result, verifier) {
  if (!result || result.status !== "ok" || typeof result.code !== "string") {
    throw new SignInError(result && result.error);
  }
  const mailbox = mailboxAddress() || byId("login-mailbox").value.trim();
  const proof = await mailboxProof(app.config);
  return api.createSession(result.code, mailbox, proof, verifier);
}

function base64url(bytes) {
  let text = "";
  for (const byte of bytes) {
    text += String.fromCharCode(byte);
  }
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/**
 * A verifier this pane keeps and its SHA-256 challenge for the dialog's start URL: the code the
 * dialog hands back is usable only with the verifier, so a code handed to another pane is useless.
 */
async function paneChallenge() {
  const verifier = base64url(crypto.getRandomValues(new Uint8Array(32)));
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
  return { verifier, challenge: base64url(new Uint8Array(digest)) };
}

/** Wire the login form. */
export function initLogin(app) {
  const form = byId("login-form");
  const button = byId("login-button");
  const domainField = byId("login-domain-field");
  const domain = byId("login-domain");
  const domainError = byId("login-domain-error");
  const mailboxField = byId("login-mailbox-field");
  const mailbox = byId("login-mailbox");
  const mailboxError = byId("login-mailbox-error");
  const status = byId("login-status");
  const error = byId("login-error");
  const cancel = byId("login-cancel");
  // While switching accounts the person is still logged in: the dialog is ticketed by the current
  // session, the result replaces it, and Cancel goes back.
  let switching = false;
  // Bumped by Cancel: a dialog still open then finishes into nothing (no session is created).
  let attempts = 0;

  const setMode = (mode) => {
    switching = mode === "switch";
    setText(byId("login-heading"), TEXT[mode].heading);
    setText(byId("login-lead"), TEXT[mode].lead);
    setVisible(cancel, switching);
  };
  const chooseEnvironment = (env) => {
    const radio = form.querySelector(`input[name="env"][value="${env}"]`) || form.querySelector('input[name="env"]');
    radio.checked = true;
    syncDomainField();
  };

  const environment = () => {
    const checked = form.querySelector('input[name="env"]:checked');
    return checked ? checked.value : "production";
  };

  const syncDomainField = () => {
    setVisible(domainField, environment() === "mydomain");
  };
  form.querySelectorAll('input[name="env"]').forEach((radio) => {
    radio.addEventListener("change", () => {
      syncDomainField();
      if (environment() === "mydomain") {
        focus(domain);
      }
    });
  });
  syncDomainField();
  domain.addEventListener("input", () => clearFieldError(domain, domainError));
  mailbox.addEventListener("input", () => clearFieldError(mailbox, mailboxError));

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    showActionError(error, "", button);
    setText(status, "");
    const env = environment();
    const params = new URLSearchParams({ env });
    if (env === "mydomain") {
      const value = domain.value.trim();
      if (!value) {
        showFieldError(domain, domainError, "Enter your My Domain, for example acme.my.salesforce.com.");
        focus(domain);
        return;
      }
      params.set("domain", value);
    }
    // Outside Outlook (a browser, for development) the person says which mailbox this is.
    if (!mailboxAddress()) {
      setVisible(mailboxField, true);
      const value = mailbox.value.trim();
      if (!EMAIL.test(value)) {
        showFieldError(mailbox, mailboxError, "Enter the email address of the mailbox to sync.");
        focus(mailbox);
        return;
      }
    }
    const attempt = ++attempts;
    const switchingNow = switching;
    await whileBusy(button, "Signing in\u2026", async () => {
      setText(status, "Log in to Salesforce in the window that opened.");
      try {
        const { verifier, challenge } = await paneChallenge();
        params.set("pane_challenge", challenge);
        const url = switchingNow
          ? (await api.dialogUrl("salesforce", Object.fromEntries(params))).url
          : ownUrl(`/auth/salesforce/start?${params}`);
        const result = await openDialog(url);
        if (attempt !== attempts) {
          return; // cancelled meanwhile: the dialog's result is not used
        }
        setText(status, "Finishing sign-in\u2026");
        const session = await finishSignIn(app, result, verifier);
        setText(status, "");
        if (switchingNow) {
          setMode("login");
          await app.switched(session);
        } else {
          await app.signedIn(session);
        }
      } catch (failure) {
        setText(status, "");
        if (attempt !== attempts || failure.endsSession) {
          return; // cancelled, or the session ended (the pane shows the login view with the reason)
        }
        if (failure instanceof SignInError && failure.code === "login_host_refused") {
          showFieldError(domain, domainError, failure.message);
          focus(domain);
        } else if (failure instanceof api.ApiError && failure.field === "domain") {
          showFieldError(domain, domainError, failure.message);
          focus(domain);
        } else if (failure instanceof api.ApiError && failure.field === "mailbox" && !mailboxAddress()) {
          showFieldError(mailbox, mailboxError, failure.message);
          focus(mailbox);
        } else if (failure instanceof api.ApiError || failure instanceof SignInError || failure instanceof DialogError) {
          showActionError(error, failure.message, button);
        } else {
          showActionError(error, "The sign-in did not complete. Try again.", button);
        }
      }
    });
  });

  cancel.addEventListener("click", () => {
    attempts += 1;
    setMode("login");
    setText(status, "");
    app.cancelSwitch();
  });

  return {
    /** Prepare the view: the reason the person is here (session ended), if any. */
    prepare(reason) {
      setMode("login");
      setText(byId("login-reason-text"), reason || "");
      setVisible(byId("login-reason"), Boolean(reason));
      setText(status, "");
      showActionError(error, "", button);
      setVisible(mailboxField, !mailboxAddress());
    },

    /** Prepare the view for "Switch account": the current environment chosen, the mailbox known. */
    prepareSwitch(me) {
      setMode("switch");
      const salesforce = (me && me.salesforce) || {};
      chooseEnvironment(salesforce.environment || "production");
      domain.value = "";
      if (salesforce.environment === "mydomain" && salesforce.instance_url) {
        try {
          domain.value = new URL(salesforce.instance_url).host;
        } catch {
          // Left empty: the person types it.
        }
      }
      clearFieldError(domain, domainError);
      mailbox.value = (me && me.mailbox && me.mailbox.address) || "";
      setVisible(mailboxField, false);
      setVisible(byId("login-reason"), false);
      setText(status, "");
      showActionError(error, "", button);
    },
  };
}

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

/** Trade a dialog result for a session: mailbox, proof, POST /api/session. Returns the session. */
export async function finishSignIn(app, result) {
  if (!result || result.status !== "ok" || typeof result.code !== "string") {
    throw new SignInError(result && result.error);
  }
  const mailbox = mailboxAddress() || byId("login-mailbox").value.trim();
  const proof = await mailboxProof(app.config);
  return api.createSession(result.code, mailbox, proof);
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
    await whileBusy(button, "Signing in\u2026", async () => {
      setText(status, "Log in to Salesforce in the window that opened.");
      try {
        const result = await openDialog(ownUrl(`/auth/salesforce/start?${params}`));
        setText(status, "Finishing sign-in\u2026");
        const session = await finishSignIn(app, result);
        setText(status, "");
        await app.signedIn(session);
      } catch (failure) {
        setText(status, "");
        if (failure instanceof SignInError && failure.code === "login_host_refused") {
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

  return {
    /** Prepare the view: the reason the person is here (session ended), if any. */
    prepare(reason) {
      setText(byId("login-reason-text"), reason || "");
      setVisible(byId("login-reason"), Boolean(reason));
      setText(status, "");
      showActionError(error, "", button);
      setVisible(mailboxField, !mailboxAddress());
    },
  };
}

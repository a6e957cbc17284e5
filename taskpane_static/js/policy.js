// The org policy in the person's Sync settings: values the administrator locked show greyed with
// "Set by your administrator" and are left out of what the pane saves (the API would refuse them).

import { byId, setText, setVisible } from "./dom.js";

const CONTROLS = {
  sync_emails: () => [byId("set-emails")],
  sync_events: () => [byId("set-events")],
  cancelled_events: () => [byId("set-cancelled-mark"), byId("set-cancelled-delete")],
  blocklist: () => [byId("set-blocklist")],
};

let locked = new Set();

/** Grey out and explain the locked values of `policy` ({locked, values, org_blocklist}). */
export function renderPolicy(policy) {
  locked = new Set((policy && Array.isArray(policy.locked)) ? policy.locked : []);
  Object.entries(CONTROLS).forEach(([name, controls]) => {
    const isLocked = locked.has(name);
    controls().forEach((control) => {
      control.disabled = isLocked;
    });
    setVisible(byId(`lock-${name}`), isLocked);
  });
  const orgList = (policy && Array.isArray(policy.org_blocklist)) ? policy.org_blocklist : [];
  const note = byId("org-blocklist");
  setText(note, orgList.length ? `Your organisation also never logs: ${orgList.join(", ")}.` : "");
  setVisible(note, orgList.length > 0);
}

/** `body` without the values the administrator locked. */
export function withoutLocked(body) {
  return Object.fromEntries(Object.entries(body).filter(([name]) => !locked.has(name)));
}

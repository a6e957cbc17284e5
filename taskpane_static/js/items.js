// The item in front of the person: what sync did with the open email or meeting, and what to do
// about it (Log it now, Never log this sender / domain). Asks GET /api/items/status whenever the
// pane opens on an item and whenever Outlook's selection changes (ItemChanged; the pane is pinnable).
// Also the mailbox-mismatch warning: the add-in open in a mailbox that is not the synced one.

import * as api from "./api.js";
import { byId, focus, setText, setVisible, showActionError, whileBusy } from "./dom.js";
import { formatClock, formatDateTime, formatWhen } from "./format.js";
import { currentItem, mailboxAddress, onItemChanged } from "./host.js";

const OBJECT_NAMES = { EmailMessage: "Email", Task: "Task", Event: "Event" };

/** Why an item was not logged, in the words a sales rep uses. `item` is what Outlook shows. */
export function reasonText(answer, item, sync) {
  const external = externalPeople(item, sync);
  const first = external[0] || "";
  const domain = first.includes("@") ? first.split("@").pop() : "";
  const blocklist = (sync && sync.settings && Array.isArray(sync.settings.blocklist)) ? sync.settings.blocklist : [];
  const blocked = external.find((address) => blocks(blocklist, address));
  switch (answer.reason) {
    case "free_mail":
      return domain ? `the sender's domain ${domain} is free mail.` : "everyone in it writes from free mail.";
    case "internal":
      return "only people of your own company take part.";
    case "blocked":
      return blocked ? `${blocked} is on your blocklist.` : "someone in it is on your blocklist.";
    case "blocked_org":
      return "someone in it is on your organisation's blocklist.";
    case "private":
      return "it is marked private or confidential.";
    case "draft":
      return "it is a draft.";
    case "no_match":
      return "nobody in it is a Contact or Lead in Salesforce.";
    case "no_participants":
      return "nobody else takes part.";
    case "too_old":
      return answer.window_start
        ? `it is older than the first sync's window (${formatDateTime(answer.window_start)}).`
        : "it is older than the first sync's window.";
    case "refused":
      return `Salesforce refused it (${answer.salesforce_code || "no reason given"}).`;
    case "emails_off":
      return "logging emails is turned off in Sync settings.";
    case "events_off":
      return "logging meetings is turned off in Sync settings.";
    case "too_long":
      return "the meeting lasts longer than 24 hours.";
    case "cancelled":
      return "the meeting was cancelled before it was logged.";
    case "no_start":
      return "the meeting has no start time.";
    case "unreadable":
      return "the mail server sent it in a form Sidebar Sync could not read.";
    case "sync_off":
      return "sync is not set up for this mailbox.";
    default:
      return "of a rule of your organisation.";
  }
}

function blocks(entries, address) {
  const value = address.toLowerCase();
  const domain = value.split("@").pop();
  return entries.some((entry) => {
    const rule = String(entry).toLowerCase().replace(/^@/, "");
    return rule.includes("@") ? rule === value : domain === rule || domain.endsWith(`.${rule}`);
  });
}

/** The item's participants that are not the synced mailbox (sender first). */
function externalPeople(item, sync) {
  const own = new Set([sync && sync.mailbox, ...((sync && sync.aliases) || []), mailboxAddress()]
    .filter(Boolean).map((address) => String(address).toLowerCase()));
  return ((item && item.people) || []).map((address) => address.toLowerCase()).filter((a) => !own.has(a));
}

/** "Sync runs for a@x. This mailbox, b@y, is not synced." or "" when the add-in mailbox is synced. */
export function mismatchText(sync) {
  const here = mailboxAddress().toLowerCase();
  if (!sync || !sync.mailbox || !here) {
    return "";
  }
  const synced = [sync.mailbox, ...(sync.aliases || [])].map((address) => String(address).toLowerCase());
  if (synced.includes(here)) {
    return "";
  }
  return `Sync runs for ${sync.mailbox}. This mailbox, ${mailboxAddress()}, is not synced.`;
}

function appendLink(parent, text, url) {
  if (typeof url === "string" && /^https:\/\//.test(url)) {
    const link = document.createElement("a");
    link.href = url;
    link.target = "_blank";
    link.rel = "noopener noreferrer";
    link.textContent = text;
    parent.appendChild(link);
  } else {
    parent.appendChild(document.createTextNode(text));
  }
}

function renderRecords(records) {
  const list = byId("item-records");
  list.replaceChildren();
  for (const record of records) {
    const entry = document.createElement("li");
    const name = OBJECT_NAMES[record.object] || record.object;
    appendLink(entry, `${name} in Salesforce`, record.url);
    const people = record.people || [];
    if (people.length) {
      entry.appendChild(document.createTextNode(", related to "));
      people.forEach((person, index) => {
        if (index > 0) {
          entry.appendChild(document.createTextNode(index === people.length - 1 ? " and " : ", "));
        }
        appendLink(entry, `${person.name || person.id} (${person.object})`, person.url);
      });
    }
    list.appendChild(entry);
  }
  setVisible(list, records.length > 0);
}

/** Wire the item card; returns {refresh, render}. */
export function initItems(app) {
  const el = {
    card: byId("item-card"),
    heading: byId("item-heading"),
    outcome: byId("item-outcome"),
    outcomeText: byId("item-outcome-text"),
    detail: byId("item-detail"),
    actions: byId("item-actions"),
    logNow: byId("item-log-now"),
    blockSender: byId("item-block-sender"),
    blockDomain: byId("item-block-domain"),
    status: byId("item-status"),
    error: byId("item-error"),
  };
  let item = null;
  let answer = null;
  // Answers to an earlier selection must not overwrite the current one.
  let asked = 0;

  function sender() {
    const people = externalPeople(item, app.sync);
    return item && item.from && people.includes(item.from.toLowerCase()) ? item.from.toLowerCase() : "";
  }

  function render() {
    setVisible(el.card, Boolean(item));
    if (!item) {
      return;
    }
    setText(el.heading, item.kind === "event" ? "This meeting" : "This email");
    if (!answer) {
      el.outcome.dataset.status = "";
      setText(el.outcomeText, "Checking what sync did with it\u2026");
      setVisible(el.detail, false);
      renderRecords([]);
      setVisible(el.actions, false);
      return;
    }
    el.outcome.dataset.status = answer.status;
    let text;
    if (answer.status === "logged") {
      text = answer.at ? `Logged in Salesforce ${formatWhen(answer.at)}.` : "Logged in Salesforce.";
    } else if (answer.status === "not_yet") {
      text = answer.reason === "paused" ? "Not yet: sync is paused."
        : answer.next_run ? `Not yet: sync looks at it in the run at ${formatClock(answer.next_run)}.`
          : "Not yet: sync looks at it in the next run.";
    } else {
      text = `Not logged, because ${reasonText(answer, item, app.sync)}`;
    }
    setText(el.outcomeText, text);
    const logNowNote = answer.status === "not_yet" && answer.reason === "paused" && answer.can_log_now
      ? "Log it now works while sync is paused." : "";
    setText(el.detail, logNowNote);
    setVisible(el.detail, Boolean(logNowNote));
    renderRecords(answer.records || []);
    const from = sender();
    const entries = (app.sync && app.sync.settings && app.sync.settings.blocklist) || [];
    // Offered for what is not logged, unless the sender is on the person's blocklist already.
    const offerBlock = Boolean(from) && answer.status !== "logged" && !blocks(entries, from);
    setVisible(el.logNow, Boolean(answer.can_log_now));
    setVisible(el.blockSender, offerBlock);
    setVisible(el.blockDomain, offerBlock);
    if (from) {
      setText(el.blockSender.querySelector(".button-label"), `Never log ${from}`);
      setText(el.blockDomain.querySelector(".button-label"), `Never log ${from.split("@").pop()}`);
    }
    setVisible(el.actions, [el.logNow, el.blockSender, el.blockDomain].some((button) => !button.hidden));
  }

  function query() {
    const params = { date: item.date || undefined };
    if (item.kind === "email") {
      params.message_id = item.messageId;
    } else {
      params.kind = "event";
      params.item_id = item.restId && app.sync && app.sync.provider === "microsoft" ? item.restId : item.itemId;
    }
    return params;
  }

  async function refresh({ keepMessages = false } = {}) {
    item = currentItem();
    answer = null;
    if (!keepMessages) {
      setText(el.status, "");
      showActionError(el.error, "");
    }
    renderMismatch();
    render();
    if (!item || !api.getToken() || (item.kind === "email" && !item.messageId)) {
      return;
    }
    const mine = ++asked;
    el.card.setAttribute("aria-busy", "true");
    try {
      const result = await api.getItemStatus(query());
      if (mine === asked) {
        answer = result;
      }
    } catch (error) {
      if (mine === asked && !error.endsSession) {
        answer = { status: "unknown", records: [] };
        setText(el.outcomeText, "");
        showActionError(el.error, `Could not check this item. ${error.message}`);
      }
    } finally {
      if (mine === asked) {
        el.card.setAttribute("aria-busy", "false");
      }
    }
    if (mine === asked && answer && answer.status !== "unknown") {
      render();
    }
  }

  function renderMismatch() {
    const text = mismatchText(app.sync);
    setText(byId("mailbox-mismatch-text"), text);
    setVisible(byId("mailbox-mismatch"), Boolean(text));
  }

  el.logNow.addEventListener("click", () => whileBusy(el.logNow, "Logging\u2026", async () => {
    setText(el.status, "");
    showActionError(el.error, "", el.logNow);
    // Like refresh(): the person may select another item before the answer comes (a pinned pane);
    // then the answer is about an item no longer shown and must not fill that item's card.
    const mine = ++asked;
    try {
      const body = item.kind === "email" ? { message_id: item.messageId } : { kind: "event" };
      body.item_id = item.restId && app.sync && app.sync.provider === "microsoft" ? item.restId : item.itemId;
      if (item.kind === "event") {
        Object.assign(body, query());
      }
      const result = await api.logItem(body);
      if (mine === asked) {
        answer = result;
        el.card.setAttribute("aria-busy", "false");  // a refresh this answer outran would not clear it
        render();
        setText(el.status, answer.status === "logged" ? "Logged it now." : "It could not be logged; the reason is above.");
        // render() may hide the button that had focus (logged): keep the keyboard user on the card.
        focus(el.heading);
      }
      app.refreshSync();
    } catch (error) {
      if (mine === asked) {
        el.card.setAttribute("aria-busy", "false");  // as above: nothing else would clear it now
      }
      if (!error.endsSession && mine === asked) {
        showActionError(el.error, error.message, el.logNow);
        focus(el.error);
      }
    }
  }));

  async function block(button, entry) {
    await whileBusy(button, "Saving\u2026", async () => {
      setText(el.status, "");
      showActionError(el.error, "", button);
      try {
        const result = await api.blockEntry(entry);
        app.setSync(result.sync);
        setText(el.status, `${entry} will not be logged from now on. Change this in Sync settings.`);
        setVisible(el.blockSender, false);
        setVisible(el.blockDomain, false);
        focus(el.heading);
      } catch (error) {
        if (!error.endsSession) {
          showActionError(el.error, error.message, button);
          focus(el.error);
        }
      }
    });
  }
  el.blockSender.addEventListener("click", () => block(el.blockSender, sender()));
  el.blockDomain.addEventListener("click", () => block(el.blockDomain, sender().split("@").pop()));
  byId("mailbox-mismatch-change").addEventListener("click", () => app.show("settings"));

  return {
    refresh,
    renderMismatch,
    /** Follow Outlook's selection (after Office is ready). */
    listen() {
      onItemChanged(() => refresh());
    },
  };
}

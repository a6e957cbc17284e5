// The users of the org: filters, sortable columns, pages, a selection with one action for all,
// and a user's detail (actions, the last 20 runs, the quarantined items).

import * as api from "../api.js";
import { byId, focus, setText, setVisible } from "../dom.js";
import { ACTION_NAMES, STATE_NAMES, el, lastRunText, providerText, when } from "./view.js";

const PER_PAGE = 50;
const list = { q: "", state: "", provider: "", sort: "name", order: "asc", page: 1, pages: 1 };
const selected = new Set();
let hooks = { refreshSummary: () => {}, refreshAudit: () => {} };
let openUid = null;
let opener = null;

function renderBulk() {
  const button = byId("bulk-apply");
  button.disabled = selected.size === 0;
  setText(button, `Apply to ${selected.size} selected`);
}

function stateCell(row) {
  const cell = el("td");
  cell.append(el("span", STATE_NAMES[row.state] || row.state, `state-${row.state}`));
  if (row.error && row.error.message) {
    cell.append(el("span", row.error.message, "reason"));
  }
  if (row.instant_sync && !row.instant_sync.on) {
    const why = row.instant_sync.reason ? `: ${row.instant_sync.reason}` : "";
    cell.append(el("span", `Instant sync off${why}`, "reason"));
  }
  return cell;
}

function renderRows(users) {
  const body = byId("users-body");
  // A reload must not lose the keyboard's place: the focused row's name button gets focus back.
  const active = document.activeElement;
  const focusedUid = active && body.contains(active) && active.dataset ? active.dataset.uid : null;
  body.replaceChildren();
  users.forEach((row) => {
    const tr = el("tr");
    const pick = el("td");
    const box = el("input");
    box.type = "checkbox";
    box.checked = selected.has(row.id);
    box.setAttribute("aria-label", `Select ${row.name || row.username}`);
    box.addEventListener("change", () => {
      if (box.checked) {
        selected.add(row.id);
      } else {
        selected.delete(row.id);
      }
      renderBulk();
    });
    pick.append(box);
    const nameCell = el("td");
    const open = el("button", row.name || row.username, "link");
    open.type = "button";
    open.dataset.uid = row.id;
    open.addEventListener("click", () => openDetail(row.id, open));
    nameCell.append(open);
    const issues = row.issues ? `${row.issues} quarantined` : "None";
    tr.append(pick, nameCell, el("td", row.username), el("td", row.mailbox || "\u2013"), el("td", providerText(row)),
      stateCell(row), el("td", lastRunText(row.last_run)), el("td", issues), el("td", when(row.last_seen_at)));
    body.append(tr);
  });
  if (focusedUid) {
    focus(body.querySelector(`button[data-uid="${CSS.escape(focusedUid)}"]`));
  }
  const pageBox = byId("select-page");
  pageBox.checked = users.length > 0 && users.every((row) => selected.has(row.id));
}

function renderSortHeaders() {
  document.querySelectorAll("#users-table th[data-sort]").forEach((th) => {
    const active = th.dataset.sort === list.sort;
    th.setAttribute("aria-sort", active ? (list.order === "desc" ? "descending" : "ascending") : "none");
  });
}

/** Load the current page of users. */
export async function loadUsers() {
  const body = await api.getAdminUsers({ q: list.q, state: list.state, provider: list.provider, sort: list.sort,
    order: list.order, page: list.page, per_page: PER_PAGE });
  list.pages = body.pages;
  renderRows(body.users);
  renderSortHeaders();
  setText(byId("page-label"), `Page ${body.page} of ${body.pages} \u00b7 ${body.total} users`);
  byId("page-prev").disabled = body.page <= 1;
  byId("page-next").disabled = body.page >= body.pages;
  return body;
}

function outcomeText(action, result) {
  const refused = result.results.filter((r) => r.status !== "ok").length;
  const done = `${ACTION_NAMES[action]}: done for ${result.done} of ${result.results.length}`;
  return refused ? `${done}; ${refused} could not (see the audit log).` : `${done}.`;
}

async function afterChange() {
  await Promise.all([loadUsers(), hooks.refreshSummary(), hooks.refreshAudit()].map((p) => Promise.resolve(p)));
}

function renderDetail(user) {
  setText(byId("detail-heading"), user.name || user.username);
  const facts = byId("detail-facts");
  facts.replaceChildren();
  const rows = [
    ["Salesforce username", user.username], ["Sync mailbox", user.mailbox || "\u2013"],
    ["Provider", providerText(user)], ["State", STATE_NAMES[user.state] || user.state],
    ["Reason", user.error ? user.error.message : "\u2013"], ["Last run", lastRunText(user.last_run)],
    ["Last successful run", when(user.last_success_at)], ["Next run", when(user.next_run)],
    ["Last add-in use", when(user.last_seen_at)],
  ];
  rows.forEach(([name, value]) => facts.append(el("dt", name), el("dd", value)));
  const runs = byId("runs-body");
  runs.replaceChildren();
  (user.runs || []).forEach((run) => {
    const counts = run.counts || {};
    const tr = el("tr");
    tr.append(el("td", when(run.finished_at)), el("td", run.trigger), el("td", run.status),
      el("td", counts.read || 0), el("td", counts.written || 0),
      el("td", run.error ? run.error.message || run.error.code : "\u2013"));
    runs.append(tr);
  });
  if (!(user.runs || []).length) {
    const tr = el("tr");
    const td = el("td", "No runs yet.");
    td.colSpan = 6;
    tr.append(td);
    runs.append(tr);
  }
  const issues = byId("issues-list");
  issues.replaceChildren();
  const items = (user.quarantine && user.quarantine.items) || [];
  items.forEach((item) => issues.append(el("li", `${item.object || "Item"} ${item.key || ""}: ${item.reason || ""}`)));
  if (!items.length) {
    issues.append(el("li", "None."));
  }
}

async function openDetail(uid, from) {
  openUid = uid;
  opener = from;
  setText(byId("detail-status"), "");
  try {
    renderDetail(await api.getAdminUser(uid));
  } catch (error) {
    setText(byId("detail-status"), error.message);
  }
  setVisible(byId("detail"), true);
  byId("detail").scrollIntoView({ block: "start" });
  focus(byId("detail"));
}

function closeDetail() {
  setVisible(byId("detail"), false);
  const current = document.querySelector(`#users-body button[data-uid="${CSS.escape(openUid || "")}"]`);
  const back = current || (opener && document.contains(opener) ? opener : null);
  openUid = null;
  focus(back || byId("users-heading"));
}

/** Wire the filters, sorting, pages, the selection and the detail's actions. */
export function initUsers(options) {
  hooks = { ...hooks, ...options };
  byId("filters").addEventListener("submit", (event) => {
    event.preventDefault();
    list.q = byId("filter-q").value.trim();
    list.state = byId("filter-state").value;
    list.provider = byId("filter-provider").value;
    list.page = 1;
    loadUsers().then((body) => setText(byId("users-status"), `${body.total} users match.`))
      .catch((error) => setText(byId("users-status"), error.message));
  });
  document.querySelectorAll("#users-table th[data-sort] .sort").forEach((button) => {
    button.addEventListener("click", () => {
      const sort = button.closest("th").dataset.sort;
      list.order = list.sort === sort && list.order === "asc" ? "desc" : "asc";
      list.sort = sort;
      list.page = 1;
      loadUsers().catch((error) => setText(byId("users-status"), error.message));
    });
  });
  byId("page-prev").addEventListener("click", () => {
    list.page = Math.max(1, list.page - 1);
    loadUsers().catch((error) => setText(byId("users-status"), error.message));
  });
  byId("page-next").addEventListener("click", () => {
    list.page = Math.min(list.pages, list.page + 1);
    loadUsers().catch((error) => setText(byId("users-status"), error.message));
  });
  byId("select-page").addEventListener("change", (event) => {
    document.querySelectorAll("#users-body input[type=checkbox]").forEach((box) => {
      box.checked = event.target.checked;
      box.dispatchEvent(new Event("change"));
    });
  });
  byId("bulk-apply").addEventListener("click", async () => {
    const action = byId("bulk-action").value;
    try {
      const result = await api.adminBulkAction(action, Array.from(selected));
      setText(byId("users-status"), outcomeText(action, result));
      selected.clear();
      renderBulk();
      await afterChange();
    } catch (error) {
      setText(byId("users-status"), error.message);
    }
  });
  document.querySelectorAll("#detail [data-action]").forEach((button) => {
    button.addEventListener("click", async () => {
      const action = button.dataset.action;
      try {
        renderDetail(await api.adminUserAction(openUid, action));
        setText(byId("detail-status"), `${ACTION_NAMES[action]}: done.`);
        await afterChange();
      } catch (error) {
        setText(byId("detail-status"), error.message);
      }
    });
  });
  byId("detail-close").addEventListener("click", closeDetail);
  byId("detail").addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      closeDetail();
    }
  });
}

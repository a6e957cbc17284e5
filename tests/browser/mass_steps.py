"""Reusable steps of the mass activation browser tests, whatever the provider (Microsoft 365, Exchange, Google).

A test sets up the provider's access in the console its own way, then::

    add_salesforce_person(sf, "kim@acme.example", "Kim")   # plus the person's mailbox in the provider's fake
    console = console_sign_in(make_pane, server, admin, password)
    with running_worker(server, tmp_path) as worker:       # a real ``rq worker`` process
        start_activation(page, addresses)                  # the console's Activate view
        wait_for_progress(page, len(addresses), worker)    # "Done: 3 of 3 people"
        results_table(page)                                # [(address, result, message)]
        sync_now_from_console(page, names)                 # Users: select, Sync now
        wait_for_runs(server, uids, worker)                # the worker ran each person's first run
    assert_created_by(sf, {subject: sf_user_id})           # each record created by its person
    pane_for(make_pane, server, address, password)         # the person's task pane, logged in
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, expect

from backend.extensions import services
from tests.browser.conftest import LiveServer, Pane
from tests.browser.test_admin_console import console_sign_in
from tests.e2e import Worker, start_worker, wait_until

__all__ = ["add_salesforce_person", "assert_created_by", "console_sign_in", "open_view", "pane_for", "results_table",
           "running_worker", "start_activation", "sync_now_from_console", "wait_for_progress", "wait_for_runs"]


@contextmanager
def running_worker(server: LiveServer, log_dir: Path) -> Iterator[Worker]:
    """The Procfile's ``rq worker`` with the live server's configuration, stopped afterwards."""
    worker = start_worker(server.config, log_dir, "mass")
    try:
        yield worker
    finally:
        worker.stop()


def add_salesforce_person(sf: Any, address: str, name: str) -> str:
    """An active Salesforce user of the org with ``address`` as ``User.Email``, pre-authorised for the JWT flow."""
    user = sf.state.add_user(address, email=address, name=name)
    sf.state.preauthorized.add(address)
    return str(user.user_id)


def open_view(page: Page, name: str) -> None:
    """Open one of the console's views from its navigation."""
    page.get_by_role("link", name=name, exact=True).click()


def start_activation(page: Page, addresses: Iterable[str], choose: Callable[[Page], None] | None = None) -> None:
    """Paste ``addresses`` in the console's Activate view and press Activate (``choose``: e.g. pick a provider)."""
    wanted = list(addresses)
    open_view(page, "Activate")
    page.get_by_label("Email addresses").fill("\n".join(wanted))
    if choose is not None:
        choose(page)
    page.get_by_role("button", name="Activate", exact=True).click()
    expect(page.locator("#activate-progress")).to_contain_text(f"of {len(wanted)} people")


def run_activation_here(server: LiveServer) -> str:
    """Run the console's one queued activation in this process (tests about the views need no worker); its id."""
    from backend.jobs.activation import run_activation
    from backend.jobs.context import use_app

    with server.app.app_context():
        store = services().store
        (key,) = [k for k in store.redis.keys(store.keys("activation", "act*")) if not k.endswith(("s",))]
        activation_id = str(key).rsplit(":", 1)[-1]
        use_app(server.app)
        try:
            run_activation(activation_id)
        finally:
            use_app(None)
    return activation_id


def wait_for_progress(page: Page, total: int, worker: Worker | None = None, timeout: float = 60.0) -> list[str]:
    """Watch the progress line until "Done: total of total people"; returns the distinct lines seen on the way."""
    seen: list[str] = []
    done = f"Done: {total} of {total} people"

    def finished() -> bool:
        text = page.locator("#activate-progress").inner_text()
        if not seen or seen[-1] != text:
            seen.append(text)
        return text == done

    wait_until(finished, timeout, f"the console to say {done!r} (seen {seen})", worker)
    assert page.locator("#activate-bar").evaluate("bar => [bar.value, bar.max]") == [total, max(1, total)]
    return seen


def results_table(page: Page) -> list[tuple[str, str, str]]:
    """The per-person results table as (address, result, message) rows, in the table's order."""
    rows = page.locator("#activate-body tr")
    found = []
    for index in range(rows.count()):
        cells = [c.strip() for c in rows.nth(index).locator("th, td").all_inner_texts()]
        found.append((cells[0], cells[1], cells[2] if len(cells) > 2 else ""))
    return found


def sync_now_from_console(page: Page, names: Iterable[str]) -> None:
    """In Users (reloaded), select the people named and apply Sync now to the selection."""
    wanted = list(names)
    page.reload()
    open_view(page, "Users")
    for name in wanted:
        page.get_by_label(f"Select {name}", exact=True).check()
    page.get_by_label("Action", exact=True).select_option("sync")
    page.get_by_role("button", name=f"Apply to {len(wanted)} selected").click()
    expect(page.locator("#users-status")).not_to_be_empty()


def wait_for_runs(server: LiveServer, uids: Iterable[str], worker: Worker, timeout: float = 120.0) -> dict[str, Any]:
    """Wait until each mailbox has a successful run recorded by the worker; returns the newest run of each."""
    wanted = list(uids)

    def all_ran() -> dict[str, Any] | None:
        with server.app.app_context():
            newest = {uid: (services().store.runs.recent(uid) or [None])[0] for uid in wanted}
        if any(run is None or run.get("status") != "ok" for run in newest.values()):
            return None
        return newest

    result: dict[str, Any] = wait_until(all_ran, timeout, f"a successful run of each of {wanted}", worker)
    return result


def assert_created_by(sf: Any, creators: Mapping[str, str]) -> None:
    """Salesforce holds exactly one EmailMessage per subject of ``creators``, created and owned by that user id."""
    messages = sf.state.rest.all("EmailMessage")
    by_subject: dict[str, list[dict[str, Any]]] = {}
    for message in messages:
        by_subject.setdefault(message["Subject"], []).append(message)
    assert sorted(by_subject) == sorted(creators), by_subject
    for subject, creator in creators.items():
        (record,) = by_subject[subject]  # exactly one: no duplicate
        assert record["CreatedById"] == creator, (subject, record["CreatedById"], creator)


def pane_for(make_pane: Callable[..., Pane], server: LiveServer, address: str, password: str) -> Pane:
    """The task pane in ``address``'s mailbox, logged in to Salesforce as that person."""
    pane = make_pane(server, office={"emailAddress": address})
    pane.open()
    pane.login(address, password)
    return pane

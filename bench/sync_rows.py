"""Rows P1-P4 of the benchmark table (``bench/run``): the backfills of ``bench/sync_bench.py``, measured now.

P1-P3 are counts (the same in every run); P4's ratios move with the machine (another tenant's load
on a shared host doubles the bare download at times), so each is the median of five backfills, every
one against its own bare download measured right after it, with the spread in brackets.
"""

from __future__ import annotations

import statistics
from typing import Any

from bench.sync_bench import backfills

# Quiet-run calls need only a small mailbox; Gmail's backfill waits for Google's quota (15,000 units
# a minute), so it is measured at this size for P2/P3 only.
GMAIL_EMAILS = 200
# Backfills per provider behind a P4 figure (the record; --quick takes one).
P4_RUNS = 5


def median_of(runs: list[dict[str, Any]], key: str) -> tuple[float, str]:
    """The median of ``key`` over ``runs`` and its spread as text ("[low-high]"; empty for one run)."""
    values = sorted(float(r[key]) for r in runs)
    middle = round(statistics.median(values), 3)
    return middle, (f"[{values[0]:g}-{values[-1]:g}]" if len(values) > 1 else "")


def p4_rows(provider: str, emails: int, runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """P4's wall and CPU rows of ``provider``: medians over ``runs`` with their spread."""
    wall, wall_spread = median_of(runs, "wall_ratio")
    cpu, cpu_spread = median_of(runs, "cpu_ratio")
    seconds, _ = median_of(runs, "run_seconds")
    bare, _ = median_of([r["bare"] for r in runs], "seconds")
    item_ms, _ = median_of(runs, "worker_cpu_ms_per_item")
    bare_ms, _ = median_of([r["bare"] for r in runs], "cpu_ms_per_item")
    answered, _ = median_of(runs, "salesforce_fake_seconds")
    floors = [r for r in runs if r.get("floor_ratio") is not None]
    floor = f"; this machine's floor {median_of(floors, 'floor_ratio')[0]} (bench/README.md)" if floors else ""
    of = f"median of {len(runs)} {wall_spread}" if len(runs) > 1 else "one run"
    return [
        {"id": "P4", "measure": f"{emails:,}-email backfill wall time ÷ the bare download ({provider})",
         "value": wall, "target": "≤ 1.5",
         "detail": f"{of}: {seconds:g} s vs {bare:g} s; the fake Salesforce (own process) answered for "
                   f"{answered:g} s{floor}"},
        {"id": "P4", "measure": f"run CPU per item ÷ the bare client's ({provider})", "value": cpu, "target": "≤ 2",
         "detail": f"{'median ' + cpu_spread if cpu_spread else 'one run'}: {item_ms:g} ms vs {bare_ms:g} ms"},
    ]


def table_rows(quick: bool) -> list[dict[str, Any]]:
    """Rows P1-P4 of the issue-16 table (ids, measure, value, target, detail), measured now.

    ``quick``: one 2,000-email backfill per provider; otherwise five of 10,000 (the record), whose
    peak memory (Microsoft 365's, one process) shows it stays flat.
    """
    emails = 2000 if quick else 10_000
    rows: list[dict[str, Any]] = []
    runs = {p: backfills(p, emails, repeat=1 if quick else P4_RUNS) for p in ("microsoft", "exchange")}
    figures = {p: r[0] for p, r in runs.items()}
    figures["google"] = backfills("google", GMAIL_EMAILS)[0]
    for provider in ("microsoft", "exchange"):
        b = figures[provider]
        rows.append({"id": "P1", "measure": f"Salesforce calls for the {emails:,}-email backfill ÷ the Composite-aware "
                     f"minimum ({provider})", "value": b["ratio_to_lower_bound"], "target": "≤ 1.2",
                     "detail": f"{b['salesforce_calls']} calls ({b['salesforce_write_calls']} write) / "
                               f"{b['lower_bound']} ({b['written_records']} records, "
                               f"{b['minimum_breakdown'].split('+ ')[-1]})"})
    for provider in ("microsoft", "exchange", "google"):
        b = figures[provider]
        rows.append({"id": "P2", "measure": f"Salesforce calls on a run with nothing new ({provider})",
                     "value": b["quiet_run_salesforce_calls"], "target": "0", "detail": ""})
    for provider in ("microsoft", "exchange", "google"):
        b = figures[provider]
        rows.append({"id": "P3", "measure": f"mailbox calls on a run with nothing new ({provider})",
                     "value": b["quiet_run_mailbox_calls"], "target": "≤ 3",
                     "detail": f"{b['quiet_run_mailbox_http_requests']} HTTP requests at the fake"})
    for provider in ("microsoft", "exchange"):
        rows.extend(p4_rows(provider, emails, runs[provider]))
    memory = [r["rss_peak_mb"] for r in runs["microsoft"]]
    if len(memory) > 1:
        rows.append({"id": "P4", "measure": f"peak memory after each of {len(memory)} {emails:,}-email backfills "
                     "(microsoft)", "value": round(memory[-1] - memory[0], 1), "target": "flat",
                     "detail": " / ".join(f"{m} MB" for m in memory) + " (growth from the first)"})
    return rows

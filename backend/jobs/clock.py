"""The clock's configuration module: ``rq cron backend.jobs.clock``.

It checks the settings first (a misconfigured clock stops at start with one clear line), then
loads the schedule, which registers the jobs the clock enqueues.
"""

from __future__ import annotations

import sys

from backend.config import ConfigError, Settings

try:
    Settings.from_environ()
except ConfigError as exc:
    print(f"sidebar-sync clock: configuration error: {exc}", file=sys.stderr)
    raise SystemExit(3) from None

from backend.jobs import digest, push_clock, schedule  # noqa: F401 - registers the cron jobs

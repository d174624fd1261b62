"""Periodic jobs on an APScheduler 3.x ``BackgroundScheduler``.

Jobs: token check (every ``token_check_s``, wall clock), inbox rescan (``watch.rescan_s``), retry of
pending invoices (``retry_pending_s``), lookup-cache refresh (``lookup_refresh_h``) and, only when
``archive_retention_days`` is set, an archive purge once a day.

Choices, deliberately: ``coalesce=True`` (after a suspended machine wakes up, one run replaces all
the missed ones), ``max_instances=1`` (a slow run is never doubled) and ``misfire_grace_time=None``
(a late run still happens: APScheduler's default of one second silently skips runs after a pause).
The token job itself compares ``time.time()`` with the token expiry, so a machine that slept past the
expiry refreshes on its first tick after waking. The job store is the in-memory one: jobs are
re-created at every start, never shared between processes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from daemon.settings import SchedulerSettings

__all__ = ["JOB_DEFAULTS", "Jobs", "build_scheduler"]

_log = structlog.get_logger("daemon.service.scheduler")

JOB_DEFAULTS: dict[str, Any] = {"coalesce": True, "max_instances": 1, "misfire_grace_time": None}


@dataclass(frozen=True, slots=True)
class Jobs:
    """The callables the scheduler runs (each must catch its own expected errors)."""

    token_check: Callable[[], None]
    rescan: Callable[[], None]
    retry_pending: Callable[[], None]
    refresh_lookups: Callable[[], None]
    purge_archive: Callable[[], None] | None = None


def _listener(event: Any) -> None:
    code = getattr(event, "code", 0)
    job_id = getattr(event, "job_id", "?")
    if code == EVENT_JOB_ERROR:
        exc = getattr(event, "exception", None)
        _log.error("scheduler_job_failed", job=job_id, error=repr(exc))
    elif code == EVENT_JOB_MISSED:
        _log.warning("scheduler_job_missed", job=job_id)
    elif code == EVENT_JOB_MAX_INSTANCES:
        _log.warning("scheduler_job_still_running", job=job_id)


def build_scheduler(jobs: Jobs, settings: SchedulerSettings, *, rescan_s: float) -> Any:
    """A configured (not started) ``BackgroundScheduler`` with every job added."""
    scheduler = BackgroundScheduler(timezone=UTC, job_defaults=dict(JOB_DEFAULTS))
    now = datetime.now(UTC)
    scheduler.add_job(
        jobs.token_check,
        IntervalTrigger(seconds=settings.token_check_s, timezone=UTC),
        id="token_check",
        name="token check",
        next_run_time=now,
        replace_existing=True,
    )
    scheduler.add_job(
        jobs.rescan,
        IntervalTrigger(seconds=rescan_s, timezone=UTC),
        id="inbox_rescan",
        name="inbox rescan",
        replace_existing=True,
    )
    scheduler.add_job(
        jobs.retry_pending,
        IntervalTrigger(seconds=settings.retry_pending_s, timezone=UTC),
        id="retry_pending",
        name="retry pending invoices",
        replace_existing=True,
    )
    scheduler.add_job(
        jobs.refresh_lookups,
        IntervalTrigger(seconds=settings.lookup_refresh_h * 3600, timezone=UTC),
        id="lookup_refresh",
        name="lookup cache refresh",
        replace_existing=True,
    )
    if settings.archive_retention_days is not None and jobs.purge_archive is not None:
        scheduler.add_job(
            jobs.purge_archive,
            IntervalTrigger(hours=24, timezone=UTC),
            id="archive_purge",
            name="archive retention purge",
            next_run_time=now,
            replace_existing=True,
        )
    scheduler.add_listener(_listener, EVENT_JOB_ERROR | EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES)
    return scheduler

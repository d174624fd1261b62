"""Scheduler wiring and the periodic jobs: token check by wall clock, pending retries, archive purge."""

from __future__ import annotations

import threading
from pathlib import Path

from service_support import bills_by_reference, settings_for, wait_for, write_invoices

from daemon.emulator import EmulatorServer
from daemon.factus.client import FactusClient
from daemon.service.runner import Daemon
from daemon.service.scheduler import JOB_DEFAULTS, Jobs, build_scheduler
from daemon.settings import SchedulerSettings


def _noop() -> None:
    """Do nothing (a job body for wiring tests)."""


def test_jobs_and_their_misfire_policy() -> None:
    """Every job coalesces, never overlaps and runs however late; the purge exists only when asked."""
    jobs = Jobs(_noop, _noop, _noop, _noop, _noop)
    for retention, expected in ((None, 4), (30, 5)):
        scheduler = build_scheduler(jobs, SchedulerSettings(archive_retention_days=retention), rescan_s=5)
        scheduler.start(paused=True)
        try:
            found = scheduler.get_jobs()
            assert len(found) == expected
            for job in found:
                assert job.coalesce is True and job.max_instances == 1 and job.misfire_grace_time is None
        finally:
            scheduler.shutdown(wait=False)
    assert JOB_DEFAULTS["misfire_grace_time"] is None


class _Clock:
    """A wall clock the test moves (a laptop lid closed for hours)."""

    def __init__(self) -> None:
        import time

        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def test_token_check_renews_after_a_suspend(tmp_path: Path, emu: EmulatorServer) -> None:
    """The token job compares the wall clock with the expiry: after a long sleep it renews at once."""
    settings = settings_for(tmp_path, emu)
    clock = _Clock()
    client = FactusClient(settings.factus, clock=clock)
    daemon = Daemon(settings, client=client)
    daemon.start(watch=False)
    try:
        assert client.tokens.logins == 1
        clock.now += 30
        daemon._token_check()
        assert client.tokens.refreshes == 0
        clock.now += 7200  # suspended past the expiry
        daemon._token_check()
        assert client.tokens.refreshes + client.tokens.logins == 2
        assert client.tokens.expires_at is not None and client.tokens.expires_at > clock.now
    finally:
        daemon.shutdown()
        client.close()


def test_auth_pause_then_resume_submits_waiting_invoices(tmp_path: Path, emu: EmulatorServer) -> None:
    """While authentication is paused files wait; the next good token check resumes and submits them."""
    daemon = Daemon(settings_for(tmp_path, emu))
    daemon.start(watch=False)
    try:
        daemon.submitter.pause_for_auth("refused")
        path = write_invoices(tmp_path / "inbox" / "a.csv", ["AP-1", "AP-2"])
        file_id = daemon.pipeline.claim(path)
        assert file_id is not None
        daemon._kick(file_id)
        assert wait_for(lambda: not daemon.busy(), 5)
        assert bills_by_reference(emu) == {}
        daemon._token_check()
        assert daemon.submitter.auth_ok.is_set()
        assert wait_for(lambda: len(bills_by_reference(emu)) == 2 and not daemon.busy(), 10)
        assert wait_for(lambda: list((tmp_path / "outbox" / "archive").rglob("a.csv")), 5)
    finally:
        daemon.shutdown()


def test_pending_invoices_are_retried_by_the_scheduler(tmp_path: Path, emu: EmulatorServer) -> None:
    """In watch mode, invoices left pending by an outage are submitted by the retry job when it ends."""
    emu.set_faults({"fail_next": 10_000, "fail_statuses": [503]})
    settings = settings_for(tmp_path, emu, submit={"max_attempts": 1}, scheduler={"retry_pending_s": 0.5})
    daemon = Daemon(settings)
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(daemon.run()))
    thread.start()
    try:
        write_invoices(tmp_path / "inbox" / "a.csv", ["SP-1", "SP-2"])
        assert wait_for(lambda: list((tmp_path / "outbox").glob("*/report.json")), 10)
        emu.set_faults({"fail_next": 0})
        assert wait_for(lambda: list((tmp_path / "outbox" / "archive").rglob("a.csv")), 15)
    finally:
        daemon.request_stop()
        thread.join(30)
    assert codes == [0]
    assert {ref: [b["status"] for b in bills] for ref, bills in bills_by_reference(emu).items()} == {
        "SP-1": [1],
        "SP-2": [1],
    }


def test_archive_retention_purges_only_old_day_folders(tmp_path: Path, emu: EmulatorServer) -> None:
    """The opt-in retention purge removes archive day folders older than the limit, nothing else."""
    settings = settings_for(tmp_path, emu, scheduler={"archive_retention_days": 30})
    archive = settings.paths.archive_dir
    (archive / "2000-01-01").mkdir(parents=True)
    (archive / "2000-01-01" / "old.csv").write_text("x")
    (archive / "notes").mkdir()
    daemon = Daemon(settings)
    daemon.start(watch=False)
    try:
        from datetime import UTC, datetime

        today = archive / datetime.now(UTC).strftime("%Y-%m-%d")
        today.mkdir()
        daemon._purge_archive()
        assert not (archive / "2000-01-01").exists()
        assert today.exists() and (archive / "notes").exists()
    finally:
        daemon.shutdown()

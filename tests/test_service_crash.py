"""A real daemon subprocess killed with SIGKILL (at random and at each crash point), then restarted."""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from service_support import (
    bills_by_reference,
    config_toml,
    daemon_env,
    leftovers,
    reports,
    spawn_daemon,
    wait_for,
    write_invoices,
)

from daemon.emulator import EmulatorConfig, EmulatorServer
from daemon.service.crash import POINTS

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", name="server")
def _server() -> Iterator[EmulatorServer]:
    """An emulator with latency that issues a second bill if a reference is ever sent twice."""
    config = EmulatorConfig(port=0, rate_limit=100_000, duplicate_policy="create-duplicate", latency_ms=30)
    with EmulatorServer(config) as server:
        yield server


def _drop_files(inbox: Path, prefix: str, files: int = 3, per_file: int = 3) -> list[str]:
    refs: list[str] = []
    for f in range(files):
        names = [f"{prefix}-{f}-{n}" for n in range(per_file)]
        write_invoices(inbox / f"{prefix}-{f}.csv", names)
        refs.extend(names)
    return refs


def _check_everything_once(root: Path, server: EmulatorServer, refs: list[str], files: int) -> None:
    bills = bills_by_reference(server)
    for ref in refs:
        assert len(bills.get(ref, [])) == 1, (ref, bills.get(ref))
        assert bills[ref][0]["status"] == 1
    found = reports(root / "outbox")
    assert len(found) == files
    for report in found:
        assert report["finished_at"], report
        assert report["summary"]["validated"] == len(report["invoices"]), report
        batch = next(
            p.parent for p in (root / "outbox").glob("*/report.json") if json.loads(p.read_text()) == report
        )
        for inv in report["invoices"]:
            assert (batch / inv["pdf"]).stat().st_size > 0 and (batch / inv["xml"]).stat().st_size > 0
    assert len(list((root / "outbox" / "archive").rglob("*.csv"))) == files
    assert not list((root / "outbox" / "failed").iterdir())
    assert leftovers(root) == []


def _finish(root: Path, config: Path, env: dict[str, str]) -> int:
    proc = spawn_daemon(config, env, "--once", cwd=root)
    return proc.wait(timeout=60)


def test_sigterm_drains_and_exits_zero(tmp_path: Path, server: EmulatorServer) -> None:
    """SIGTERM while invoices are in flight: exit 0, nothing left `submitting`, a restart finishes."""
    server.reset()
    server.set_faults({"latency_ms": 150})
    config = config_toml(tmp_path)
    env = daemon_env(server)
    refs = _drop_files(tmp_path / "inbox", "TERM", files=1, per_file=12)
    proc = spawn_daemon(config, env, cwd=tmp_path)
    try:
        assert wait_for(lambda: len(server.snapshot()["bills"]) >= 2, 20)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    db = sqlite3.connect(tmp_path / "var" / "ledger.sqlite3")
    states = dict(db.execute("SELECT state, COUNT(*) FROM invoices GROUP BY state").fetchall())
    db.close()
    assert "submitting" not in states
    server.set_faults({"latency_ms": None})
    assert _finish(tmp_path, config, env) == 0
    _check_everything_once(tmp_path, server, refs, files=1)


def test_random_sigkill_then_restart_issues_each_invoice_once(tmp_path: Path, server: EmulatorServer) -> None:
    """Ten random SIGKILLs mid-batch, each followed by a restart: every invoice validated exactly once."""
    rng = random.Random(20240)
    server.reset()
    server.set_faults({"latency_ms": 30, "latency_jitter_ms": 40})
    env = daemon_env(server)
    mid_batch = 0
    for rep in range(10):
        root = tmp_path / f"rep{rep}"
        root.mkdir()
        config = config_toml(root)
        refs = _drop_files(root / "inbox", f"K{rep}")
        proc = spawn_daemon(config, env, cwd=root)
        time.sleep(rng.uniform(0.3, 1.2))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        issued = sum(1 for ref in refs if ref in bills_by_reference(server))
        mid_batch += 0 < issued < len(refs) or not list((root / "outbox" / "archive").rglob("*.csv"))
        assert _finish(root, config, env) == 0, (root / "daemon.log").read_text()[-3000:]
        _check_everything_once(root, server, refs, files=3)
    assert mid_batch >= 5, f"only {mid_batch} of 10 kills landed before the batch was finished"


@pytest.mark.parametrize("point", [*POINTS, "after_send@3", "mid_document@4", "after_validated@2"])
def test_crash_points_are_recoverable(tmp_path: Path, server: EmulatorServer, point: str) -> None:
    """A SIGKILL at each named crash point is recovered by a restart: once, complete, nothing left over."""
    server.reset()
    config = config_toml(tmp_path)
    env = daemon_env(server)
    refs = _drop_files(tmp_path / "inbox", "CP", files=2, per_file=3)
    proc = spawn_daemon(config, env, "--once", "--crash-at", point, cwd=tmp_path)
    assert proc.wait(timeout=30) == -signal.SIGKILL, (tmp_path / "daemon.log").read_text()[-2000:]
    assert _finish(tmp_path, config, env) == 0, (tmp_path / "daemon.log").read_text()[-3000:]
    _check_everything_once(tmp_path, server, refs, files=2)

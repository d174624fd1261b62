"""Crash matrix: a real daemon subprocess SIGKILLed at every state transition and at random, then restarted.

The emulator runs with ``duplicate_policy="create-duplicate"``: an invoice ever sent twice shows up as
two bills, so "exactly once" is read straight from the emulator's state. The batches mix good
invoices, an invalid row, a DIAN rejection, an unreadable file and a re-dropped copy, so every path
(validated, rejected, invalid, duplicate, failed) is crashed, not only the happy one.
"""

from __future__ import annotations

import random
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from reliability_support import (
    Rig,
    assert_clean,
    assert_never_validated,
    assert_once,
    assert_reports_complete,
    assert_terminal,
    csv_file,
)
from service_support import bills_by_reference, invoice_rows, wait_for

from daemon.emulator import EmulatorConfig, EmulatorServer
from daemon.service.crash import POINTS

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", name="server")
def _server() -> Iterator[EmulatorServer]:
    """An emulator with a little latency that issues a second bill whenever a reference is resent."""
    config = EmulatorConfig(port=0, rate_limit=100_000, duplicate_policy="create-duplicate", latency_ms=15)
    with EmulatorServer(config) as server:
        yield server


@pytest.fixture(name="rig")
def _rig(tmp_path: Path, server: EmulatorServer) -> Iterator[Rig]:
    server.reset()
    rig = Rig(tmp_path, server)
    yield rig
    rig.cleanup()


@dataclass
class Expect:
    """What a dropped batch must end as."""

    good: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)
    archived: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    copies: list[tuple[str, str]] = field(default_factory=list)

    def __iadd__(self, other: Expect) -> Expect:
        for name in ("good", "rejected", "invalid", "archived", "failed", "copies"):
            getattr(self, name).extend(getattr(other, name))
        return self

    @property
    def files(self) -> int:
        return len(self.archived) + len(self.failed)


def mixed_batch(rig: Rig, tag: str) -> Expect:
    """Four files: good invoices, a file with an invalid row and a DIAN rejection, junk, and a copy."""
    exp = Expect()
    a = [f"{tag}-A{i}" for i in range(3)]
    rig.drop(f"{tag}-a.csv", a)
    b_good = [f"{tag}-B{i}" for i in range(2)]
    rejected, invalid = f"{tag}-REJ", f"{tag}-BAD"
    rows = invoice_rows(b_good[0]) + invoice_rows(rejected) + invoice_rows(invalid, person=False, nit_dv="1")
    rows += invoice_rows(b_good[1])
    rig.server.set_faults(
        {"reject_references": [*rig.server.snapshot()["faults"]["reject_references"], rejected]}
    )
    rig.drop_text(f"{tag}-b.csv", csv_file(rows))
    rig.drop_bytes(f"{tag}-junk.xlsx", b"PK\x03\x04 this is not a workbook")
    rig.drop_text(f"{tag}-a-copy.csv", (rig.inbox / f"{tag}-a.csv").read_text())
    exp.good += [*a, *b_good]
    exp.rejected.append(rejected)
    exp.invalid.append(invalid)
    exp.archived += [f"{tag}-a.csv", f"{tag}-b.csv", f"{tag}-a-copy.csv"]
    exp.failed.append(f"{tag}-junk.xlsx")
    exp.copies.append((f"{tag}-a.csv", f"{tag}-a-copy.csv"))
    return exp


def check_end_state(rig: Rig, exp: Expect) -> None:
    """Every promise of the crash matrix, checked against the emulator, the folders and the reports."""
    server = rig.server
    assert_once(server, exp.good)
    assert_never_validated(server, [*exp.rejected, *exp.invalid])
    bills = bills_by_reference(server)
    assert all(ref not in bills for ref in exp.invalid), "an invalid invoice reached Factus"
    assert server.snapshot()["pending"] == [], "a pending bill still blocks the account"
    assert_terminal(rig, archived=exp.archived, failed=exp.failed)
    assert_clean(rig)
    reports = assert_reports_complete(rig, server)
    statuses: dict[str, list[str]] = {}
    for report in reports.values():
        for line in report["invoices"]:
            statuses.setdefault(line["reference_code"], []).append(line["status"])
    for original, copy in exp.copies:
        refs = [line["reference_code"] for line in reports[original]["invoices"]]
        assert [line["reference_code"] for line in reports[copy]["invoices"]] == refs
        for ref in refs:
            assert sorted(statuses[ref]) == ["duplicate", "validated"], (ref, statuses[ref])
    for ref in exp.rejected:
        assert statuses[ref] == ["rejected"], (ref, statuses.get(ref))
    for ref in exp.invalid:
        assert statuses[ref] == ["invalid"], (ref, statuses.get(ref))
    for name in exp.failed:
        reason = rig.reason(name)
        assert reason["source"] == name and reason["reason"], reason


def crash_then_recover(rig: Rig, exp: Expect, point: str) -> None:
    """Run a watch-mode daemon armed at ``point`` until it kills itself, then restart it to the end."""
    proc = rig.spawn("--crash-at", point)
    try:
        code = proc.wait(timeout=40)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(f"crash point {point} was never reached\n{rig.log_tail()}") from None
    assert code == -signal.SIGKILL, f"{point}: exit {code}\n{rig.log_tail()}"
    rig.start()
    rig.wait_settled(exp.files)
    assert rig.alive(), rig.log_tail()
    assert rig.stop() == 0, rig.log_tail()


@pytest.mark.parametrize(
    "point",
    [
        "after_claim@3",
        "before_submit@3",
        "after_send@4",
        "after_validated@3",
        "mid_document@5",
        "mid_report@2",
        "before_archive@2",
        "after_archive@2",
    ],
)
def test_sigkill_at_each_transition_then_restart(rig: Rig, point: str) -> None:
    """Killed mid-batch at a state transition (claim, submit, send, validation, half-written document or
    report, archiving), a restarted daemon issues every good invoice exactly once and finishes every file."""
    exp = mixed_batch(rig, "X")
    crash_then_recover(rig, exp, point)
    check_end_state(rig, exp)


def test_sigkill_at_every_transition_in_turn(rig: Rig) -> None:
    """One workspace killed at every crash point in turn, with new files arriving between the crashes,
    still ends with each invoice validated once and each file in one terminal place."""
    exp = Expect()
    for n, point in enumerate(POINTS):
        refs = [f"T{n}-{i}" for i in range(2)]
        rig.drop(f"turn-{n}.csv", refs)
        exp.good += refs
        exp.archived.append(f"turn-{n}.csv")
        if n % 3 == 0:
            rig.drop_bytes(f"turn-{n}.json", b"{ not json")
            exp.failed.append(f"turn-{n}.json")
        code = rig.once("--crash-at", point, timeout_s=40)
        assert code == -signal.SIGKILL, f"{point}: exit {code}\n{rig.log_tail()}"
    assert rig.once() in (0, 1), rig.log_tail()
    assert rig.settled(exp.files), rig.ledger()
    check_end_state(rig, exp)


def test_lost_rejection_answer_is_reconciled_after_a_crash(rig: Rig) -> None:
    """Killed after DIAN rejected an invoice but before the answer was recorded: the restart finds the
    hidden rejected bill, records the rejection, deletes the bill, and a later file is not blocked."""
    single = Rig(rig.root / "one", rig.server, submit={"concurrency": 1})
    rejected = "L-REJ"
    rig.server.set_faults({"reject_references": [rejected]})
    single.drop_text(
        "first.csv", csv_file(invoice_rows(rejected) + invoice_rows("L-1") + invoice_rows("L-2"))
    )
    assert single.once("--crash-at", "after_send@1") == -signal.SIGKILL, single.log_tail()
    assert [b["reference_code"] for b in rig.server.snapshot()["pending"]] == [rejected]
    single.drop("second.csv", ["L-3", "L-4"])
    assert single.once(timeout_s=20) == 1, single.log_tail()  # 1: an invoice was rejected
    exp = Expect(
        good=["L-1", "L-2", "L-3", "L-4"],
        rejected=[rejected],
        archived=["first.csv", "second.csv"],
    )
    check_end_state(single, exp)
    assert [d["reference_code"] for d in rig.server.snapshot()["deleted"]] == [rejected]
    (line,) = [i for i in single.reports()["first.csv"]["invoices"] if i["reference_code"] == rejected]
    assert line["errors"] and "Rechazo" in line["errors"][0]["message"], line


def test_random_sigkill_without_hook_under_faults(rig: Rig) -> None:
    """Twelve kill -9 at random moments after work began (no crash hook armed) while the emulator
    loses answers and lags, each followed by a restart with more files: every invoice once, every file
    in one place."""
    rng = random.Random(515)
    server = rig.server
    exp = Expect()
    mid_work = 0
    for cycle in range(12):
        server.set_faults(
            {"latency_ms": 20, "latency_jitter_ms": 60, "reset_after_store_rate": 0.2, "fail_rate": 0.1}
        )
        refs = [f"R{cycle}-{i}" for i in range(3)]
        rig.drop(f"rand-{cycle}.csv", refs)
        exp.good += refs
        exp.archived.append(f"rand-{cycle}.csv")
        if cycle % 4 == 1:
            rig.drop_text(f"rand-{cycle}-again.csv", (rig.inbox / f"rand-{cycle}.csv").read_text())
            exp.archived.append(f"rand-{cycle}-again.csv")
            exp.copies.append((f"rand-{cycle}.csv", f"rand-{cycle}-again.csv"))
        if cycle % 4 == 2:
            rig.drop_bytes(f"rand-{cycle}.csv.xlsx", b"\x00" * 64)
            exp.failed.append(f"rand-{cycle}.csv.xlsx")
        claimed = rig.ledger()["file_count"]
        rig.start()
        assert wait_for(lambda n=claimed: rig.ledger()["file_count"] > n, 30), rig.log_tail()
        time.sleep(rng.uniform(0.0, 0.9))  # a random moment once work has begun
        rig.kill()
        info = rig.ledger()
        busy = info["file_count"] > info["files"].get("archived", 0) + info["files"].get("failed", 0)
        mid_work += busy or any(info["invoices"].get(s) for s in ("planned", "submitting", "pending"))
    server.set_faults({"clear": True})
    rig.start()
    rig.wait_settled(exp.files, timeout_s=90)
    assert rig.alive()
    assert rig.stop() == 0, rig.log_tail()
    check_end_state(rig, exp)
    assert mid_work >= 6, f"only {mid_work} of 12 kills landed while work was in progress"


def test_a_second_daemon_on_the_same_inbox_never_issues_twice(tmp_path: Path, server: EmulatorServer) -> None:
    """A second daemon started by mistake on the same inbox (another state folder, so another ledger)
    while the first is mid-batch either refuses to start or cooperates: no invoice is issued twice
    and every file ends in exactly one terminal place."""
    server.reset()
    server.set_faults({"latency_ms": 200})
    shared = {"inbox": str(tmp_path / "inbox"), "outbox": str(tmp_path / "outbox")}
    first = Rig(tmp_path / "first", server, paths=shared)
    second = Rig(tmp_path / "second", server, paths=shared)
    exp = Expect()
    try:
        first.start()
        assert wait_for(lambda: (first.inbox / ".processing").is_dir(), 30), first.log_tail()
        for n in range(6):
            refs = [f"TW{n}-{i}" for i in range(3)]
            first.drop(f"tw-{n}.csv", refs)
            exp.good += refs
            exp.archived.append(f"tw-{n}.csv")
        assert wait_for(lambda: len(bills_by_reference(server)) >= 2, 20), first.log_tail()
        second.start()
        time.sleep(4.0)
    finally:
        first.kill()
        second.kill()
    server.set_faults({"latency_ms": None})
    assert first.once() in (0, 1), first.log_tail()
    check_end_state(first, exp)

"""Fault matrix over real sockets: a daemon subprocess against an emulator that misbehaves on purpose.

Each fault (see :mod:`daemon.emulator.faults`) is switched on while files flow through a real daemon;
afterwards nothing is lost (every invoice validated), nothing is duplicated (the emulator runs with
``create-duplicate``, so a resend would be a second bill), the watch-mode daemon is still running
and stops with exit 0, and when work had to wait the report says why.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from reliability_support import (
    Rig,
    assert_clean,
    assert_once,
    assert_reports_complete,
    assert_terminal,
    csv_file,
)
from service_support import bills_by_reference, invoice_rows, wait_for

from daemon.emulator import EmulatorConfig, EmulatorServer
from daemon.intake import Lookups, read_invoices
from daemon.money import dumps_json
from daemon.settings import Settings
from tests.conftest import login

pytestmark = pytest.mark.slow

FAST: dict[str, dict[str, Any]] = {
    "factus": {"rate_limit": 2000, "timeout_s": 3.0, "validate_timeout_s": 1.0, "refresh_margin_s": 1.0},
    "submit": {"max_attempts": 6},
    "scheduler": {"retry_pending_s": 0.5, "token_check_s": 0.5},
}


def sections(**overrides: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The fast test config with some keys changed."""
    out = {k: dict(v) for k, v in FAST.items()}
    for section, values in overrides.items():
        out.setdefault(section, {}).update(values)
    return out


@pytest.fixture(scope="module", name="server")
def _server() -> Iterator[EmulatorServer]:
    """An emulator that issues a second bill whenever a reference is sent again."""
    config = EmulatorConfig(port=0, rate_limit=100_000, duplicate_policy="create-duplicate")
    with EmulatorServer(config) as server:
        yield server


@pytest.fixture(name="rig")
def _rig(tmp_path: Path, server: EmulatorServer) -> Iterator[Rig]:
    server.reset()
    rig = Rig(tmp_path, server, **sections())
    yield rig
    rig.cleanup()
    if not server.running:
        server.start()


def feed(
    rig: Rig, tag: str, files: int, per_file: int, *, pause_s: float = 0.0
) -> tuple[list[str], list[str]]:
    """Drop ``files`` canonical CSVs (``per_file`` invoices each); returns (references, file names)."""
    refs: list[str] = []
    names: list[str] = []
    for f in range(files):
        batch = [f"{tag}{f}-{i}" for i in range(per_file)]
        names.append(rig.drop(f"{tag.lower()}-{f}.csv", batch).name)
        refs += batch
        time.sleep(pause_s)
    return refs, names


def watch_through(rig: Rig, refs: list[str], names: list[str], *, timeout_s: float = 60.0) -> None:
    """Wait until the running daemon settled every file, then check the promises and stop it (exit 0)."""
    rig.wait_settled(len(names), timeout_s)
    assert rig.alive(), rig.log_tail()
    assert rig.stop() == 0, rig.log_tail()
    assert_once(rig.server, refs)
    assert_terminal(rig, archived=names)
    assert_clean(rig)
    reports = assert_reports_complete(rig, rig.server)
    assert sorted(reports) == sorted(names)


def interim_lines(rig: Rig) -> list[dict[str, Any]]:
    """Report lines that are still pending (interim reports written while work waits)."""
    return [
        line
        for report in rig.reports().values()
        for line in report["invoices"]
        if line["status"] == "pending"
    ]


def test_5xx_storm(rig: Rig) -> None:
    """30 % of all requests (token endpoint included) answer 500/502/503: every invoice once, daemon up."""
    rig.server.set_faults({"fail_rate": 0.3})
    rig.start()
    refs, names = feed(rig, "S", files=3, per_file=4, pause_s=0.2)
    watch_through(rig, refs, names)
    by_status = rig.server.snapshot()["requests"]["by_status"]
    assert sum(by_status.get(s, 0) for s in ("500", "502", "503")) >= 5, by_status


def test_429_bursts_with_retry_after(rig: Rig) -> None:
    """Two bursts of 429 with Retry-After: waited out, never hammered, every invoice once."""
    rig.server.set_faults({"burst_429": 4, "retry_after_s": 1})
    rig.start()
    refs, names = feed(rig, "Q", files=2, per_file=3)
    assert wait_for(lambda: rig.server.snapshot()["requests"]["429"] >= 4, 20)
    started = time.monotonic()
    rig.server.set_faults({"burst_429": 3})
    more, more_names = feed(rig, "QQ", files=1, per_file=3)
    watch_through(rig, refs + more, names + more_names)
    assert rig.server.snapshot()["requests"]["429"] == 7
    assert time.monotonic() - started >= 1.0


def test_connection_reset_after_the_bill_is_stored(rig: Rig) -> None:
    """Creates stored at Factus whose answer is lost (TCP reset) are found by reference, never resent."""
    rig.server.set_faults(
        {"reset_after_store": 3, "reset_after_store_rate": 0.3, "reset_before_store_rate": 0.1}
    )
    rig.start()
    refs, names = feed(rig, "LR", files=3, per_file=4)
    watch_through(rig, refs, names)
    assert rig.server.snapshot()["requests"]["reset"] >= 3


def test_gateway_error_after_the_bill_is_stored(rig: Rig) -> None:
    """Creates stored at Factus but answered 500/502/503/504 (a gateway failing after the backend) are
    treated as in doubt and found by reference, never sent again."""
    rig.server.set_faults(
        {"fail_after_store": 2, "fail_after_store_rate": 0.3, "fail_statuses": [500, 502, 503, 504]}
    )
    rig.start()
    refs, names = feed(rig, "GW", files=3, per_file=4)
    watch_through(rig, refs, names)
    by_status = rig.server.snapshot()["requests"]["by_status"]
    assert sum(by_status.get(s, 0) for s in ("500", "502", "503", "504")) >= 2, by_status


def _expire_every(server: EmulatorServer, every_s: float) -> tuple[threading.Event, threading.Thread]:
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(every_s):
            server.set_faults({"expire_tokens": True})

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return stop, thread


def test_token_expiry_every_few_seconds(tmp_path: Path) -> None:
    """Tokens that live 2 s and are revoked every 0.7 s never fail an invoice nor stop the daemon."""
    config = EmulatorConfig(port=0, rate_limit=100_000, duplicate_policy="create-duplicate", token_ttl_s=2)
    with EmulatorServer(config) as server:
        rig = Rig(tmp_path, server, **sections())
        stop, thread = _expire_every(server, 0.7)
        try:
            rig.start()
            refs, names = feed(rig, "TK", files=5, per_file=3, pause_s=0.8)
            watch_through(rig, refs, names)
        finally:
            stop.set()
            thread.join()
            rig.cleanup()
        oauth = server.snapshot()["requests"]["by_route"]["POST /oauth/token"]
        assert oauth >= 3, oauth


def test_refresh_token_rejected(tmp_path: Path) -> None:
    """Every refresh grant refused: the daemon signs in again with the password and loses nothing."""
    config = EmulatorConfig(port=0, rate_limit=100_000, duplicate_policy="create-duplicate", token_ttl_s=2)
    with EmulatorServer(config) as server:
        server.set_faults({"reject_refresh": True})
        rig = Rig(tmp_path, server, **sections())
        try:
            rig.start()
            refs, names = feed(rig, "RF", files=4, per_file=3, pause_s=0.8)
            watch_through(rig, refs, names)
        finally:
            rig.cleanup()
        assert server.snapshot()["requests"]["by_status"].get("400", 0) >= 1
        assert "factus_refresh_refused" in rig.log()


def test_dian_time_out_then_success_on_resend(rig: Rig) -> None:
    """A bill DIAN leaves pending is resent with the same reference and validated once (same number)."""
    rig.server.set_faults({"dian_timeout_references": {"DT0-1": 2, "DT1-0": 1}, "latency_ms": 10})
    rig.start()
    refs, names = feed(rig, "DT", files=2, per_file=3)
    watch_through(rig, refs, names)


def test_dian_down_leaves_work_pending_then_a_later_run_completes(rig: Rig) -> None:
    """DIAN never answering: ``run --once`` exits 3 with a report saying so; a later run validates once."""
    rig.server.set_faults({"dian_timeout_references": {"DD-1": 1000}})
    short = Rig(rig.root / "short", rig.server, **sections(submit={"max_attempts": 2}))
    short.drop("dd.csv", ["DD-1"])
    assert short.once(timeout_s=60) == 3, short.log_tail()
    (line,) = interim_lines(short)
    assert line["reference_code"] == "DD-1"
    assert any("DIAN" in e["message"] for e in line["errors"]), line
    assert short.reports()["dd.csv"]["finished_at"] is None
    rig.server.set_faults({"dian_timeout_references": None})
    assert short.once() == 0, short.log_tail()
    assert_once(rig.server, ["DD-1"])
    assert_terminal(short, archived=["dd.csv"])
    assert_reports_complete(short, rig.server)


def test_one_bill_dian_never_answers_blocks_the_rest_without_a_resend_storm(rig: Rig) -> None:
    """DIAN never answers for DS-1; every other create answers 409 (our pending bill blocks the
    account). The blocker is resent on its own backoff, not once per 409 of every other invoice:
    ``run --once`` exits 3 with all three pending and a bounded number of requests."""
    rig.server.set_faults({"dian_timeout_references": {"DS-1": 1000}})
    # one worker, so DS-1 (first in the file) is created before the others and blocks them
    short = Rig(rig.root / "short", rig.server, **sections(submit={"max_attempts": 3, "concurrency": 1}))
    short.drop("ds.csv", ["DS-1", "DS-2", "DS-3"])
    started = time.monotonic()
    assert short.once(timeout_s=90) == 3, short.log_tail()
    elapsed = time.monotonic() - started
    validates = rig.server.snapshot()["requests"]["validate"]
    # 3 invoices x 3 attempts, plus the blocker's resends on its own backoff: tens, not hundreds
    assert validates <= 3 * 3 * 3, (validates, elapsed, short.log_tail())
    assert {line["reference_code"] for line in interim_lines(short)} == {"DS-1", "DS-2", "DS-3"}
    rig.server.set_faults({"dian_timeout_references": None})
    assert short.once() == 0, short.log_tail()
    assert_once(rig.server, ["DS-1", "DS-2", "DS-3"])


def test_hidden_rejected_bill_from_a_previous_file_is_cleared(rig: Rig) -> None:
    """A DIAN rejection (NIT check digit, FAK24) leaves a hidden pending bill that would block the account
    with 409: it is deleted, the rejection reported with its rule, and every other invoice validated once."""
    rig.server.set_faults({"reject_references": {"HB0-1": "FAK24"}})
    rig.start()
    refs, names = feed(rig, "HB", files=1, per_file=4)
    rig.wait_settled(1)
    more, more_names = feed(rig, "HC", files=2, per_file=3)
    rig.wait_settled(3)
    assert rig.alive() and rig.stop() == 0, rig.log_tail()
    good = [r for r in refs if r != "HB0-1"] + more
    assert_once(rig.server, good)
    snapshot = rig.server.snapshot()
    assert snapshot["pending"] == [] and [d["reference_code"] for d in snapshot["deleted"]] == ["HB0-1"]
    assert "HB0-1" not in bills_by_reference(rig.server)
    reports = assert_reports_complete(rig, rig.server)
    (line,) = [i for i in reports[names[0]]["invoices"] if i["reference_code"] == "HB0-1"]
    assert line["status"] == "rejected" and line["errors"][0]["rule"] == "FAK24", line
    assert_terminal(rig, archived=names + more_names)


def _post_bill(server: EmulatorServer, reference: str, scratch: Path) -> httpx.Response:
    """Send one canonical invoice straight to the emulator, as another program would."""
    src = scratch / f"{reference}.csv"
    src.write_text(csv_file(invoice_rows(reference)), encoding="utf-8")
    payload = read_invoices(src, settings=Settings(), lookups=Lookups.builtin()).invoices[0].payload
    with httpx.Client(base_url=server.url) as http:
        login(http, server)
        return http.post(
            "/v1/bills/validate",
            content=dumps_json(payload),
            headers={"Content-Type": "application/json"},
        )


def _foreign_pending_bill(server: EmulatorServer, reference: str, scratch: Path) -> None:
    """Create a DIAN-rejected (hidden, pending) bill that some other program sent to the same account."""
    server.set_faults({"reject_references": [reference]})
    answer = _post_bill(server, reference, scratch)
    assert answer.status_code == 422, answer.text


def test_foreign_pending_bill_is_never_deleted(rig: Rig) -> None:
    """A pending bill this daemon did not create blocks the account: it is left alone, the invoices stay
    pending (exit 3) with a report naming the blocker, and once it is gone a later run validates them."""
    _foreign_pending_bill(rig.server, "NOT-OURS", rig.staging)
    short = Rig(rig.root / "short", rig.server, **sections(submit={"max_attempts": 2}))
    short.drop("fb.csv", ["FB-1", "FB-2"])
    assert short.once(timeout_s=60) == 3, short.log_tail()
    assert [b["reference_code"] for b in rig.server.snapshot()["pending"]] == ["NOT-OURS"]
    assert rig.server.snapshot()["deleted"] == []
    lines = interim_lines(short)
    assert {line["reference_code"] for line in lines} == {"FB-1", "FB-2"}
    for line in lines:
        assert any("did not create" in e["message"] for e in line["errors"]), line
    with rig.server.state.lock:
        assert rig.server.state.delete_by_reference("NOT-OURS") == "deleted"  # the owner resolves it
    assert short.once() == 0, short.log_tail()
    assert_once(rig.server, ["FB-1", "FB-2"])
    assert_reports_complete(short, rig.server)


def test_latency_spike_beyond_the_client_timeout(rig: Rig) -> None:
    """Answers slower than the validate timeout (the bill is stored after the client gave up) are
    reconciled by reference once the spike is over: nothing is issued twice."""
    spiky = Rig(
        rig.root / "spiky", rig.server, **sections(factus={"validate_timeout_s": 0.4, "timeout_s": 3.0})
    )
    rig.server.set_faults({"latency_ms": 1000})
    spiky.start()
    refs, names = feed(spiky, "LS", files=2, per_file=3)
    assert wait_for(lambda: len(bills_by_reference(rig.server)) >= 2, 20)
    time.sleep(1.5)
    rig.server.set_faults({"latency_ms": None})
    try:
        watch_through(spiky, refs, names)
    finally:
        spiky.cleanup()


def test_emulator_stopped_and_restarted_mid_batch(rig: Rig) -> None:
    """Factus unreachable for a while in the middle of a batch (requests in flight cut off): the daemon
    keeps running, its interim report says why invoices wait, and after the restart each is issued once."""
    server = rig.server
    server.set_faults({"latency_ms": 60})
    rig.start()
    refs, names = feed(rig, "OU", files=1, per_file=8)
    assert wait_for(lambda: len(bills_by_reference(server)) >= 2, 20), rig.log_tail()
    server.stop()
    try:
        more, more_names = feed(rig, "OV", files=1, per_file=2)
        assert wait_for(lambda: bool(interim_lines(rig)), 20), rig.log_tail()
        time.sleep(2.0)
        assert rig.alive(), rig.log_tail()
        for line in interim_lines(rig):
            assert line["errors"] and line["errors"][-1]["message"], line
    finally:
        server.start()
    server.set_faults({"latency_ms": None})
    watch_through(rig, refs + more, names + more_names)


def test_emulator_down_during_run_once_exits_3_then_completes(rig: Rig) -> None:
    """``run --once`` cut off from Factus mid-batch exits 3 with pending work explained; a later run
    finishes it without issuing anything twice."""
    server = rig.server
    server.set_faults({"latency_ms": 250})
    short = Rig(rig.root / "short", server, **sections(submit={"max_attempts": 2}))
    refs = [f"OD-{i}" for i in range(10)]
    short.drop("od.csv", refs)
    proc = short.spawn("--once")
    try:
        assert wait_for(lambda: len(bills_by_reference(server)) >= 2, 20), short.log_tail()
        server.stop()
        assert proc.wait(timeout=60) == 3, short.log_tail()
    finally:
        if proc.poll() is None:
            proc.kill()
        server.start()
    report = short.reports()["od.csv"]
    unfinished = [i for i in report["invoices"] if i["status"] == "pending" or not i["pdf"]]
    assert report["finished_at"] is None and unfinished, report["summary"]
    for line in interim_lines(short):
        assert line["errors"] and line["errors"][-1]["message"], line
    server.set_faults({"latency_ms": None})
    assert short.once() == 0, short.log_tail()
    assert_once(server, refs)
    assert_terminal(short, archived=["od.csv"])
    assert_clean(short)
    assert_reports_complete(short, server)


def test_fail_after_store_fault_stores_the_bill_then_errs(server: EmulatorServer, tmp_path: Path) -> None:
    """The fault harness itself: ``fail_after_store`` keeps the bill and answers a gateway error."""
    server.reset()
    server.set_faults({"fail_after_store": 1, "fail_statuses": [504]})
    answer = _post_bill(server, "FAS-1", tmp_path)
    assert answer.status_code == 504
    assert [b["status"] for b in bills_by_reference(server)["FAS-1"]] == [1]


def test_emulator_restart_keeps_its_port_and_state(server: EmulatorServer) -> None:
    """The fault harness itself: a stopped emulator started again listens on the same port with its bills."""
    server.reset()
    url = server.url
    with server.state.lock:
        server.state.issue_tokens()
    server.stop()
    assert not server.running
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/__emulator__/state", timeout=2)
    server.start()
    assert server.url == url
    assert httpx.get(url + "/__emulator__/state", timeout=2).json()["tokens"]["refresh"] == 1
    assert len(server.issued_tokens()) == 2

"""The whole pipeline in-process against the emulator: claim, submit, documents, reports, archive."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from service_support import (
    bills_by_reference,
    csv_text,
    invoice_rows,
    leftovers,
    reports,
    settings_for,
    wait_for,
    write_invoices,
)

from daemon.emulator import EmulatorConfig, EmulatorServer
from daemon.service.ledger import SqliteLedger
from daemon.service.runner import Daemon


@pytest.fixture(scope="module", name="dup_emulator")
def _dup_emulator() -> Iterator[EmulatorServer]:
    """An emulator that creates a second bill when a validated reference is sent again."""
    config = EmulatorConfig(port=0, rate_limit=100_000, duplicate_policy="create-duplicate")
    with EmulatorServer(config) as server:
        yield server


@pytest.fixture(name="demu")
def _demu(dup_emulator: EmulatorServer) -> EmulatorServer:
    dup_emulator.reset()
    return dup_emulator


def _once_validated(server: EmulatorServer, refs: list[str]) -> None:
    bills = bills_by_reference(server)
    for ref in refs:
        assert len(bills.get(ref, [])) == 1, (ref, bills.get(ref))
        assert bills[ref][0]["status"] == 1, bills[ref]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_canonical_files_end_to_end(tmp_path: Path, demu: EmulatorServer) -> None:
    """Every invoice is validated once, with its PDF, XML and report, and the sources are archived."""
    settings = settings_for(tmp_path, demu)
    write_invoices(tmp_path / "inbox" / "ventas.csv", ["V-1", "V-2", "V-3"], items=2)
    write_invoices(tmp_path / "inbox" / "abril.csv", ["A-1", "A-2"])
    assert Daemon(settings).run_once() == 0
    _once_validated(demu, ["V-1", "V-2", "V-3", "A-1", "A-2"])
    found = {r["source"]: r for r in reports(tmp_path / "outbox")}
    assert set(found) == {"ventas.csv", "abril.csv"}
    report = found["ventas.csv"]
    assert report["summary"] == {"validated": 3, "rejected": 0, "invalid": 0, "duplicate": 0, "pending": 0}
    assert report["finished_at"] and report["invoices"][0]["rows"] == [2, 3]
    batch = next(p for p in (tmp_path / "outbox").iterdir() if p.name.endswith("_ventas"))
    for inv in report["invoices"]:
        assert (batch / inv["pdf"]).read_bytes().startswith(b"%PDF")
        assert b"<" in (batch / inv["xml"]).read_bytes()
        assert inv["pdf"] == f"{inv['number']}.pdf" and inv["cufe"] and inv["total"] == "47600.00"
    assert (batch / "report.csv").read_text(encoding="utf-8-sig").startswith("record,reference_code")
    archived = sorted(p.name for p in (tmp_path / "outbox" / "archive").rglob("*.csv"))
    assert archived == ["abril.csv", "ventas.csv"]
    assert leftovers(tmp_path) == []


def test_rejected_invoice_does_not_block_its_file(tmp_path: Path, demu: EmulatorServer) -> None:
    """A DIAN rejection is reported with its rule, its hidden bill is deleted, the others validate."""
    demu.set_faults({"reject_references": {"R-2": "FAK24"}})
    write_invoices(tmp_path / "inbox" / "f.csv", ["R-1", "R-2", "R-3", "R-4"])
    assert Daemon(settings_for(tmp_path, demu)).run_once() == 1
    _once_validated(demu, ["R-1", "R-3", "R-4"])
    assert demu.snapshot()["pending"] == []
    (report,) = reports(tmp_path / "outbox")
    by_ref = {i["reference_code"]: i for i in report["invoices"]}
    assert by_ref["R-2"]["status"] == "rejected" and by_ref["R-2"]["number"] is None
    assert by_ref["R-2"]["errors"][0]["rule"] == "FAK24"
    assert report["summary"]["validated"] == 3 and report["summary"]["rejected"] == 1


def test_input_errors_are_located_and_the_rest_goes_on(tmp_path: Path, demu: EmulatorServer) -> None:
    """A row with a wrong NIT check digit is reported invalid at its row and column; the rest validates."""
    rows = invoice_rows("G-1") + invoice_rows("G-2", person=False, nit_dv="1") + invoice_rows("G-3")
    g4 = invoice_rows("G-4", items=3)
    g4[1]["item.price"] = "12,5,0"  # only the middle line is broken; none of the three is issued
    rows += g4
    (tmp_path / "inbox").mkdir(parents=True)
    (tmp_path / "inbox" / "mixed.csv").write_text(csv_text(rows), encoding="utf-8")
    assert Daemon(settings_for(tmp_path, demu)).run_once() == 1
    _once_validated(demu, ["G-1", "G-3"])
    assert "G-2" not in bills_by_reference(demu) and "G-4" not in bills_by_reference(demu)
    (report,) = reports(tmp_path / "outbox")
    bad = {i["reference_code"]: i for i in report["invoices"] if i["status"] == "invalid"}
    assert bad["G-2"]["rows"] == [3]
    assert bad["G-2"]["errors"][0]["row"] == 3 and "dv" in bad["G-2"]["errors"][0]["column"]
    assert bad["G-4"]["rows"] == [5, 6, 7]
    assert [e["row"] for e in bad["G-4"]["errors"]] == [6]


def test_a_copy_of_an_unreadable_file_is_read_on_its_own(tmp_path: Path, demu: EmulatorServer) -> None:
    """A CSV saved as a.json cannot be read; the same bytes dropped beside it as b.csv are read as
    CSV, never failed with a.json's reason (whichever of the two is claimed first)."""
    text = csv_text(invoice_rows("CP-1"))
    (tmp_path / "inbox").mkdir(parents=True)
    (tmp_path / "inbox" / "a.json").write_text(text, encoding="utf-8")
    (tmp_path / "inbox" / "b.csv").write_text(text, encoding="utf-8")
    # a.json fails (exit 1) when read before b.csv, else it is b.csv's duplicate (exit 0)
    assert Daemon(settings_for(tmp_path, demu)).run_once() in (0, 1)
    _once_validated(demu, ["CP-1"])
    reasons = [json.loads(p.read_text()) for p in (tmp_path / "outbox" / "failed").rglob("*.reason.json")]
    assert [r["file"] for r in reasons] in ([], ["a.json"])
    assert all("JSON" in r["reason"] and "same content" not in r["reason"] for r in reasons)
    if reasons:  # the unreadable file has its batch folder and report too: no invoice, one file error
        failed_report = next(r for r in reports(tmp_path / "outbox") if r["source"] == "a.json")
        assert failed_report["invoices"] == [] and failed_report["finished_at"]
        assert set(failed_report["summary"].values()) == {0}
        (error,) = failed_report["file_errors"]
        assert error["rule"] == "unreadable" and "failed/a.json" in error["message"]


def test_an_unreadable_file_gets_a_batch_report(tmp_path: Path, demu: EmulatorServer) -> None:
    """A file that cannot be read at all still gets its batch folder and report beside failed/."""
    (tmp_path / "inbox").mkdir(parents=True)
    (tmp_path / "inbox" / "junk.json").write_bytes(b"{not json at all")
    assert Daemon(settings_for(tmp_path, demu)).run_once() == 1
    (report,) = reports(tmp_path / "outbox")
    assert report["source"] == "junk.json" and report["invoices"] == [] and report["finished_at"]
    (error,) = report["file_errors"]
    assert error["rule"] == "unreadable" and "is not valid JSON" in error["message"]
    assert (tmp_path / "outbox" / "failed" / "junk.json.reason.json").is_file()


def test_a_hard_linked_file_is_archived_as_a_copy_of_its_own(tmp_path: Path, demu: EmulatorServer) -> None:
    """A file dropped as a hard link to a file elsewhere: the archive keeps its own inode, so later
    edits to the outside file never change the archived copy; the outside file is untouched."""
    outside = write_invoices(tmp_path / "elsewhere" / "export.csv", ["HL-1"])
    before = outside.read_bytes()
    (tmp_path / "inbox").mkdir(parents=True)
    os.link(outside, tmp_path / "inbox" / "export.csv")
    assert Daemon(settings_for(tmp_path, demu)).run_once() == 0
    _once_validated(demu, ["HL-1"])
    (archived,) = (tmp_path / "outbox" / "archive").rglob("export.csv")
    assert archived.stat().st_ino != outside.stat().st_ino and outside.stat().st_nlink == 1
    outside.write_text("edited later", encoding="utf-8")
    assert archived.read_bytes() == before


def test_duplicates_are_never_resubmitted(tmp_path: Path, demu: EmulatorServer) -> None:
    """The same file twice, or the same invoice in another file, is reported duplicate with its number."""
    settings = settings_for(tmp_path, demu)
    write_invoices(tmp_path / "inbox" / "a.csv", ["D-1", "D-2"])
    assert Daemon(settings).run_once() == 0
    write_invoices(tmp_path / "inbox" / "a-again.csv", ["D-1", "D-2"])
    write_invoices(tmp_path / "inbox" / "b.csv", ["D-2", "D-3"])
    write_invoices(tmp_path / "inbox" / "c.csv", ["D-1"], price="99900")
    assert Daemon(settings).run_once() == 1  # c.csv changes an issued invoice
    _once_validated(demu, ["D-1", "D-2", "D-3"])
    found = {r["source"]: r for r in reports(tmp_path / "outbox")}
    first = {i["reference_code"]: i["number"] for i in found["a.csv"]["invoices"]}
    again = found["a-again.csv"]
    assert [i["status"] for i in again["invoices"]] == ["duplicate", "duplicate"]
    assert {i["reference_code"]: i["number"] for i in again["invoices"]} == first
    assert again["file_errors"][0]["rule"] == "duplicate_file"
    b = {i["reference_code"]: i for i in found["b.csv"]["invoices"]}
    assert b["D-2"]["status"] == "duplicate" and b["D-2"]["number"] == first["D-2"]
    assert b["D-3"]["status"] == "validated"
    (c,) = found["c.csv"]["invoices"]
    assert c["status"] == "invalid" and "a.csv" in c["errors"][0]["message"]
    assert "c.csv" in c["errors"][0]["message"]


def test_same_bytes_under_another_profile_are_not_a_duplicate(tmp_path: Path, demu: EmulatorServer) -> None:
    """The ERP sample dropped in the inbox (canonical layout: unreadable) and, at the same time, in
    inbox/erp_ventas_es/ (its profile): the profiled copy is read with its profile and validated;
    only the unprofiled one goes to failed/ (it was failed as a 'duplicate' of it before)."""
    root = Path(__file__).resolve().parents[1]
    (tmp_path / "profiles").mkdir()
    profile = root / "config" / "profiles" / "erp_ventas_es.toml"
    (tmp_path / "profiles" / profile.name).write_bytes(profile.read_bytes())
    sample = (root / "config" / "samples" / "erp_ventas.csv").read_bytes()
    (tmp_path / "inbox" / "erp_ventas_es").mkdir(parents=True)
    (tmp_path / "inbox" / "aaa_export.csv").write_bytes(sample)
    (tmp_path / "inbox" / "erp_ventas_es" / "export.csv").write_bytes(sample)
    assert Daemon(settings_for(tmp_path, demu)).run_once() == 1  # the unprofiled copy failed
    found = {r["source"]: r for r in reports(tmp_path / "outbox")}
    report = found["export.csv"]
    assert report["profile"] == "erp_ventas_es" and report["invoices"], report
    assert {i["status"] for i in report["invoices"]} == {"validated"}, report
    _once_validated(demu, [i["reference_code"] for i in report["invoices"]])
    assert [p.name for p in (tmp_path / "outbox" / "failed").glob("*.csv")] == ["aaa_export.csv"]


def test_an_invoice_waiting_out_its_doubt_does_not_hold_a_worker(
    tmp_path: Path, demu: EmulatorServer
) -> None:
    """One worker: W-1's create gets a gateway 502 (the bill may still be in the making), so it must
    wait ``in_doubt_grace_s`` before it is looked up and resent. Meanwhile W-2 is validated: the wait
    is a deferral, not a sleeping worker (under 30 % 5xx a sleeping worker made runs 16x slower)."""
    demu.set_faults({"fail_references": {"W-1": 502}})
    write_invoices(tmp_path / "inbox" / "w.csv", ["W-1", "W-2"])
    settings = settings_for(tmp_path, demu, submit={"concurrency": 1})
    assert Daemon(settings).run_once() == 0
    _once_validated(demu, ["W-1", "W-2"])
    order = [b["reference_code"] for b in demu.snapshot()["bills"]]
    assert order == ["W-2", "W-1"], order


def test_a_re_dropped_file_keeps_its_invalid_lines_invalid(tmp_path: Path, demu: EmulatorServer) -> None:
    """The same bytes again: issued invoices are 'duplicate' with their number; a line refused when
    read is reported 'invalid' with its errors again, not 'duplicate' of nothing."""
    rows = invoice_rows("RD-1") + invoice_rows("RD-2", person=False, nit_dv="1")
    (tmp_path / "inbox").mkdir(parents=True)
    text = csv_text(rows)
    (tmp_path / "inbox" / "rd.csv").write_text(text, encoding="utf-8")
    settings = settings_for(tmp_path, demu)
    assert Daemon(settings).run_once() == 1
    (tmp_path / "inbox" / "rd-again.csv").write_text(text, encoding="utf-8")
    assert Daemon(settings).run_once() == 1
    again = {r["source"]: r for r in reports(tmp_path / "outbox")}["rd-again.csv"]
    by_ref = {i["reference_code"]: i for i in again["invoices"]}
    assert by_ref["RD-1"]["status"] == "duplicate" and by_ref["RD-1"]["number"]
    assert by_ref["RD-2"]["status"] == "invalid" and by_ref["RD-2"]["errors"], by_ref["RD-2"]
    assert again["summary"]["invalid"] == 1 and again["summary"]["duplicate"] == 1
    _once_validated(demu, ["RD-1"])


def test_a_corrected_invoice_is_submitted_after_a_rejection(tmp_path: Path, demu: EmulatorServer) -> None:
    """After a rejection, the same reference code with corrected content is submitted and validated."""
    settings = settings_for(tmp_path, demu)
    demu.set_faults({"reject_references": ["C-1"]})
    write_invoices(tmp_path / "inbox" / "first.csv", ["C-1"])
    assert Daemon(settings).run_once() == 1
    demu.set_faults({"reject_references": None})
    write_invoices(tmp_path / "inbox" / "fixed.csv", ["C-1"], price="23800")
    assert Daemon(settings).run_once() == 0
    _once_validated(demu, ["C-1"])
    found = {r["source"]: r for r in reports(tmp_path / "outbox")}
    assert found["first.csv"]["invoices"][0]["status"] == "rejected"
    assert found["fixed.csv"]["invoices"][0]["status"] == "validated"


def test_unreadable_files_go_to_failed_with_a_reason(tmp_path: Path, demu: EmulatorServer) -> None:
    """Junk, empty files and symlinks leaving the inbox are moved to failed/ with a reason file."""
    inbox = tmp_path / "inbox"
    inbox.mkdir(parents=True)
    (inbox / "junk.xlsx").write_bytes(b"\x00\x01 not a zip")
    (inbox / "empty.csv").write_bytes(b"")
    outside = tmp_path / "secret.csv"
    outside.write_text(csv_text(invoice_rows("S-1")))
    (inbox / "link.csv").symlink_to(outside)
    write_invoices(inbox / "good.csv", ["OK-1"])
    assert Daemon(settings_for(tmp_path, demu)).run_once() == 1
    _once_validated(demu, ["OK-1"])
    assert "S-1" not in bills_by_reference(demu)
    failed = tmp_path / "outbox" / "failed"
    for name in ("junk.xlsx", "empty.csv", "link.csv"):
        assert (failed / name).exists() or (failed / name).is_symlink()
        reason = json.loads((failed / f"{name}.reason.json").read_text())
        assert reason["source"] == name and reason["reason"]
    assert outside.read_text().startswith("reference_code")
    assert leftovers(tmp_path) == []


def test_token_expiry_mid_batch(tmp_path: Path, demu: EmulatorServer) -> None:
    """Tokens revoked again and again during a batch never fail an invoice."""
    demu.set_faults({"latency_ms": 20})
    refs = [f"T-{n}" for n in range(12)]
    write_invoices(tmp_path / "inbox" / "t.csv", refs)
    stop = threading.Event()

    def expire() -> None:
        while not stop.wait(0.1):
            demu.set_faults({"expire_tokens": True})

    thread = threading.Thread(target=expire)
    thread.start()
    try:
        assert Daemon(settings_for(tmp_path, demu)).run_once() == 0
    finally:
        stop.set()
        thread.join()
    _once_validated(demu, refs)


def test_conflict_from_a_dian_pending_invoice_is_resolved(tmp_path: Path, demu: EmulatorServer) -> None:
    """A DIAN-pending invoice blocks the account (409); it is resent and everything validates once."""
    demu.set_faults({"dian_timeout_references": {"P-1": 2}, "latency_ms": 10})
    refs = [f"P-{n}" for n in range(1, 7)]
    write_invoices(tmp_path / "inbox" / "p.csv", refs)
    assert Daemon(settings_for(tmp_path, demu, submit={"max_attempts": 5})).run_once() == 0
    _once_validated(demu, refs)
    assert demu.snapshot()["requests"]["by_status"].get("409", 0) >= 1


def test_lost_responses_are_reconciled(tmp_path: Path, demu: EmulatorServer) -> None:
    """A create whose answer is lost after the bill was stored is found by reference, not resent."""
    demu.set_faults({"reset_after_references": ["L-2", "L-4"], "reset_before_references": ["L-3"]})
    refs = ["L-1", "L-2", "L-3", "L-4"]
    write_invoices(tmp_path / "inbox" / "l.csv", refs)
    settings = settings_for(tmp_path, demu, factus={"validate_timeout_s": 0.3})
    assert Daemon(settings).run_once() == 0
    _once_validated(demu, refs)


def test_unreachable_factus_leaves_work_pending(tmp_path: Path, demu: EmulatorServer) -> None:
    """With Factus unreachable the run exits 3 with a pending report, and a later run finishes it."""
    write_invoices(tmp_path / "inbox" / "u.csv", ["U-1", "U-2"])
    down = settings_for(tmp_path, base_url=f"http://127.0.0.1:{_free_port()}", submit={"max_attempts": 2})
    assert Daemon(down).run_once() == 3
    (report,) = reports(tmp_path / "outbox")
    assert report["summary"]["pending"] == 2 and report["finished_at"] is None
    assert report["invoices"][0]["errors"][0]["message"]
    assert list((tmp_path / "inbox" / ".processing").rglob("u.csv"))
    assert Daemon(settings_for(tmp_path, demu)).run_once() == 0
    _once_validated(demu, ["U-1", "U-2"])
    (report,) = reports(tmp_path / "outbox")
    assert report["summary"]["validated"] == 2 and report["finished_at"]


def test_a_factus_that_is_down_is_not_retried_invoice_by_invoice(
    tmp_path: Path, demu: EmulatorServer
) -> None:
    """40 invoices, Factus refusing connections: after a few failures in a row the rest are left
    pending at once (exit 3), instead of 40 × max_attempts tries; a later run validates them all."""
    refs = [f"DOWN-{n}" for n in range(40)]
    write_invoices(tmp_path / "inbox" / "d.csv", refs)
    down = settings_for(
        tmp_path, base_url=f"http://127.0.0.1:{_free_port()}", submit={"max_attempts": 5, "outage_after": 4}
    )
    daemon = Daemon(down)
    assert daemon.run_once() == 3
    ledger = SqliteLedger(tmp_path / "var" / "ledger.sqlite3")
    try:
        invoices = [ledger.invoice(ref) for ref in refs]
    finally:
        ledger.close()
    assert all(inv is not None and inv.state == "pending" for inv in invoices)
    tries = sum(inv.attempts for inv in invoices if inv is not None)
    assert tries <= 4 + 4 * 2, tries  # the failures that opened the breaker, plus those in flight
    assert any("Factus unreachable" in (inv.message or "") for inv in invoices if inv is not None)
    assert Daemon(settings_for(tmp_path, demu)).run_once() == 0
    _once_validated(demu, refs)


def test_refused_credentials_pause_without_failing(tmp_path: Path, demu: EmulatorServer) -> None:
    """Wrong credentials leave every invoice pending (exit 3); fixed credentials then validate them."""
    write_invoices(tmp_path / "inbox" / "a.csv", ["AU-1", "AU-2"])
    bad = settings_for(tmp_path, demu, factus={"password": "wrong-password"})
    assert Daemon(bad).run_once() == 3
    assert bills_by_reference(demu) == {}
    assert not list((tmp_path / "outbox" / "failed").iterdir())
    assert Daemon(settings_for(tmp_path, demu)).run_once() == 0
    _once_validated(demu, ["AU-1", "AU-2"])


def test_transient_faults_are_retried(tmp_path: Path, demu: EmulatorServer) -> None:
    """5xx answers and a 429 burst are retried without duplicating anything."""
    demu.set_faults({"fail_next": 4, "burst_429": 3, "retry_after_s": 1})
    refs = [f"X-{n}" for n in range(6)]
    write_invoices(tmp_path / "inbox" / "x.csv", refs)
    assert Daemon(settings_for(tmp_path, demu, submit={"max_attempts": 6})).run_once() == 0
    _once_validated(demu, refs)


def test_watch_mode_slow_writer_then_stop(tmp_path: Path, demu: EmulatorServer) -> None:
    """In watch mode a file written slowly is processed once and complete, and stop drains cleanly."""
    settings = settings_for(tmp_path, demu, watch={"stable_s": 0.4, "rescan_s": 0.5})
    daemon = Daemon(settings)
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(daemon.run()))
    thread.start()
    try:
        assert wait_for(lambda: (tmp_path / "inbox" / ".processing").is_dir(), 10)
        refs = [f"W-{n}" for n in range(8)]
        text = csv_text([row for ref in refs for row in invoice_rows(ref)])
        target = tmp_path / "inbox" / "slow.csv"
        with target.open("w", encoding="utf-8") as fh:
            for start in range(0, len(text), 150):
                fh.write(text[start : start + 150])
                fh.flush()
                time.sleep(0.05)
        assert wait_for(lambda: list((tmp_path / "outbox" / "archive").rglob("slow.csv")), 20)
    finally:
        daemon.request_stop()
        thread.join(30)
    assert codes == [0]
    _once_validated(demu, refs)
    (report,) = reports(tmp_path / "outbox")
    assert report["summary"]["validated"] == 8


def test_a_file_name_that_is_not_utf8_is_processed(tmp_path: Path, demu: EmulatorServer) -> None:
    """A file whose name is not valid UTF-8 is processed, reported and archived under a readable name."""
    inbox = tmp_path / "inbox"
    inbox.mkdir(parents=True)
    raw = os.fsencode(inbox) + b"/caf\xe9 ventas.csv"
    with open(raw, "wb") as fh:
        fh.write(csv_text(invoice_rows("NU-1")).encode("utf-8"))
    assert Daemon(settings_for(tmp_path, demu)).run_once() == 0
    _once_validated(demu, ["NU-1"])
    (report,) = reports(tmp_path / "outbox")
    assert report["source"] == "caf\ufffd ventas.csv"
    assert [p.name for p in (tmp_path / "outbox" / "archive").rglob("*.csv")] == ["caf\ufffd ventas.csv"]


def test_done_marker_mode(tmp_path: Path, demu: EmulatorServer) -> None:
    """In done-marker mode a file with its marker is processed and the marker is archived, not deleted."""
    settings = settings_for(tmp_path, demu, watch={"done_marker": True})
    write_invoices(tmp_path / "inbox" / "m.csv", ["DM-1"])
    (tmp_path / "inbox" / "m.csv.done").write_text("")
    assert Daemon(settings).run_once() == 0
    _once_validated(demu, ["DM-1"])
    names = sorted(p.name for p in (tmp_path / "outbox" / "archive").rglob("*") if p.is_file())
    assert names == ["m.csv", "m.csv.done"]
    assert leftovers(tmp_path) == [] and not list((tmp_path / "inbox").glob("m.csv*"))


def test_files_with_the_same_stem_get_their_own_batch_folders(tmp_path: Path, demu: EmulatorServer) -> None:
    """Files read at the same time with the same stem never share a batch folder or a report."""
    inbox = tmp_path / "inbox"
    inbox.mkdir(parents=True)
    expected = {}
    for n, suffix in enumerate((".csv", ".txt", ".tsv")):
        refs = [f"SS{n}-{i}" for i in range(3)]
        text = csv_text([row for ref in refs for row in invoice_rows(ref)])
        if suffix == ".tsv":
            text = text.replace(",", "\t")
        (inbox / f"same{suffix}").write_text(text, encoding="utf-8")
        expected[f"same{suffix}"] = refs
    assert Daemon(settings_for(tmp_path, demu)).run_once() == 0
    found = {r["source"]: [i["reference_code"] for i in r["invoices"]] for r in reports(tmp_path / "outbox")}
    assert found == expected
    assert len([p for p in (tmp_path / "outbox").iterdir() if "_same" in p.name]) == 3

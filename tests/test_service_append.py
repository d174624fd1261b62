"""A claimed file that changes afterwards (a writer still at work) goes back to the inbox, never lost."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from service_support import bills_by_reference, csv_text, invoice_rows, reports, settings_for

from daemon.emulator import EmulatorServer
from daemon.service import source
from daemon.service.ledger import SqliteLedger
from daemon.service.outbox import Outbox
from daemon.service.pipeline import IntakeOutcome, Reader
from daemon.service.runner import Daemon


def _texts(refs: list[str]) -> tuple[str, str]:
    """The first invoice of ``refs`` as a complete CSV, and the rows that complete the file."""
    full = csv_text([row for ref in refs for row in invoice_rows(ref)])
    head = csv_text(invoice_rows(refs[0]))
    return head, full[len(head) :]


def _archived(root: Path) -> list[Path]:
    return sorted(p for p in (root / "outbox" / "archive").rglob("*") if p.is_file())


def test_file_changed_while_reading_is_put_back_before_anything_is_submitted(
    tmp_path: Path, emulator: EmulatorServer, monkeypatch: Any
) -> None:
    """Rows appended while the claimed file is read: nothing is submitted from that read, the file goes
    back to the inbox and its whole content is processed in the same ``run --once``."""
    settings = settings_for(tmp_path, emulator)
    head, tail = _texts(["CR-1", "CR-2", "CR-3"])
    (tmp_path / "inbox").mkdir(parents=True, exist_ok=True)
    (tmp_path / "inbox" / "growing.csv").write_text(head, encoding="utf-8")
    calls: list[Path] = []
    real_reader = source.intake_reader

    def appending_reader(settings: Any, lookups: Any) -> Reader:
        inner = real_reader(settings, lookups)

        def reader(path: Path, profile: str | None) -> IntakeOutcome:
            outcome = inner(path, profile)
            if not calls:
                with path.open("a", encoding="utf-8") as fh:
                    fh.write(tail)
            calls.append(path)
            return outcome

        return reader

    monkeypatch.setattr(source, "intake_reader", appending_reader)
    assert Daemon(settings).run_once() == 0
    assert len(calls) == 2
    bills = bills_by_reference(emulator)
    assert all(len(bills.get(ref, [])) == 1 for ref in ("CR-1", "CR-2", "CR-3")), bills
    (archived,) = _archived(tmp_path)
    assert archived.read_text(encoding="utf-8") == head + tail
    (report,) = reports(tmp_path / "outbox")
    assert report["summary"]["validated"] == 3 and report["file_errors"] == []
    ledger = SqliteLedger(settings.paths.ledger_path)
    try:
        assert [f.state for f in ledger.files()] == ["archived"]  # the unread claim was dropped
    finally:
        ledger.close()


def test_file_changed_after_it_was_read_is_reported_and_processed_again(
    tmp_path: Path, emulator: EmulatorServer, monkeypatch: Any
) -> None:
    """Rows appended while the first rows are submitted: the first report names the change, the file
    goes back to the inbox, and the next pass submits only the new rows (the rest are duplicates)."""
    settings = settings_for(tmp_path, emulator)
    head, tail = _texts(["CA-1", "CA-2", "CA-3"])
    (tmp_path / "inbox").mkdir(parents=True, exist_ok=True)
    (tmp_path / "inbox" / "late.csv").write_text(head, encoding="utf-8")
    original = Outbox.write_report
    appended: list[bool] = []

    def write_report(self: Outbox, batch_dir: Path, report: Any) -> Path:
        if report.get("finished_at") and not appended:
            (processing,) = (p for p in (tmp_path / "inbox" / ".processing").rglob("late.csv"))
            with processing.open("a", encoding="utf-8") as fh:
                fh.write(tail)
            appended.append(True)
        return original(self, batch_dir, report)

    monkeypatch.setattr(Outbox, "write_report", write_report)
    assert Daemon(settings).run_once() == 0
    bills = bills_by_reference(emulator)
    assert all(len(bills.get(ref, [])) == 1 for ref in ("CA-1", "CA-2", "CA-3")), bills
    (archived,) = _archived(tmp_path)
    assert archived.read_text(encoding="utf-8") == head + tail
    first, second = sorted(reports(tmp_path / "outbox"), key=lambda r: r["started_at"])
    assert "changed after it was read" in first["file_errors"][0]["message"]
    assert "bytes appended" in first["file_errors"][0]["message"]
    assert second["file_errors"] == []
    assert second["summary"]["validated"] == 2 and second["summary"]["duplicate"] == 1
    assert not any((tmp_path / "inbox").glob("*.csv"))

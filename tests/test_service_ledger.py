"""The SQLite ledger: durability settings, permissions and the reference-code rules."""

from __future__ import annotations

import sqlite3
import stat
from decimal import Decimal
from pathlib import Path

import pytest

from daemon.errors import LedgerError
from daemon.service.ledger import NewEntry, NewInvoice, SqliteLedger
from daemon.service.pipeline import payload_hash


def _inv(ref: str, price: str = "100") -> NewInvoice:
    payload = {"reference_code": ref, "items": [{"price": Decimal(price), "quantity": 1}]}
    return NewInvoice(reference_code=ref, rows=[2], payload=payload, payload_hash=payload_hash(payload))


def _file(ledger: SqliteLedger, name: str, sha: str | None = None) -> int:
    row = ledger.register_file(
        sha256=sha or name * 4,
        name=name,
        original_path=f"/in/{name}",
        processing_path=f"/in/.processing/x/{name}",
        profile=None,
        size_bytes=10,
    )
    return row.id


@pytest.fixture(name="ledger")
def _ledger(tmp_path: Path) -> SqliteLedger:
    led = SqliteLedger(tmp_path / "state" / "ledger.sqlite3")
    yield led
    led.close()


def test_ledger_is_private_wal_and_synchronous(ledger: SqliteLedger) -> None:
    """The ledger file is created 0600 in WAL mode with synchronous=FULL."""
    assert stat.S_IMODE(ledger.path.stat().st_mode) == 0o600
    db = sqlite3.connect(ledger.path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()
    assert ledger._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_payload_keeps_exact_decimals(ledger: SqliteLedger) -> None:
    """A payload comes back from the ledger with the same numbers (no float, no string)."""
    fid = _file(ledger, "a.csv")
    ledger.record_intake(fid, [_inv("R1", "1190.55")])
    inv = ledger.invoice("R1")
    assert inv is not None
    assert inv.payload["items"][0]["price"] == Decimal("1190.55")
    assert inv.payload["items"][0]["quantity"] == 1


def test_same_content_again_is_a_duplicate_file(ledger: SqliteLedger) -> None:
    """A second file with the same SHA-256 is registered as a duplicate of the first."""
    first = _file(ledger, "a.csv", "f" * 64)
    second = ledger.register_file(
        sha256="f" * 64,
        name="a (copy).csv",
        original_path="/in/a (copy).csv",
        processing_path="/in/.processing/y/a (copy).csv",
        profile=None,
        size_bytes=10,
    )
    assert second.duplicate_of == first


def test_content_of_a_failed_file_is_not_a_duplicate(ledger: SqliteLedger) -> None:
    """A file whose earlier copy failed is processed again, not reported as a duplicate."""
    first = _file(ledger, "a.csv", "e" * 64)
    ledger.update_file(first, state="failed")
    again = _file(ledger, "a2.csv", "e" * 64)
    assert ledger.file(again).duplicate_of is None


def test_reference_rules(ledger: SqliteLedger) -> None:
    """Validated and same: duplicate; changed: invalid naming both files; rejected: resubmitted."""
    a = _file(ledger, "a.csv")
    assert ledger.record_intake(a, [_inv("R1"), _inv("R2"), _inv("R3")]) == ["R1", "R2", "R3"]
    ledger.update_invoice("R1", state="validated", number="SETP1")
    ledger.update_invoice("R2", state="rejected", errors=[{"message": "Regla: FAK24, Rechazo: DV"}])
    b = _file(ledger, "b.csv")
    to_submit = ledger.record_intake(b, [_inv("R1"), _inv("R1X", "5"), _inv("R2", "200"), _inv("R3", "9")])
    assert to_submit == ["R1X", "R2"]
    entries = {e.reference_code: e for e in ledger.entries(b)}
    assert entries["R1"].kind == "duplicate"
    assert entries["R3"].status == "invalid"
    message = entries["R3"].errors[0]["message"]
    assert "a.csv" in message and "b.csv" in message
    inv = ledger.invoice("R2")
    assert inv is not None and inv.state == "planned" and inv.file_id == b
    frozen = {e.reference_code: e for e in ledger.entries(a)}["R2"]
    assert frozen.status == "rejected" and "FAK24" in frozen.errors[0]["message"]


def test_same_reference_twice_in_one_file(ledger: SqliteLedger) -> None:
    """A reference code used twice in one file with different content is an error at the second rows."""
    a = _file(ledger, "a.csv")
    ledger.record_intake(a, [_inv("R1"), _inv("R1", "7")])
    entries = ledger.entries(a)
    assert entries[1].status == "invalid"
    assert entries[1].errors[0]["rule"] == "reference_conflict"


def test_invalid_entries_and_file_errors_are_recorded(ledger: SqliteLedger) -> None:
    """Input errors become final invalid lines; file-level errors are kept on the file."""
    a = _file(ledger, "a.csv")
    bad = NewEntry(reference_code=None, rows=[4], errors=[{"row": 4, "column": "x", "message": "bad"}])
    ledger.record_intake(a, [], [bad], file_errors=[{"message": "whole file"}])
    assert ledger.entries(a)[0].status == "invalid"
    assert ledger.file(a).file_errors == [{"message": "whole file"}]
    assert ledger.file(a).state == "read"


def test_retry_refuses_a_validated_invoice(ledger: SqliteLedger) -> None:
    """A validated invoice can never be put back in line."""
    a = _file(ledger, "a.csv")
    ledger.record_intake(a, [_inv("R1"), _inv("R2")])
    ledger.update_invoice("R1", state="validated", number="SETP1")
    with pytest.raises(LedgerError, match="SETP1"):
        ledger.reset_for_retry("R1")
    ledger.update_invoice("R2", state="rejected")
    assert ledger.reset_for_retry("R2").state == "planned"
    assert ledger.file(a).report_due


def test_stats_counts_states(ledger: SqliteLedger) -> None:
    """``stats`` reports counts by state and the oldest pending invoice."""
    a = _file(ledger, "a.csv")
    ledger.record_intake(a, [_inv("R1"), _inv("R2")])
    ledger.update_invoice("R1", state="validated", number="N1")
    stats = ledger.stats()
    assert stats["invoices"] == {"validated": 1, "planned": 1}
    assert stats["oldest_pending"]["reference_code"] == "R2"


def test_readonly_open_of_a_missing_ledger_fails(tmp_path: Path) -> None:
    """Opening a ledger read-only never creates it."""
    with pytest.raises(LedgerError):
        SqliteLedger(tmp_path / "none.sqlite3", readonly=True)
    assert not (tmp_path / "none.sqlite3").exists()

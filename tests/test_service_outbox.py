"""Source-file moves (claim, archive, failed) and the outbox writers (documents, reports, CSV safety)."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from daemon.fsutil import TMP_SUFFIX
from daemon.service.files import FileStore, sha256_of
from daemon.service.ledger import DocumentRow, EntryRow, FileRow, InvoiceRow
from daemon.service.outbox import CSV_COLUMNS, Outbox, build_report, csv_safe, report_csv

REPORT_KEYS = {
    "source",
    "sha256",
    "profile",
    "started_at",
    "finished_at",
    "summary",
    "invoices",
    "file_errors",
}
INVOICE_KEYS = {"reference_code", "status", "number", "cufe", "qr", "total", "pdf", "xml", "rows", "errors"}


@pytest.fixture(name="store")
def _store(tmp_path: Path) -> FileStore:
    store = FileStore(tmp_path / "inbox", tmp_path / "archive", tmp_path / "failed")
    store.ensure_dirs()
    return store


def test_claim_moves_into_processing_and_keeps_profile(store: FileStore) -> None:
    """A claimed file leaves the inbox for .processing/ and remembers its profile folder."""
    src = store.inbox / "siigo" / "ventas.csv"
    src.parent.mkdir()
    src.write_text("x")
    claimed = store.claim(src)
    assert claimed is not None
    assert not src.exists() and claimed.path.read_text() == "x"
    assert claimed.profile == "siigo" and claimed.name == "ventas.csv"
    assert [c.path for c in store.claimed_files()] == [claimed.path]


def test_claim_of_a_vanished_file_is_none(store: FileStore) -> None:
    """Claiming a file somebody else took returns None and leaves no folder behind."""
    assert store.claim(store.inbox / "gone.csv") is None
    assert list(store.processing.iterdir()) == []


def test_archive_never_overwrites(store: FileStore) -> None:
    """Two archived files with the same name both survive."""
    paths = []
    for content in ("one", "two"):
        src = store.inbox / "a.csv"
        src.write_text(content)
        claimed = store.claim(src)
        assert claimed is not None
        paths.append(store.move_to(claimed.path, store.archive_target("a.csv")))
    assert paths[0] != paths[1]
    assert {p.read_text() for p in paths} == {"one", "two"}
    assert list(store.processing.iterdir()) == []


def test_failed_file_gets_a_reason(store: FileStore) -> None:
    """A failed file lands in failed/ next to <name>.reason.json."""
    src = store.inbox / "junk.xlsx"
    src.write_bytes(b"\x00\x01")
    claimed = store.claim(src)
    assert claimed is not None
    target = store.failed_target("junk.xlsx")
    store.write_reason(target, {"reason": "not a zip"})
    final = store.move_to(claimed.path, target)
    assert final == store.failed / "junk.xlsx"
    assert json.loads((store.failed / "junk.xlsx.reason.json").read_text())["reason"] == "not a zip"


def test_hash_of_a_symlink_does_not_follow_it(store: FileStore, tmp_path: Path) -> None:
    """A symbolic link is hashed by its target text; the target is never read."""
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    link = store.inbox / "link.csv"
    link.symlink_to(secret)
    assert sha256_of(link) != sha256_of(secret)


def test_temp_files_are_cleaned(store: FileStore, tmp_path: Path) -> None:
    """Leftover *.fdtmp files of interrupted writes are removed, nothing else."""
    batch = tmp_path / "out" / "batch"
    batch.mkdir(parents=True)
    (batch / f".report.json.abc{TMP_SUFFIX}").write_text("half")
    (batch / "report.json").write_text("{}")
    removed = store.clean_temp_files(tmp_path / "out")
    assert len(removed) == 1 and (batch / "report.json").exists()


@pytest.mark.parametrize(
    ("raw", "safe"),
    [
        ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        ("+1", "'+1"),
        ("-2", "'-2"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tcmd", "'\tcmd"),
        ("\rcmd", "'\rcmd"),
        ("plain", "plain"),
        (None, ""),
    ],
)
def test_csv_cells_are_formula_safe(raw: str | None, safe: str) -> None:
    """Cells starting with = + - @ tab or CR are prefixed with a quote."""
    assert csv_safe(raw) == safe


def _file_row(**kw: object) -> FileRow:
    base: dict[str, object] = {
        "id": 1,
        "sha256": "ab" * 32,
        "name": "=evil.csv",
        "original_path": "/in/=evil.csv",
        "processing_path": None,
        "profile": None,
        "size_bytes": 1,
        "duplicate_of": None,
        "state": "read",
        "claimed_at": "2025-01-01T00:00:00Z",
        "read_at": None,
        "finished_at": None,
        "batch_dir": "/out/b",
        "report_path": None,
        "final_path": None,
        "reason": None,
        "file_errors": [{"row": None, "column": None, "value": None, "message": "=cmd|' /C calc'!A0"}],
        "warnings": [],
        "report_due": False,
        "updated_at": "2025-01-01T00:00:00Z",
    }
    base.update(kw)
    return FileRow(**base)  # type: ignore[arg-type]


def _invoice(ref: str, state: str, **kw: object) -> InvoiceRow:
    base: dict[str, object] = {
        "reference_code": ref,
        "file_id": 1,
        "file_sha256": "ab" * 32,
        "payload": {},
        "payload_hash": "h",
        "sent_hash": "h",
        "rows": [2],
        "state": state,
        "number": None,
        "cufe": None,
        "qr": None,
        "total": None,
        "bill_id": None,
        "attempts": 1,
        "last_outcome": None,
        "hidden_bill": False,
        "errors": [],
        "notifications": [],
        "message": None,
        "created_at": "t",
        "updated_at": "t",
        "sent_at": None,
        "validated_at": None,
        "next_attempt_at": None,
    }
    base.update(kw)
    return InvoiceRow(**base)  # type: ignore[arg-type]


def _entry(seq: int, ref: str | None, kind: str = "own", **kw: object) -> EntryRow:
    base: dict[str, object] = {
        "file_id": 1,
        "seq": seq,
        "reference_code": ref,
        "kind": kind,
        "rows": [seq + 1],
        "status": None,
        "number": None,
        "cufe": None,
        "qr": None,
        "total": None,
        "errors": [],
    }
    base.update(kw)
    return EntryRow(**base)  # type: ignore[arg-type]


def test_report_schema_and_csv() -> None:
    """report.json has exactly the issue's keys; report.csv has one line per invoice and per error."""
    batch = Path("/out/b")
    invoices = {
        "R1": _invoice("R1", "validated", number="SETP1", cufe="c" * 96, qr="https://q", total="100.00"),
        "R2": _invoice(
            "R2",
            "rejected",
            errors=[{"row": 3, "column": None, "value": None, "message": "x", "rule": "FAK24"}],
        ),
    }
    docs = {"R1": {k: DocumentRow("R1", k, f"/out/b/SETP1.{k}", "s", 1, "t") for k in ("pdf", "xml")}}
    entries = [
        _entry(1, "R1"),
        _entry(2, "R2"),
        _entry(
            3,
            None,
            "invalid",
            status="invalid",
            errors=[{"row": 4, "column": "c", "value": "=1+1", "message": "m"}],
        ),
    ]
    report = build_report(_file_row(), entries, invoices, docs, batch_dir=batch, finished_at="now")
    assert set(report) == REPORT_KEYS
    assert all(set(i) == INVOICE_KEYS for i in report["invoices"])
    assert report["summary"] == {"validated": 1, "rejected": 1, "invalid": 1, "duplicate": 0, "pending": 0}
    assert report["invoices"][0]["pdf"] == "SETP1.pdf"
    assert set(report["invoices"][1]["errors"][0]) == {"row", "column", "value", "message", "rule"}
    rows = list(csv.reader(io.StringIO(report_csv(report))))
    assert tuple(rows[0]) == CSV_COLUMNS
    records = [r[0] for r in rows[1:]]
    assert records == ["invoice", "invoice", "error", "invoice", "error", "file_error"]
    assert all(not cell.startswith(("=", "+", "-", "@")) for row in rows for cell in row)


def test_document_names_cannot_escape_the_batch(tmp_path: Path) -> None:
    """A hostile invoice number is sanitised into one file name inside the batch folder."""
    outbox = Outbox(tmp_path / "out")
    batch = outbox.batch_dir_for("../../etc/passwd.csv", lambda _p: False)
    written = outbox.write_document(batch, "../../../etc/passwd", "pdf", b"%PDF")
    assert written.path.parent == batch
    assert batch.parent == tmp_path / "out"
    assert written.path.read_bytes() == b"%PDF"


def test_batch_folders_are_unique(tmp_path: Path) -> None:
    """Two files with the same stem in the same second get two batch folders."""
    outbox = Outbox(tmp_path / "out", clock=lambda: 1_700_000_000.0)
    first = outbox.batch_dir_for("ventas.csv", lambda _p: False)
    first.mkdir(parents=True)
    second = outbox.batch_dir_for("ventas.xlsx", lambda _p: False)
    assert first.name == "20231114T221320Z_ventas" and second.name == "20231114T221320Z_ventas-2"


def test_crash_hook_leaves_a_half_written_temp_file(tmp_path: Path) -> None:
    """The mid_report crash point kills the process with a half-written temp file and no report."""
    code = (
        "import sys; from pathlib import Path; from daemon.service import crash; "
        "from daemon.service.outbox import Outbox; crash.arm('mid_report'); "
        f"Outbox(Path({str(tmp_path)!r})).write_report(Path({str(tmp_path / 'b')!r}), "
        "{'invoices': [], 'file_errors': []})"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parents[1], check=False)
    assert proc.returncode == -9
    temps = list((tmp_path / "b").glob(f"*{TMP_SUFFIX}"))
    assert len(temps) == 1 and not (tmp_path / "b" / "report.json").exists()
    assert os.path.getsize(temps[0]) > 0

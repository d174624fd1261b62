"""The outbox: one batch folder per source file with its PDFs, XMLs, ``report.json`` and ``report.csv``.

``outbox/<UTC timestamp>_<file stem>/`` holds ``<number>.pdf`` and ``<number>.xml`` per validated
invoice and the two reports. Every write is atomic (:mod:`daemon.fsutil`), every name built from a
number or a file name goes through :func:`daemon.fsutil.safe_name`, and the CSV report neutralises
spreadsheet formulas. Reports are pure functions of the ledger, so they can always be rebuilt.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from daemon.fsutil import atomic_write_bytes, safe_name
from daemon.log import redact
from daemon.service import crash
from daemon.service.ledger import DocumentRow, EntryRow, FileRow, InvoiceRow

__all__ = [
    "CSV_COLUMNS",
    "REPORT_STATUSES",
    "Outbox",
    "WrittenDocument",
    "build_report",
    "csv_safe",
    "entry_status",
    "report_csv",
]

REPORT_STATUSES = ("validated", "rejected", "invalid", "duplicate", "pending")
CSV_COLUMNS = (
    "record",
    "reference_code",
    "status",
    "number",
    "cufe",
    "total",
    "rows",
    "pdf",
    "xml",
    "row",
    "column",
    "value",
    "message",
    "rule",
    "qr",
)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value: Any) -> str:
    """One CSV cell that no spreadsheet will evaluate as a formula (OWASP CSV injection advice)."""
    if value is None:
        return ""
    text = " ".join(str(v) for v in value) if isinstance(value, list | tuple) else str(value)
    text = text.replace("\x00", "\\x00")
    if text.startswith(_FORMULA_START):
        text = "'" + text
    return text


@dataclass(frozen=True, slots=True)
class WrittenDocument:
    """A document on disk: its path and content hash."""

    path: Path
    sha256: str
    size_bytes: int


def entry_status(entry: EntryRow, invoice: InvoiceRow | None) -> str:
    """The report status of one line: frozen lines keep theirs, live ones follow their invoice."""
    if entry.status is not None:
        return entry.status
    if entry.kind == "duplicate":
        return "duplicate"
    if invoice is None:
        return "invalid"
    if invoice.state in ("validated", "rejected", "invalid"):
        return invoice.state
    return "pending"


def entry_is_final(entry: EntryRow, invoice: InvoiceRow | None) -> bool:
    """True when the line cannot change any more (its invoice reached a terminal state)."""
    if entry.status is not None or invoice is None:
        return True
    return invoice.terminal


def build_report(
    file: FileRow,
    entries: Sequence[EntryRow],
    invoices: Mapping[str, InvoiceRow],
    documents: Mapping[str, Mapping[str, DocumentRow]],
    *,
    batch_dir: Path,
    finished_at: str | None,
) -> dict[str, Any]:
    """The ``report.json`` object of a file (schema of issue 4), built from ledger rows only."""
    lines: list[dict[str, Any]] = []
    summary = dict.fromkeys(REPORT_STATUSES, 0)
    for entry in entries:
        inv = invoices.get(entry.reference_code) if entry.reference_code else None
        status = entry_status(entry, inv)
        summary[status] = summary.get(status, 0) + 1
        live = entry.status is None and inv is not None
        number = inv.number if live and inv is not None else entry.number
        cufe = inv.cufe if live and inv is not None else entry.cufe
        qr = inv.qr if live and inv is not None else entry.qr
        total = inv.total if live and inv is not None else entry.total
        errors = list(entry.errors)
        if live and inv is not None and entry.kind == "own":
            errors = list(inv.errors)
            if status == "pending" and inv.message:
                # Why the invoice is still waiting (Factus unreachable, DIAN slow, account blocked...).
                row = inv.rows[0] if inv.rows else None
                why = {"row": row, "column": None, "value": None, "message": inv.message}
                errors.append({**why, "rule": inv.last_outcome})
        pdf = xml = None
        if status == "validated" and entry.kind == "own" and entry.reference_code:
            docs = documents.get(entry.reference_code, {})
            pdf = _relative(docs.get("pdf"), batch_dir)
            xml = _relative(docs.get("xml"), batch_dir)
        if status == "duplicate" and inv is not None and inv.state != "validated" and entry.status is None:
            number = cufe = qr = total = None
        lines.append(
            {
                "reference_code": entry.reference_code,
                "status": status,
                "number": number,
                "cufe": cufe,
                "qr": qr,
                "total": total,
                "pdf": pdf,
                "xml": xml,
                "rows": list(entry.rows),
                "errors": [_error(e) for e in errors],
            }
        )
    return {
        "source": file.name,
        "sha256": file.sha256,
        "profile": file.profile,
        "started_at": file.claimed_at,
        "finished_at": finished_at,
        "summary": summary,
        "invoices": lines,
        "file_errors": [_error(e) for e in file.file_errors],
    }


def _relative(doc: DocumentRow | None, batch_dir: Path) -> str | None:
    if doc is None:
        return None
    path = Path(doc.path)
    try:
        return path.relative_to(batch_dir).as_posix()
    except ValueError:
        return path.name


def _error(raw: Mapping[str, Any] | Any) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        return {"row": None, "column": None, "value": None, "message": redact(str(raw)), "rule": None}
    value = raw.get("value")
    return {
        "row": raw.get("row"),
        "column": raw.get("column"),
        "value": value if value is None or isinstance(value, int | float | bool) else redact(str(value)),
        "message": redact(str(raw.get("message") or "")),
        "rule": raw.get("rule"),
    }


def report_csv(report: Mapping[str, Any]) -> str:
    """``report.csv``: one line per invoice, one per invoice error and one per file error."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for inv in report["invoices"]:
        base = {
            "reference_code": inv["reference_code"],
            "status": inv["status"],
            "number": inv["number"],
            "cufe": inv["cufe"],
            "total": inv["total"],
            "rows": inv["rows"],
        }
        line = {**base, "record": "invoice", "pdf": inv["pdf"], "xml": inv["xml"], "qr": inv["qr"]}
        writer.writerow([csv_safe(line.get(c)) for c in CSV_COLUMNS])
        for err in inv["errors"]:
            row = {**base, "record": "error", **err}
            writer.writerow([csv_safe(row.get(c)) for c in CSV_COLUMNS])
    for err in report["file_errors"]:
        row = {"record": "file_error", **err}
        writer.writerow([csv_safe(row.get(c)) for c in CSV_COLUMNS])
    return out.getvalue()


class Outbox:
    """Writes batch folders under ``root``.

    Args:
        root: the outbox folder.
        clock: epoch seconds (batch folder timestamps).
    """

    def __init__(self, root: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.root = root
        self._clock = clock

    def batch_dir_for(self, source_name: str, taken: Callable[[str], bool]) -> Path:
        """A new batch folder path ``<UTC timestamp>_<stem>`` not used on disk nor by ``taken``."""
        stamp = datetime.fromtimestamp(self._clock(), UTC).strftime("%Y%m%dT%H%M%SZ")
        stem = safe_name(Path(source_name).stem, default="source", max_len=80)
        base = f"{stamp}_{stem}"
        candidate = self.root / base
        n = 2
        while candidate.exists() or taken(str(candidate)):
            candidate = self.root / f"{base}-{n}"
            n += 1
        return candidate

    def document_path(self, batch_dir: Path, number: str, kind: str) -> Path:
        """``<batch>/<number>.<kind>`` with the number sanitised into one safe name."""
        return batch_dir / f"{safe_name(number, default='invoice')}.{kind}"

    def write_document(self, batch_dir: Path, number: str, kind: str, content: bytes) -> WrittenDocument:
        """Write a PDF/XML atomically into the batch folder."""
        path = self.document_path(batch_dir, number, kind)
        self._ensure_inside(path)
        crash.reach_partial("mid_document", path, content)
        atomic_write_bytes(path, content)
        return WrittenDocument(path, hashlib.sha256(content).hexdigest(), len(content))

    def write_report(self, batch_dir: Path, report: Mapping[str, Any]) -> Path:
        """Write ``report.csv`` then ``report.json`` atomically; returns the JSON path."""
        json_path = batch_dir / "report.json"
        self._ensure_inside(json_path)
        data = (json.dumps(report, ensure_ascii=False, indent=2, default=str) + "\n").encode("utf-8")
        atomic_write_bytes(batch_dir / "report.csv", report_csv(report).encode("utf-8-sig"))
        crash.reach_partial("mid_report", json_path, data)
        atomic_write_bytes(json_path, data)
        return json_path

    def _ensure_inside(self, path: Path) -> None:
        root = self.root.resolve()
        if not path.parent.resolve().is_relative_to(root):
            raise ValueError(f"refusing to write {path} outside the outbox {root}")
        path.parent.mkdir(parents=True, exist_ok=True)

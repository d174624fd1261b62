"""The durable ledger: every file, invoice and written document, in one SQLite file.

SQLite in WAL mode with ``synchronous=FULL``: a committed state survives a crash or a power cut.
Each state is committed *before* the side effect it announces, so on restart the ledger says what
may have happened and recovery reconciles it. The file is created with mode 0600.

Tables::

    files      one row per claimed source file (a re-dropped copy gets its own row, ``duplicate_of``)
    invoices   one row per reference code (UNIQUE): the payload last planned and its fate
    entries    the lines of a file's report, in source order (own invoice, duplicate, conflict, invalid)
    documents  PDF/XML files written for a validated invoice

Invoice states: ``planned -> submitting -> validated | rejected | invalid | pending``; ``pending``
goes back to ``submitting`` on retry; ``rejected``/``invalid`` go back to ``planned`` only when a
later file brings a corrected invoice with the same reference code (or on ``retry REF``).

File states: ``claimed -> read -> reported -> archiving -> archived`` or ``claimed -> failing ->
failed``. A file that changed after its claim goes back to the inbox: ``claimed -> returning`` and
the row is dropped (nothing was recorded from it), or ``reported -> returning -> archived`` with
``final_path`` in the inbox (its invoices stay; the next claim reports them as duplicates).

All methods are thread-safe (one connection, one lock); SQLite itself serialises other processes.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from daemon.errors import LedgerError
from daemon.money import dumps_json

__all__ = [
    "ACTIVE_INVOICE_STATES",
    "TERMINAL_INVOICE_STATES",
    "DocumentRow",
    "EntryRow",
    "FileRow",
    "InvoiceRow",
    "NewEntry",
    "NewInvoice",
    "RetryRefusedError",
    "SqliteLedger",
    "dumps_exact",
    "loads_exact",
    "utc_now",
]

SCHEMA_VERSION = 1
TERMINAL_INVOICE_STATES = frozenset({"validated", "rejected", "invalid"})
ACTIVE_INVOICE_STATES = frozenset({"planned", "submitting", "pending"})
FINAL_FILE_STATES = frozenset({"archived", "failed"})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS files (
    id              INTEGER PRIMARY KEY,
    sha256          TEXT NOT NULL,
    name            TEXT NOT NULL,
    original_path   TEXT NOT NULL,
    processing_path TEXT,
    profile         TEXT,
    size_bytes      INTEGER,
    duplicate_of    INTEGER REFERENCES files(id),
    state           TEXT NOT NULL,
    claimed_at      TEXT NOT NULL,
    read_at         TEXT,
    finished_at     TEXT,
    batch_dir       TEXT,
    report_path     TEXT,
    final_path      TEXT,
    reason          TEXT,
    file_errors     TEXT NOT NULL DEFAULT '[]',
    warnings        TEXT NOT NULL DEFAULT '[]',
    report_due      INTEGER NOT NULL DEFAULT 0,
    updated_at      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS files_sha256 ON files(sha256);
CREATE INDEX IF NOT EXISTS files_state ON files(state);
CREATE TABLE IF NOT EXISTS invoices (
    reference_code  TEXT NOT NULL UNIQUE,
    file_id         INTEGER NOT NULL REFERENCES files(id),
    file_sha256     TEXT NOT NULL,
    payload         TEXT NOT NULL,
    payload_hash    TEXT NOT NULL,
    sent_hash       TEXT,
    rows            TEXT NOT NULL DEFAULT '[]',
    state           TEXT NOT NULL,
    number          TEXT,
    cufe            TEXT,
    qr              TEXT,
    total           TEXT,
    bill_id         INTEGER,
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_outcome    TEXT,
    hidden_bill     INTEGER NOT NULL DEFAULT 0,
    errors          TEXT NOT NULL DEFAULT '[]',
    notifications   TEXT NOT NULL DEFAULT '[]',
    message         TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    sent_at         REAL,
    validated_at    TEXT,
    next_attempt_at REAL
);
CREATE INDEX IF NOT EXISTS invoices_state ON invoices(state);
CREATE INDEX IF NOT EXISTS invoices_file ON invoices(file_id);
CREATE TABLE IF NOT EXISTS entries (
    file_id         INTEGER NOT NULL REFERENCES files(id),
    seq             INTEGER NOT NULL,
    reference_code  TEXT,
    kind            TEXT NOT NULL,
    rows            TEXT NOT NULL DEFAULT '[]',
    status          TEXT,
    number          TEXT,
    cufe            TEXT,
    qr              TEXT,
    total           TEXT,
    errors          TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (file_id, seq)
);
CREATE INDEX IF NOT EXISTS entries_reference ON entries(reference_code);
CREATE TABLE IF NOT EXISTS documents (
    reference_code  TEXT NOT NULL,
    kind            TEXT NOT NULL,
    path            TEXT NOT NULL,
    sha256          TEXT NOT NULL,
    size_bytes      INTEGER NOT NULL,
    written_at      TEXT NOT NULL,
    PRIMARY KEY (reference_code, kind)
);
"""


def utc_now() -> str:
    """The current UTC time as an ISO 8601 string with a ``Z`` suffix."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _loads(text: str | None) -> Any:
    return json.loads(text) if text else []


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def dumps_exact(value: Any) -> str:
    """JSON with every Decimal written as an exact JSON number (payloads keep their number types)."""
    return dumps_json(value)


def loads_exact(text: str) -> Any:
    """Parse JSON keeping non-integral numbers as Decimal."""
    return json.loads(text, parse_float=Decimal)


class RetryRefusedError(LedgerError):
    """``retry REF`` cannot put this invoice back in line; ``exit_code`` says why (see the CLI)."""

    def __init__(self, message: str, *, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True, slots=True)
class FileRow:
    """One claimed source file."""

    id: int
    sha256: str
    name: str
    original_path: str
    processing_path: str | None
    profile: str | None
    size_bytes: int | None
    duplicate_of: int | None
    state: str
    claimed_at: str
    read_at: str | None
    finished_at: str | None
    batch_dir: str | None
    report_path: str | None
    final_path: str | None
    reason: str | None
    file_errors: list[dict[str, Any]]
    warnings: list[Any]
    report_due: bool
    updated_at: str


@dataclass(frozen=True, slots=True)
class InvoiceRow:
    """One invoice, keyed by its reference code."""

    reference_code: str
    file_id: int
    file_sha256: str
    payload: dict[str, Any]
    payload_hash: str
    sent_hash: str | None
    rows: list[int]
    state: str
    number: str | None
    cufe: str | None
    qr: str | None
    total: str | None
    bill_id: int | None
    attempts: int
    last_outcome: str | None
    hidden_bill: bool
    errors: list[dict[str, Any]]
    notifications: list[str]
    message: str | None
    created_at: str
    updated_at: str
    sent_at: float | None
    validated_at: str | None
    next_attempt_at: float | None

    @property
    def terminal(self) -> bool:
        """True when validated, rejected or invalid."""
        return self.state in TERMINAL_INVOICE_STATES


@dataclass(frozen=True, slots=True)
class EntryRow:
    """One line of a file's report; ``status`` is set once the line is frozen."""

    file_id: int
    seq: int
    reference_code: str | None
    kind: str  # own | duplicate | conflict | invalid
    rows: list[int]
    status: str | None
    number: str | None
    cufe: str | None
    qr: str | None
    total: str | None
    errors: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class DocumentRow:
    """A PDF or XML written for a validated invoice."""

    reference_code: str
    kind: str
    path: str
    sha256: str
    size_bytes: int
    written_at: str


@dataclass(frozen=True, slots=True)
class NewInvoice:
    """An invoice planned from a source file, ready to be recorded."""

    reference_code: str
    rows: list[int]
    payload: dict[str, Any]
    payload_hash: str


@dataclass(frozen=True, slots=True)
class NewEntry:
    """A report line that is final from the start (an input error with no submission)."""

    reference_code: str | None
    rows: list[int]
    errors: list[dict[str, Any]] = field(default_factory=list)
    status: str = "invalid"


def _file(row: sqlite3.Row) -> FileRow:
    return FileRow(
        id=row["id"],
        sha256=row["sha256"],
        name=row["name"],
        original_path=row["original_path"],
        processing_path=row["processing_path"],
        profile=row["profile"],
        size_bytes=row["size_bytes"],
        duplicate_of=row["duplicate_of"],
        state=row["state"],
        claimed_at=row["claimed_at"],
        read_at=row["read_at"],
        finished_at=row["finished_at"],
        batch_dir=row["batch_dir"],
        report_path=row["report_path"],
        final_path=row["final_path"],
        reason=row["reason"],
        file_errors=_loads(row["file_errors"]),
        warnings=_loads(row["warnings"]),
        report_due=bool(row["report_due"]),
        updated_at=row["updated_at"],
    )


def _invoice(row: sqlite3.Row) -> InvoiceRow:
    return InvoiceRow(
        reference_code=row["reference_code"],
        file_id=row["file_id"],
        file_sha256=row["file_sha256"],
        payload=loads_exact(row["payload"]),
        payload_hash=row["payload_hash"],
        sent_hash=row["sent_hash"],
        rows=_loads(row["rows"]),
        state=row["state"],
        number=row["number"],
        cufe=row["cufe"],
        qr=row["qr"],
        total=row["total"],
        bill_id=row["bill_id"],
        attempts=row["attempts"],
        last_outcome=row["last_outcome"],
        hidden_bill=bool(row["hidden_bill"]),
        errors=_loads(row["errors"]),
        notifications=_loads(row["notifications"]),
        message=row["message"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        sent_at=row["sent_at"],
        validated_at=row["validated_at"],
        next_attempt_at=row["next_attempt_at"],
    )


def _entry(row: sqlite3.Row) -> EntryRow:
    return EntryRow(
        file_id=row["file_id"],
        seq=row["seq"],
        reference_code=row["reference_code"],
        kind=row["kind"],
        rows=_loads(row["rows"]),
        status=row["status"],
        number=row["number"],
        cufe=row["cufe"],
        qr=row["qr"],
        total=row["total"],
        errors=_loads(row["errors"]),
    )


def _document(row: sqlite3.Row) -> DocumentRow:
    return DocumentRow(
        reference_code=row["reference_code"],
        kind=row["kind"],
        path=row["path"],
        sha256=row["sha256"],
        size_bytes=row["size_bytes"],
        written_at=row["written_at"],
    )


_FILE_FIELDS = frozenset(
    {
        "processing_path",
        "profile",
        "state",
        "read_at",
        "finished_at",
        "batch_dir",
        "report_path",
        "final_path",
        "reason",
        "file_errors",
        "warnings",
        "report_due",
    }
)
_INVOICE_FIELDS = frozenset(
    {
        "state",
        "number",
        "cufe",
        "qr",
        "total",
        "bill_id",
        "attempts",
        "last_outcome",
        "hidden_bill",
        "errors",
        "notifications",
        "message",
        "sent_at",
        "sent_hash",
        "validated_at",
        "next_attempt_at",
    }
)
_JSON_FIELDS = frozenset({"file_errors", "warnings", "errors", "notifications", "rows"})


def _create_private(path: Path) -> None:
    if not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists():
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
        os.close(fd)


class SqliteLedger:
    """The SQLite ledger (see the module docstring for tables and states).

    Args:
        path: the database file; created (mode 0600, parent 0700) when missing.
        readonly: open for reading only (``status`` while a daemon runs).
    """

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = path
        self._lock = threading.RLock()
        try:
            if readonly:
                uri = f"file:{path}?mode=ro"
                self._db = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)
            else:
                _create_private(path)
                self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA busy_timeout = 15000")
            if not readonly:
                mode = self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise LedgerError(f"ledger {path}: SQLite refused WAL mode (got {mode})")
                self._db.execute("PRAGMA synchronous = FULL")
                self._db.execute("PRAGMA foreign_keys = ON")
                self._db.executescript(_SCHEMA)
                self._db.execute(
                    "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)",
                    (str(SCHEMA_VERSION),),
                )
                version = self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
                if int(version[0]) != SCHEMA_VERSION:
                    raise LedgerError(
                        f"ledger {path} has schema version {version[0]}, this daemon needs {SCHEMA_VERSION}"
                    )
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot open the ledger {path}: {exc}") from None

    def close(self) -> None:
        """Close the connection (a checkpoint folds the WAL back into the database)."""
        with self._lock:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.close()

    def checkpoint(self) -> None:
        """Fold the WAL into the main database file (on shutdown, and now and then)."""
        with self._lock:
            self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``), serialised with other threads."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise LedgerError(f"ledger {self.path}: cannot begin a transaction: {exc}") from None
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            try:
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise LedgerError(f"ledger {self.path}: commit failed: {exc}") from None

    def _query(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise LedgerError(f"ledger {self.path}: {exc}") from None

    # -- files ---------------------------------------------------------------------------------

    def file(self, file_id: int) -> FileRow:
        """The file row with this id.

        Raises:
            LedgerError: no such row.
        """
        rows = self._query("SELECT * FROM files WHERE id = ?", (file_id,))
        if not rows:
            raise LedgerError(f"ledger {self.path}: no file with id {file_id}")
        return _file(rows[0])

    def file_by_processing_path(self, processing_path: str) -> FileRow | None:
        """The unfinished file claimed at ``processing_path``, if any."""
        rows = self._query(
            "SELECT * FROM files WHERE processing_path = ? AND state NOT IN ('archived', 'failed') "
            "ORDER BY id DESC LIMIT 1",
            (processing_path,),
        )
        return _file(rows[0]) if rows else None

    def files(self, *states: str) -> list[FileRow]:
        """Files in any of ``states`` (all files when none given), oldest first."""
        if states:
            marks = ",".join("?" * len(states))
            rows = self._query(f"SELECT * FROM files WHERE state IN ({marks}) ORDER BY id", states)  # noqa: S608
        else:
            rows = self._query("SELECT * FROM files ORDER BY id")
        return [_file(r) for r in rows]

    def unfinished_files(self) -> list[FileRow]:
        """Files not yet archived or failed, oldest first."""
        return [_file(r) for r in self._query("SELECT * FROM files WHERE state NOT IN ('archived','failed')")]

    def register_file(
        self,
        *,
        sha256: str,
        name: str,
        original_path: str,
        processing_path: str,
        profile: str | None,
        size_bytes: int | None,
    ) -> FileRow:
        """Record a claimed file; a copy of content already seen is registered as a duplicate.

        Content seen before only counts when that earlier file was not a failure (a failed file may
        be dropped again after its problem was fixed) and came from the same inbox folder (the
        folder chooses the mapping profile, so the same bytes elsewhere are another reading).
        """
        now = utc_now()
        folder = os.path.dirname(original_path)
        with self.transaction() as db:
            earlier = next(
                (
                    row
                    for row in db.execute(
                        "SELECT id, original_path FROM files WHERE sha256 = ? AND duplicate_of IS NULL "
                        "AND state != 'failed' AND NOT (state = 'returning' AND read_at IS NULL) ORDER BY id",
                        (sha256,),
                    )
                    # the same bytes in inbox/<profile>/ and in the inbox are read differently
                    if os.path.dirname(row["original_path"]) == folder
                ),
                None,
            )
            cur = db.execute(
                "INSERT INTO files(sha256, name, original_path, processing_path, profile, size_bytes, "
                "duplicate_of, state, claimed_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    sha256,
                    name,
                    original_path,
                    processing_path,
                    profile,
                    size_bytes,
                    earlier["id"] if earlier else None,
                    "claimed",
                    now,
                    now,
                ),
            )
            file_id = cur.lastrowid
        assert file_id is not None
        return self.file(file_id)

    def update_file(self, file_id: int, **fields: Any) -> None:
        """Set columns of a file row in one transaction."""
        unknown = set(fields) - _FILE_FIELDS
        if unknown:
            raise ValueError(f"not file columns: {sorted(unknown)}")
        values = {k: (_dumps(v) if k in _JSON_FIELDS else v) for k, v in fields.items()}
        values["updated_at"] = utc_now()
        sets = ", ".join(f"{k} = ?" for k in values)
        with self.transaction() as db:
            db.execute(f"UPDATE files SET {sets} WHERE id = ?", (*values.values(), file_id))  # noqa: S608

    def drop_unread_file(self, file_id: int) -> list[int]:
        """Delete the row of a file put back into the inbox before anything was recorded from it.

        Returns:
            Ids of files that waited for it as copies of its content (now read on their own).
        """
        with self.transaction() as db:
            for table in ("entries", "invoices"):
                if db.execute(f"SELECT 1 FROM {table} WHERE file_id = ? LIMIT 1", (file_id,)).fetchone():  # noqa: S608
                    raise LedgerError(f"ledger {self.path}: file {file_id} has {table}; it cannot be dropped")
            waiting = [r["id"] for r in db.execute("SELECT id FROM files WHERE duplicate_of = ?", (file_id,))]
            db.execute("UPDATE files SET duplicate_of = NULL WHERE duplicate_of = ?", (file_id,))
            db.execute("DELETE FROM files WHERE id = ?", (file_id,))
        return waiting

    def detach_duplicate(self, file_id: int) -> None:
        """Read this file on its own after all: the file with its content could not be read (the
        reason may lie in its name: a CSV saved as ``.json`` and dropped again as ``.csv``)."""
        with self.transaction() as db:
            db.execute("UPDATE files SET duplicate_of = NULL WHERE id = ?", (file_id,))

    def batch_dir_taken(self, batch_dir: str) -> bool:
        """True when another file already uses this batch folder."""
        return bool(self._query("SELECT 1 FROM files WHERE batch_dir = ?", (batch_dir,)))

    # -- intake ---------------------------------------------------------------------------------

    def record_intake(
        self,
        file_id: int,
        invoices: Sequence[NewInvoice],
        invalid: Sequence[NewEntry] = (),
        *,
        file_errors: Sequence[Mapping[str, Any]] = (),
        warnings: Sequence[Any] = (),
        source_name: str = "",
    ) -> list[str]:
        """Record what a file holds, applying the reference-code rules, in one transaction.

        * a new reference code becomes a ``planned`` invoice owned by this file;
        * one already validated, or in flight, with the same payload becomes a ``duplicate`` line;
        * one already validated or in flight with a *different* payload becomes an ``invalid`` line
          whose error names both files;
        * one earlier ``rejected`` or ``invalid`` is taken over: the corrected payload is planned.

        Returns:
            The reference codes this file must submit.
        """
        now = utc_now()
        to_submit: list[str] = []
        with self.transaction() as db:
            frow = db.execute("SELECT * FROM files WHERE id = ?", (file_id,)).fetchone()
            if frow is None:
                raise LedgerError(f"ledger {self.path}: no file with id {file_id}")
            seq = 0
            seen: dict[str, tuple[str, list[int]]] = {}
            for inv in invoices:
                seq += 1
                ref = inv.reference_code
                if ref in seen:
                    first_hash, first_rows = seen[ref]
                    if first_hash == inv.payload_hash:
                        self._insert_entry(db, file_id, seq, ref, "duplicate", inv.rows)
                    else:
                        msg = (
                            f"reference_code {ref} appears twice in {source_name or frow['name']} with "
                            f"different content (rows {first_rows} and {inv.rows}); use one code per invoice"
                        )
                        self._insert_entry(
                            db, file_id, seq, ref, "conflict", inv.rows, status="invalid",
                            errors=[_error(inv.rows, "reference_code", ref, msg, "reference_conflict")],
                        )  # fmt: skip
                    continue
                seen[ref] = (inv.payload_hash, inv.rows)
                existing = db.execute("SELECT * FROM invoices WHERE reference_code = ?", (ref,)).fetchone()
                if existing is None:
                    db.execute(
                        "INSERT INTO invoices(reference_code, file_id, file_sha256, payload, payload_hash, "
                        "rows, state, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?)",
                        (
                            ref,
                            file_id,
                            frow["sha256"],
                            dumps_exact(inv.payload),
                            inv.payload_hash,
                            _dumps(inv.rows),
                            "planned",
                            now,
                            now,
                        ),
                    )
                    self._insert_entry(db, file_id, seq, ref, "own", inv.rows)
                    to_submit.append(ref)
                    continue
                state = existing["state"]
                owner = db.execute("SELECT name FROM files WHERE id = ?", (existing["file_id"],)).fetchone()
                owner_name = owner["name"] if owner else "an earlier file"
                if state in ("rejected", "invalid"):
                    self._freeze_entries(db, ref)
                    db.execute(
                        "UPDATE invoices SET file_id=?, file_sha256=?, payload=?, payload_hash=?, rows=?, "
                        "state='planned', number=NULL, cufe=NULL, qr=NULL, total=NULL, bill_id=NULL, "
                        "attempts=0, errors='[]', notifications='[]', message=NULL, validated_at=NULL, "
                        "next_attempt_at=NULL, updated_at=? WHERE reference_code=?",
                        (
                            file_id,
                            frow["sha256"],
                            dumps_exact(inv.payload),
                            inv.payload_hash,
                            _dumps(inv.rows),
                            now,
                            ref,
                        ),
                    )
                    self._insert_entry(db, file_id, seq, ref, "own", inv.rows)
                    to_submit.append(ref)
                elif existing["payload_hash"] == inv.payload_hash:
                    self._insert_entry(db, file_id, seq, ref, "duplicate", inv.rows)
                else:
                    what = (
                        f"already issued as {existing['number']}"
                        if state == "validated"
                        else "still being submitted"
                    )
                    msg = (
                        f"reference_code {ref} in {source_name or frow['name']} differs from the invoice "
                        f"with the same code in {owner_name}, {what}; an issued invoice cannot be changed "
                        "(use a credit note, or a new reference_code)"
                    )
                    self._insert_entry(
                        db, file_id, seq, ref, "conflict", inv.rows, status="invalid",
                        errors=[_error(inv.rows, "reference_code", ref, msg, "reference_conflict")],
                    )  # fmt: skip
            for bad in invalid:
                seq += 1
                self._insert_entry(
                    db, file_id, seq, bad.reference_code, "invalid", bad.rows, status=bad.status,
                    errors=list(bad.errors),
                )  # fmt: skip
            db.execute(
                "UPDATE files SET state='read', read_at=?, file_errors=?, warnings=?, updated_at=? "
                "WHERE id=?",
                (now, _dumps(list(file_errors)), _dumps(list(warnings)), now, file_id),
            )
        return to_submit

    def record_duplicate_file(self, file_id: int, original_id: int) -> None:
        """Give a re-dropped file one ``duplicate`` line per reference code of the original file."""
        now = utc_now()
        with self.transaction() as db:
            rows = db.execute(
                "SELECT reference_code, rows, kind, status, errors FROM entries WHERE file_id = ? "
                "AND reference_code IS NOT NULL ORDER BY seq",
                (original_id,),
            ).fetchall()
            original = db.execute("SELECT name, claimed_at FROM files WHERE id=?", (original_id,)).fetchone()
            for seq, row in enumerate(rows, start=1):
                if row["kind"] in ("invalid", "conflict"):
                    # never an invoice (refused when read): the same errors again, not "duplicate"
                    self._insert_entry(
                        db, file_id, seq, row["reference_code"], row["kind"], _loads(row["rows"]),
                        status=row["status"], errors=_loads(row["errors"]),
                    )  # fmt: skip
                    continue
                self._insert_entry(db, file_id, seq, row["reference_code"], "duplicate", _loads(row["rows"]))
            note = _error(
                [],
                None,
                None,
                f"same content as {original['name']} received {original['claimed_at']}; "
                "nothing was submitted again",
                "duplicate_file",
            )
            db.execute(
                "UPDATE files SET state='read', read_at=?, file_errors=?, updated_at=? WHERE id=?",
                (now, _dumps([note]), now, file_id),
            )

    @staticmethod
    def _insert_entry(
        db: sqlite3.Connection,
        file_id: int,
        seq: int,
        ref: str | None,
        kind: str,
        rows: list[int],
        *,
        status: str | None = None,
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        db.execute(
            "INSERT INTO entries(file_id, seq, reference_code, kind, rows, status, errors) "
            "VALUES (?,?,?,?,?,?,?)",
            (file_id, seq, ref, kind, _dumps(rows), status, _dumps(errors or [])),
        )

    @staticmethod
    def _freeze_entries(db: sqlite3.Connection, ref: str) -> None:
        """Copy the invoice's current outcome into every live report line before it is replaced."""
        inv = db.execute("SELECT * FROM invoices WHERE reference_code = ?", (ref,)).fetchone()
        if inv is None:
            return
        for entry in db.execute(
            "SELECT file_id, seq, kind FROM entries WHERE reference_code = ? AND status IS NULL", (ref,)
        ).fetchall():
            status = "duplicate" if entry["kind"] == "duplicate" else inv["state"]
            db.execute(
                "UPDATE entries SET status=?, number=?, cufe=?, qr=?, total=?, errors=? "
                "WHERE file_id=? AND seq=?",
                (
                    status,
                    inv["number"],
                    inv["cufe"],
                    inv["qr"],
                    inv["total"],
                    inv["errors"],
                    entry["file_id"],
                    entry["seq"],
                ),
            )

    def entries(self, file_id: int) -> list[EntryRow]:
        """The report lines of a file, in source order."""
        return [
            _entry(r) for r in self._query("SELECT * FROM entries WHERE file_id = ? ORDER BY seq", (file_id,))
        ]

    def files_referencing(self, reference_code: str) -> list[int]:
        """Ids of unfinished files with a live report line for this reference code."""
        rows = self._query(
            "SELECT DISTINCT e.file_id FROM entries e JOIN files f ON f.id = e.file_id "
            "WHERE e.reference_code = ? AND e.status IS NULL AND f.state NOT IN ('archived','failed')",
            (reference_code,),
        )
        return [r["file_id"] for r in rows]

    # -- invoices -----------------------------------------------------------------------------

    def invoice(self, reference_code: str) -> InvoiceRow | None:
        """The invoice with this reference code, if any."""
        rows = self._query("SELECT * FROM invoices WHERE reference_code = ?", (reference_code,))
        return _invoice(rows[0]) if rows else None

    def invoices(self, *states: str, file_id: int | None = None) -> list[InvoiceRow]:
        """Invoices in any of ``states`` (all when none), optionally owned by one file."""
        clauses: list[str] = []
        params: list[Any] = []
        if states:
            clauses.append(f"state IN ({','.join('?' * len(states))})")
            params.extend(states)
        if file_id is not None:
            clauses.append("file_id = ?")
            params.append(file_id)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = f"SELECT * FROM invoices {where} ORDER BY created_at, reference_code"  # noqa: S608
        return [_invoice(r) for r in self._query(sql, params)]

    def invoices_of_file(self, file_id: int) -> dict[str, InvoiceRow]:
        """Every invoice a file's report lines refer to (its own and the ones it duplicates), by reference."""
        rows = self._query(
            "SELECT i.* FROM invoices i WHERE i.reference_code IN "
            "(SELECT reference_code FROM entries WHERE file_id = ? AND reference_code IS NOT NULL)",
            (file_id,),
        )
        return {r["reference_code"]: _invoice(r) for r in rows}

    def documents_of_file(self, file_id: int) -> dict[str, dict[str, DocumentRow]]:
        """The documents of every invoice a file refers to: reference -> kind -> row."""
        rows = self._query(
            "SELECT d.* FROM documents d WHERE d.reference_code IN "
            "(SELECT reference_code FROM entries WHERE file_id = ? AND reference_code IS NOT NULL)",
            (file_id,),
        )
        out: dict[str, dict[str, DocumentRow]] = {}
        for r in rows:
            out.setdefault(r["reference_code"], {})[r["kind"]] = _document(r)
        return out

    def validated_needing_documents(self) -> list[InvoiceRow]:
        """Validated invoices of unfinished (or report-due) files with fewer than two documents."""
        rows = self._query(
            "SELECT i.* FROM invoices i JOIN files f ON f.id = i.file_id "
            "WHERE i.state = 'validated' AND (f.state NOT IN ('archived','failed') OR f.report_due = 1) "
            "AND (SELECT COUNT(*) FROM documents d WHERE d.reference_code = i.reference_code) < 2"
        )
        return [_invoice(r) for r in rows]

    def report_due_files(self) -> list[FileRow]:
        """Archived files whose report must be rewritten (after ``retry REF``)."""
        rows = self._query("SELECT * FROM files WHERE report_due = 1 AND state = 'archived'")
        return [_file(r) for r in rows]

    def hidden_bills(self) -> list[InvoiceRow]:
        """Rejected invoices whose hidden pending bill at Factus may still need deleting."""
        return [_invoice(r) for r in self._query("SELECT * FROM invoices WHERE hidden_bill = 1")]

    def update_invoice(self, reference_code: str, *, bump_attempts: bool = False, **fields: Any) -> None:
        """Set columns of an invoice in one transaction (``bump_attempts`` adds one attempt)."""
        unknown = set(fields) - _INVOICE_FIELDS
        if unknown:
            raise ValueError(f"not invoice columns: {sorted(unknown)}")
        values = {k: (_dumps(v) if k in _JSON_FIELDS else v) for k, v in fields.items()}
        values["updated_at"] = utc_now()
        sets = ", ".join(f"{k} = ?" for k in values)
        if bump_attempts:
            sets += ", attempts = attempts + 1"
        with self.transaction() as db:
            cur = db.execute(
                f"UPDATE invoices SET {sets} WHERE reference_code = ?",  # noqa: S608
                (*values.values(), reference_code),
            )
            if cur.rowcount != 1:
                raise LedgerError(f"ledger {self.path}: no invoice {reference_code!r}")

    def reset_for_retry(self, reference_code: str) -> InvoiceRow:
        """``retry REF``: put a pending, rejected or invalid invoice back to ``planned``, due now.

        Raises:
            RetryRefusedError: unknown reference code (exit 6), invalid in its file (1: the file
                must be corrected), or already validated (7).
        """
        with self.transaction() as db:
            row = db.execute("SELECT * FROM invoices WHERE reference_code = ?", (reference_code,)).fetchone()
            if row is None:
                entry = db.execute(
                    "SELECT f.name, e.rows FROM entries e JOIN files f ON f.id = e.file_id "
                    "WHERE e.reference_code = ? AND e.status = 'invalid' ORDER BY e.file_id DESC LIMIT 1",
                    (reference_code,),
                ).fetchone()
                if entry is not None:
                    raise RetryRefusedError(
                        f"invoice {reference_code} was invalid in {entry['name']} (rows "
                        f"{', '.join(map(str, _loads(entry['rows']))) or '?'}), so nothing was sent: correct "
                        "those rows and drop the file again",
                        exit_code=1,
                    )
                raise RetryRefusedError(
                    f"no invoice with reference_code {reference_code!r} in the ledger", exit_code=6
                )
            if row["state"] == "validated":
                raise RetryRefusedError(
                    f"invoice {reference_code} is already validated as {row['number']}; "
                    "it is never sent again",
                    exit_code=7,
                )
            if row["state"] in ("rejected", "invalid"):
                # sent_hash cleared: a rejected bill still at Factus is then stale, deleted, and resent.
                db.execute(
                    "UPDATE invoices SET state='planned', errors='[]', message=NULL, next_attempt_at=NULL, "
                    "sent_hash=NULL, updated_at=? WHERE reference_code=?",
                    (utc_now(), reference_code),
                )
                db.execute(
                    "UPDATE files SET report_due = 1, updated_at=? WHERE id = ?", (utc_now(), row["file_id"])
                )
            else:
                db.execute(
                    "UPDATE invoices SET next_attempt_at=NULL, updated_at=? WHERE reference_code=?",
                    (utc_now(), reference_code),
                )
        inv = self.invoice(reference_code)
        assert inv is not None
        return inv

    def due_now(self) -> None:
        """Make every pending invoice due immediately (``retry --pending``)."""
        with self.transaction() as db:
            db.execute("UPDATE invoices SET next_attempt_at = NULL WHERE state = 'pending'")

    # -- documents ----------------------------------------------------------------------------

    def record_document(
        self, reference_code: str, kind: str, path: str, sha256: str, size_bytes: int
    ) -> None:
        """Remember that a PDF/XML of this invoice is on disk."""
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO documents"
                "(reference_code, kind, path, sha256, size_bytes, written_at) VALUES (?,?,?,?,?,?)",
                (reference_code, kind, path, sha256, size_bytes, utc_now()),
            )

    def documents(self, reference_code: str) -> dict[str, DocumentRow]:
        """The documents written for an invoice, by kind (``pdf``, ``xml``)."""
        rows = self._query("SELECT * FROM documents WHERE reference_code = ?", (reference_code,))
        return {r["kind"]: _document(r) for r in rows}

    # -- status -------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counts by state, the oldest pending invoice and the last activity (``status``)."""
        files = {r[0]: r[1] for r in self._query("SELECT state, COUNT(*) FROM files GROUP BY state")}
        dups = self._query("SELECT COUNT(*) FROM files WHERE duplicate_of IS NOT NULL")[0][0]
        invoices = {r[0]: r[1] for r in self._query("SELECT state, COUNT(*) FROM invoices GROUP BY state")}
        oldest = self._query(
            "SELECT reference_code, created_at, attempts, last_outcome FROM invoices "
            "WHERE state IN ('planned','submitting','pending') ORDER BY created_at LIMIT 1"
        )
        last = self._query(
            "SELECT MAX(t) FROM (SELECT MAX(updated_at) AS t FROM files "
            "UNION ALL SELECT MAX(updated_at) FROM invoices)"
        )[0][0]
        return {
            "ledger": str(self.path),
            "files": files,
            "duplicate_files": dups,
            "invoices": invoices,
            "oldest_pending": dict(oldest[0]) if oldest else None,
            "last_activity": last,
            "checked_at": time.time(),
        }


def _error(rows: list[int], column: str | None, value: Any, message: str, rule: str | None) -> dict[str, Any]:
    return {
        "row": rows[0] if rows else None,
        "column": column,
        "value": value,
        "message": message,
        "rule": rule,
    }

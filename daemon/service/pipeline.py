"""The order of steps for one source file; the only module that knows it.

::

    claim (rename into .processing/ + ledger row)         crash: after_claim
    read (intake) -> failed/ + reason.json when unreadable
    record invoices (reference-code rules)                 one transaction
    submit every invoice (:mod:`daemon.service.submit`)    crash: before_submit, after_send, after_validated
    PDF + XML into the batch folder                        crash: mid_document
    report.json + report.csv                               crash: mid_report, before_archive
    archive the source                                     crash: after_archive

A file that changed after its claim (a writer that paused longer than ``stable_s``) is put back into
the inbox instead (state ``returning``, committed before the move): before anything is recorded from
it (its row is dropped and the next claim reads it as new content), or, found changed before the
archive, with a ``file_errors`` note in its report (the next claim reports the invoices already
recorded as duplicates and submits only the new ones).

Every step is idempotent and driven by the ledger state, so :meth:`Pipeline.advance` resumes a file
wherever a crash left it. Files are advanced one step function at a time under a per-file lock;
threads and timing belong to :mod:`daemon.service.runner`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from daemon.errors import DaemonError, LedgerError
from daemon.log import redact
from daemon.service import crash
from daemon.service.files import Claimed, FileStore, sha256_of
from daemon.service.ledger import (
    DocumentRow,
    EntryRow,
    FileRow,
    InvoiceRow,
    NewEntry,
    NewInvoice,
    SqliteLedger,
    utc_now,
)
from daemon.service.outbox import Outbox, build_report, entry_is_final
from daemon.service.submit import Submitter

__all__ = ["IntakeOutcome", "Pipeline", "Reader", "payload_hash"]

_log = structlog.get_logger("daemon.service.pipeline")


def _stamp(path: Path) -> tuple[int, int]:
    """A file's size and mtime (nanoseconds): a writer still at work changes them."""
    st = path.stat()
    return st.st_size, st.st_mtime_ns


def payload_hash(payload: Mapping[str, Any]) -> str:
    """SHA-256 of a payload's canonical JSON (sorted keys, exact decimals)."""
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class IntakeOutcome:
    """What the intake made of one file, in ledger terms."""

    invoices: list[NewInvoice]
    invalid: list[NewEntry] = field(default_factory=list)
    file_errors: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[Any] = field(default_factory=list)
    profile: str | None = None
    """The mapping profile the intake used (a folder profile, or one chosen by its ``match`` glob)."""


@dataclass(frozen=True, slots=True)
class _FileView:
    """One file with every ledger row its report needs."""

    file: FileRow
    entries: list[EntryRow]
    invoices: dict[str, InvoiceRow]
    documents: dict[str, dict[str, DocumentRow]]

    def has_documents(self, reference_code: str) -> bool:
        docs = self.documents.get(reference_code, {})
        return all(k in docs and Path(docs[k].path).is_file() for k in ("pdf", "xml"))

    def complete(self) -> bool:
        """Every line final, and every validated invoice of this file has its PDF and XML."""
        for entry in self.entries:
            inv = self.invoices.get(entry.reference_code or "")
            if not entry_is_final(entry, inv):
                return False
            if (
                entry.kind == "own"
                and entry.status is None
                and inv is not None
                and inv.state == "validated"
                and inv.file_id == self.file.id
                and not self.has_documents(inv.reference_code)
            ):
                return False
        return True


Reader = Callable[[Path, str | None], IntakeOutcome]
"""``reader(path, profile)``: read a claimed file; raises :class:`~daemon.errors.InputError` if unreadable."""


class Pipeline:
    """Drives files through their steps.

    Args:
        ledger: the durable ledger.
        store: inbox/.processing/archive/failed folders.
        outbox: batch folders and reports.
        submitter: invoice workers.
        reader: the intake adapter.
        max_file_bytes: larger files are moved to ``failed/`` without being read.
        clock: epoch seconds.
    """

    def __init__(
        self,
        ledger: SqliteLedger,
        store: FileStore,
        outbox: Outbox,
        submitter: Submitter,
        reader: Reader,
        *,
        max_file_bytes: int = 256 * 1024 * 1024,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ledger = ledger
        self.store = store
        self.outbox = outbox
        self.submitter = submitter
        self.reader = reader
        self.max_file_bytes = max_file_bytes
        self._clock = clock
        self._locks: dict[int, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._targets_lock = threading.Lock()  # picking and taking archive/failed names
        self._scheduled: set[str] = set()
        self._interim: dict[int, str] = {}
        self._kick_later: list[int] = []
        self.returned = 0
        """Files this process put back into the inbox because they changed after their claim."""
        self.on_returned: Callable[[Path], None] | None = None
        """Called with the inbox path of a file put back (the runner points its watcher at it)."""
        self.touched: set[int] = set()
        """Files claimed, resumed or finished by this process (``run --once`` exit code)."""
        self.track_touched = True
        """False in watch mode, where nothing reads :attr:`touched` and it would only grow."""

    def _touch(self, file_id: int) -> None:
        if self.track_touched:
            self.touched.add(file_id)

    def _forget(self, file: FileRow) -> None:
        """Drop the in-memory bookkeeping of a finished file (a daemon runs for months)."""
        if file.state not in ("archived", "failed") or file.report_due:
            return
        with self._locks_guard:
            self._locks.pop(file.id, None)
        self._interim.pop(file.id, None)
        for entry in self.ledger.entries(file.id):
            if entry.reference_code:
                self._scheduled.discard(entry.reference_code)

    def _lock(self, file_id: int) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(file_id, threading.Lock())

    # -- claim ---------------------------------------------------------------------------------

    def claim(self, path: Path) -> int | None:
        """Claim an inbox file (rename + ledger row); None when it vanished first."""
        claimed = self.store.claim(path)
        if claimed is None:
            return None
        return self.register(claimed)

    def register(self, claimed: Claimed) -> int:
        """Record a file sitting in ``.processing/`` (new claim, or found there on start)."""
        existing = self.ledger.file_by_processing_path(str(claimed.path))
        if existing is not None:
            self._touch(existing.id)
            return existing.id
        size = None
        try:
            size = claimed.path.lstat().st_size
            digest = sha256_of(claimed.path)
        except OSError as exc:
            digest = hashlib.sha256(f"unreadable:{claimed.path}:{time.time_ns()}".encode()).hexdigest()
            _log.warning("file_hash_failed", file=claimed.name, error=redact(str(exc)))
        row = self.ledger.register_file(
            sha256=digest,
            name=claimed.name,
            original_path=str(claimed.original),
            processing_path=str(claimed.path),
            profile=claimed.profile,
            size_bytes=size,
        )
        self._touch(row.id)
        _log.info(
            "file_claimed",
            file=claimed.name,
            profile=claimed.profile,
            sha256=digest,
            size_bytes=size,
            duplicate_of=row.duplicate_of,
            file_id=row.id,
        )
        crash.reach("after_claim")
        return row.id

    # -- the state machine -----------------------------------------------------------------------

    def advance(self, file_id: int) -> None:
        """Move a file forward as far as possible right now (safe to call any time, any number)."""
        with self._lock(file_id):
            file = self.ledger.file(file_id)
            if file.state == "claimed":
                file = self._read(file)
            if file.state == "read":
                file = self._progress(file)
            if file.state == "reported":
                file = self._archive(file)
            if file.state == "archiving":
                file = self._finish_archive(file)
            if file.state == "failing":
                file = self._finish_failing(file)
            if file.state == "returning":
                returned = self._finish_returning(file)
                if returned is None:
                    return
                file = returned
            if file.state == "archived" and file.report_due:
                self._rewrite_report(file)
                file = self.ledger.file(file_id)
            self._forget(file)

    def fail_unreadable(self, file_id: int, error: BaseException) -> bool:
        """Move aside a file that keeps crashing its first step; True when it was moved.

        Only a file not yet read can be moved: once its invoices are recorded they must finish.
        """
        with self._lock(file_id):
            file = self.ledger.file(file_id)
            if file.state != "claimed":
                return False
            file = self._fail(file, f"the file could not be processed ({type(error).__name__}: {error})")
            self._finish_failing(file)
            return True

    def _read(self, file: FileRow) -> FileRow:
        if not file.batch_dir:
            with self._targets_lock:  # two files read at once must not pick the same folder
                batch = self.outbox.batch_dir_for(file.name, self.ledger.batch_dir_taken)
                self.ledger.update_file(file.id, batch_dir=str(batch))
        if file.duplicate_of is not None:
            try:
                original = self.ledger.file(file.duplicate_of)
            except LedgerError:  # put back into the inbox unread: this copy is read on its own
                return self.ledger.file(file.id)
            if original.state in ("failing", "failed"):
                self.ledger.detach_duplicate(file.id)
                return self._read(self.ledger.file(file.id))
            if original.state == "claimed" or (original.state == "returning" and original.read_at is None):
                return self.ledger.file(file.id)  # read once the original is read
            self.ledger.record_duplicate_file(file.id, original.id)
            _log.info("file_duplicate", file=file.name, original=original.name, sha256=file.sha256)
            return self.ledger.file(file.id)
        path = Path(file.processing_path or "")
        if not file.processing_path or not os.path.lexists(path):
            return self._fail(
                file, "the claimed file disappeared from the .processing folder before it was read"
            )
        if path.is_symlink():
            return self._fail(file, "symbolic links are not followed; copy the file itself into the inbox")
        if not path.is_file():
            return self._fail(file, "not a regular file")
        size = path.stat().st_size
        if size > self.max_file_bytes:
            return self._fail(
                file,
                f"file is {size} bytes, above the limit of {self.max_file_bytes} bytes "
                "(watch.max_file_bytes)",
            )
        before = _stamp(path)
        try:
            outcome = self.reader(path, file.profile)
        except DaemonError as exc:
            return self._fail(file, str(exc).replace(str(path), file.name), error=type(exc).__name__)
        except Exception as exc:  # hostile input must never stop the daemon
            _log.exception("intake_crashed", file=file.name)
            return self._fail(
                file, f"the file could not be read ({type(exc).__name__}: {exc})", error="InternalError"
            )
        if self._changed(path, file.sha256, before):
            _log.warning("file_changed_while_reading", file=file.name, sha256=file.sha256)
            return self._put_back(file)
        if outcome.profile and outcome.profile != file.profile:
            self.ledger.update_file(file.id, profile=outcome.profile)
        to_submit = self.ledger.record_intake(
            file.id,
            outcome.invoices,
            outcome.invalid,
            file_errors=outcome.file_errors,
            warnings=outcome.warnings,
            source_name=file.name,
        )
        _log.info(
            "file_read",
            file=file.name,
            invoices=len(outcome.invoices),
            to_submit=len(to_submit),
            invalid=len(outcome.invalid),
            file_errors=len(outcome.file_errors),
        )
        # Duplicates of this file that waited for it can go on now.
        for dup in self.ledger.files("claimed"):
            if dup.duplicate_of == file.id:
                self._kick_later.append(dup.id)
        return self.ledger.file(file.id)

    def kicks(self) -> list[int]:
        """File ids that became ready because another file moved on (the runner advances them)."""
        out, self._kick_later = self._kick_later, []
        return out

    def _view(self, file: FileRow) -> _FileView:
        """A file's report lines with their invoices and documents, in three queries."""
        return _FileView(
            file,
            self.ledger.entries(file.id),
            self.ledger.invoices_of_file(file.id),
            self.ledger.documents_of_file(file.id),
        )

    def _progress(self, file: FileRow) -> FileRow:
        view = self._view(file)
        for entry in view.entries:
            inv = view.invoices.get(entry.reference_code or "")
            if entry.kind != "own" or inv is None or inv.file_id != file.id:
                continue
            if inv.state in ("planned", "submitting") and inv.reference_code not in self._scheduled:
                self._scheduled.add(inv.reference_code)
                if self.submitter.auth_ok.is_set():
                    self.submitter.schedule(inv.reference_code)
            elif (
                inv.state == "validated"
                and inv.reference_code not in self._scheduled
                and not view.has_documents(inv.reference_code)
            ):
                self._scheduled.add(inv.reference_code)
                self.submitter.schedule(inv.reference_code)
        if not view.complete():
            if not any(self.submitter.is_active(r) for r in view.invoices):
                self._write_report(file, final=False)
            return file
        self._write_report(file, final=True)
        return self.ledger.file(file.id)

    def report(self, file: FileRow, *, final: bool) -> dict[str, Any]:
        """The report of a file as it stands (``finished_at`` set only when ``final``)."""
        view = self._view(file)
        return build_report(
            file,
            view.entries,
            view.invoices,
            view.documents,
            batch_dir=Path(file.batch_dir or "."),
            finished_at=utc_now() if final else None,
        )

    def _write_report(self, file: FileRow, *, final: bool) -> None:
        report = self.report(file, final=final)
        batch = Path(file.batch_dir or "")
        if not final:
            key = json.dumps(report, sort_keys=True, default=str)
            if self._interim.get(file.id) == key:
                return
            self.outbox.write_report(batch, report)
            self._interim[file.id] = key
            _log.info("file_waiting", file=file.name, summary=report["summary"])
            return
        path = self.outbox.write_report(batch, report)
        self._interim.pop(file.id, None)
        self.ledger.update_file(file.id, state="reported", report_path=str(path), report_due=0)
        _log.info(
            "file_reported",
            file=file.name,
            batch=str(batch),
            summary=report["summary"],
            file_errors=len(report["file_errors"]),
        )
        crash.reach("before_archive")

    def _rewrite_report(self, file: FileRow) -> None:
        view = self._view(file)
        for inv in view.invoices.values():
            if (
                inv.file_id == file.id
                and inv.state in ("planned", "submitting")
                and inv.reference_code not in self._scheduled
                and self.submitter.auth_ok.is_set()
            ):
                self._scheduled.add(inv.reference_code)
                self.submitter.schedule(inv.reference_code)
        if not view.complete():
            return
        report = self.report(file, final=True)
        path = self.outbox.write_report(Path(file.batch_dir or ""), report)
        self.ledger.update_file(file.id, report_path=str(path), report_due=0)
        _log.info("file_report_rewritten", file=file.name, summary=report["summary"])

    def _archive(self, file: FileRow) -> FileRow:
        src = Path(file.processing_path or "")
        if not file.processing_path or not os.path.lexists(src):
            _log.error("file_source_missing", file=file.name, processing_path=file.processing_path)
            self.ledger.update_file(file.id, state="archived", finished_at=utc_now(), reason="source missing")
            return self.ledger.file(file.id)
        if self._changed(src, file.sha256, None):
            return self._put_back(file, note=self._changed_note(file, src))
        with self._targets_lock:
            target = self.store.archive_target(file.name)
            self.ledger.update_file(file.id, state="archiving", final_path=str(target))
        return self.ledger.file(file.id)

    def _finish_archive(self, file: FileRow) -> FileRow:
        src = Path(file.processing_path or "")
        target = Path(file.final_path or "")
        if file.processing_path and os.path.lexists(src):
            # Under the lock no other file takes the recorded name between the check and the move,
            # so the ledger always knows exactly where the source went.
            with self._targets_lock:
                if os.path.lexists(target):
                    target = self.store.archive_target(file.name)
                    self.ledger.update_file(file.id, final_path=str(target))
                target = self.store.move_to(src, target)
            crash.reach("after_archive")
        self.ledger.update_file(file.id, state="archived", final_path=str(target), finished_at=utc_now())
        _log.info("file_archived", file=file.name, archive=str(target))
        return self.ledger.file(file.id)

    @staticmethod
    def _changed(path: Path, sha256: str, before: tuple[int, int] | None) -> bool:
        """True when a claimed regular file no longer holds the content hashed at its claim."""
        try:
            if not path.is_file() or path.is_symlink():
                return False
            if before is not None and _stamp(path) != before:
                return True
            return sha256_of(path) != sha256
        except OSError:
            return False  # gone or unreadable: the normal steps report that

    @staticmethod
    def _changed_note(file: FileRow, path: Path) -> dict[str, Any]:
        try:
            grown = path.lstat().st_size - (file.size_bytes or 0)
        except OSError:
            grown = 0
        how = f"{grown} bytes appended" if grown > 0 else "its content was rewritten"
        return {
            "row": None,
            "column": None,
            "value": None,
            "message": (
                f"the file changed after it was read ({how}); it was put back in the inbox and will be "
                "processed again; invoices already validated are reported as duplicates"
            ),
            "rule": "file_changed",
        }

    def _put_back(self, file: FileRow, *, note: dict[str, Any] | None = None) -> FileRow:
        """Commit ``returning`` (and the report note) before moving the file back into the inbox."""
        with self._targets_lock:
            target = self.store.inbox_target(Path(file.original_path), file.name)
            fields: dict[str, Any] = {"state": "returning", "final_path": str(target)}
            if note is not None:
                fields["file_errors"] = [*file.file_errors, note]
            self.ledger.update_file(file.id, **fields)
        if note is not None:
            _log.warning("file_changed_after_read", file=file.name, sha256=file.sha256)
        return self.ledger.file(file.id)

    def _finish_returning(self, file: FileRow) -> FileRow | None:
        """Move a changed file back into the inbox; None when its (unread) row was dropped."""
        if file.read_at is not None:  # its report says why the file is not archived
            report = self.report(file, final=True)
            path = self.outbox.write_report(Path(file.batch_dir or ""), report)
            self.ledger.update_file(file.id, report_path=str(path))
        src = Path(file.processing_path or "")
        target = Path(file.final_path or "")
        if file.processing_path and os.path.lexists(src):
            with self._targets_lock:
                if os.path.lexists(target):
                    target = self.store.inbox_target(Path(file.original_path), file.name)
                    self.ledger.update_file(file.id, final_path=str(target))
                target = self.store.move_to(src, target)
        self.returned += 1
        _log.info("file_put_back", file=file.name, inbox=str(target), read=file.read_at is not None)
        if file.read_at is None:
            self.touched.discard(file.id)
            self._kick_later.extend(self.ledger.drop_unread_file(file.id))
            with self._locks_guard:
                self._locks.pop(file.id, None)
            result = None
        else:
            reason = "changed after it was read; put back in the inbox"
            self.ledger.update_file(
                file.id, state="archived", final_path=str(target), finished_at=utc_now(), reason=reason
            )
            result = self.ledger.file(file.id)
        if self.on_returned is not None:
            self.on_returned(target)
        return result

    def _fail(self, file: FileRow, reason: str, *, error: str = "InputError") -> FileRow:
        reason = redact(reason)
        with self._targets_lock:
            target = self.store.failed_target(file.name)
            self.ledger.update_file(file.id, state="failing", final_path=str(target), reason=reason)
        _log.warning("file_failed", file=file.name, reason=reason, error=error)
        self._kick_later.extend(d.id for d in self.ledger.files("claimed") if d.duplicate_of == file.id)
        return self.ledger.file(file.id)

    def _finish_failing(self, file: FileRow) -> FileRow:
        src = Path(file.processing_path or "")
        target = Path(file.final_path or "")
        if file.batch_dir:
            # Every source file gets its batch folder and report: here no invoice, one file error.
            where = f"moved to {self.store.failed.name}/{target.name}"
            error = {"row": None, "column": None, "value": None, "rule": "unreadable"}
            unread = dataclasses.replace(file, file_errors=[{**error, "message": f"{file.reason} ({where})"}])
            self.outbox.write_report(Path(file.batch_dir), self.report(unread, final=True))
        if file.processing_path and os.path.lexists(src):
            with self._targets_lock:
                # A reason file already at the recorded target is ours (written before a crash).
                if os.path.lexists(target):
                    target = self.store.failed_target(file.name)
                    self.ledger.update_file(file.id, final_path=str(target))
                self.store.write_reason(target, self._reason(file, target))
                target = self.store.move_to(src, target)
        elif not self.store.reason_path(target).exists():
            self.store.write_reason(target, self._reason(file, target))
        self.ledger.update_file(file.id, state="failed", final_path=str(target), finished_at=utc_now())
        return self.ledger.file(file.id)

    @staticmethod
    def _reason(file: FileRow, target: Path) -> dict[str, Any]:
        return {
            "source": file.name,
            "original_path": file.original_path,
            "sha256": file.sha256,
            "profile": file.profile,
            "received_at": file.claimed_at,
            "failed_at": utc_now(),
            "file": target.name,
            "reason": file.reason,
        }

    # -- recovery and periodic work ------------------------------------------------------------------

    def recover(self, temp_roots: Iterable[Path]) -> list[int]:
        """On start: clean temp files, adopt ``.processing/`` files, list every unfinished file.

        Returns:
            Ids of files to advance.
        """
        removed = self.store.clean_temp_files(*temp_roots)
        if removed:
            _log.info("temp_files_removed", count=len(removed))
        for claimed in self.store.claimed_files():
            try:
                self.register(claimed)
            except LedgerError:
                raise
            except Exception:
                _log.exception("file_adopt_failed", path=str(claimed.path))
        self.store.prune_processing()
        ids = [f.id for f in self.ledger.unfinished_files()]
        ids += [f.id for f in self.ledger.report_due_files()]
        for file_id in ids:
            self._touch(file_id)
        stuck = self.ledger.invoices("submitting")
        if stuck:
            _log.info(
                "invoices_to_reconcile", count=len(stuck), references=[i.reference_code for i in stuck][:20]
            )
        return ids

    def due_work(self, now: float | None = None) -> list[int]:
        """Schedule invoices whose retry is due, documents still missing and hidden bills to delete.

        Returns:
            Ids of files to advance afterwards.
        """
        now = self._clock() if now is None else now
        files: set[int] = set()
        paused = not self.submitter.auth_ok.is_set()
        for inv in self.ledger.invoices("planned", "submitting", "pending"):
            if inv.state == "pending" and inv.next_attempt_at is not None and inv.next_attempt_at > now:
                continue
            files.add(inv.file_id)
            if not paused:
                self._scheduled.add(inv.reference_code)
                self.submitter.schedule(inv.reference_code)
        for inv in self.ledger.validated_needing_documents():
            files.add(inv.file_id)
            self.submitter.schedule(inv.reference_code)
        if not paused:
            for inv in self.ledger.hidden_bills():
                self.submitter.schedule(inv.reference_code)
        files.update(f.id for f in self.ledger.unfinished_files())
        files.update(f.id for f in self.ledger.report_due_files())
        return sorted(files)

    def files_for_invoice(self, reference_code: str) -> list[int]:
        """Files whose report depends on this invoice (owner first)."""
        ids = self.ledger.files_referencing(reference_code)
        inv = self.ledger.invoice(reference_code)
        if inv is not None and inv.file_id not in ids:
            ids.insert(0, inv.file_id)
        return ids

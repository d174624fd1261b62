"""The :class:`Daemon`: owns the watcher, the scheduler and the worker pools, and stops cleanly.

``run()`` watches until SIGTERM/SIGINT, then stops taking work, lets in-flight requests finish (at
most ``submit.shutdown_timeout_s``), records where every file and invoice stands, and returns 0.
``run_once()`` processes what the inbox holds now plus anything unfinished in the ledger, waits for
the results and returns 0 (all validated or nothing to do), 1 (an invoice rejected/invalid or a file
failed) or 3 (work left pending because Factus could not be reached).

Only one daemon may use a ledger, and one an inbox, at a time: exclusive ``flock`` locks on
``<ledger>.lock`` and on the inbox folder itself enforce it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

import structlog

from daemon import _early
from daemon.errors import AuthError, ConfigError, DaemonError, FactusError, LedgerError
from daemon.log import redact
from daemon.service.budget import ServiceRateLimiter
from daemon.service.files import FileStore
from daemon.service.ledger import SqliteLedger
from daemon.service.outbox import Outbox
from daemon.service.pipeline import Pipeline, Reader
from daemon.service.progress import Progress
from daemon.service.scheduler import Jobs, build_scheduler
from daemon.service.submit import SubmitPolicy, Submitter
from daemon.service.watcher import InboxWatcher
from daemon.settings import Settings

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_PENDING", "Daemon", "FolderLock", "InstanceLock"]

_log = structlog.get_logger("daemon.service.runner")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_PENDING = 3
_MAX_STEP_ERRORS = 3  # unexpected errors on a file's first step before it is moved to failed/
_ONCE_ROUNDS = 3  # inbox passes of `run --once` while files come back because they changed


class InstanceLock:
    """An exclusive ``flock`` next to the ledger: one daemon per ledger (released by the kernel on death)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock; False when another process holds it."""
        if not self.path.parent.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def holder(self) -> str:
        """The pid written by the current holder (for messages)."""
        with contextlib.suppress(OSError):
            return self.path.read_text(encoding="utf-8").strip() or "?"
        return "?"

    def release(self) -> None:
        """Release the lock."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
                os.close(self._fd)
            self._fd = None


class FolderLock:
    """An exclusive ``flock`` on a folder itself: one daemon per inbox, whatever its ledger.

    Nothing is written into the folder; the kernel releases the lock when the process dies.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock; False when another process holds it."""
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        """Release the lock."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
                os.close(self._fd)
            self._fd = None


def in_doubt_grace_s(settings: Settings) -> float:
    """How long a create with no readable answer may still be running at the server.

    Twice the validate timeout: a bill that is not found is only created again once a request sent
    that long ago can no longer be on its way.
    """
    return 2 * settings.factus.validate_timeout_s


class Daemon:
    """The factus-daemon service.

    Args:
        settings: complete settings (paths already overridden by the CLI).
        client: the Factus client (default: built from ``settings.factus``); closed on stop when built here.
        reader: intake adapter (default: :func:`daemon.service.source.intake_reader`).
        progress_stream: where ``run_once`` draws a progress bar (None: no bar).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        client: Any = None,
        reader: Reader | None = None,
        progress_stream: TextIO | None = None,
    ) -> None:
        self.settings = settings
        self._client = client
        self._owns_client = client is None
        self._reader = reader
        self._progress_stream = progress_stream
        self._stop = threading.Event()
        self._lock = InstanceLock(
            settings.paths.ledger_path.with_name(settings.paths.ledger_path.name + ".lock")
        )
        self._inbox_lock = FolderLock(settings.paths.inbox)
        self._kick_lock = threading.Lock()
        self._running: set[int] = set()
        self._dirty: set[int] = set()
        self._claiming: set[Path] = set()
        self._step_errors: dict[int, int] = {}
        self._token_lock = threading.Lock()
        self.lookups: Any = None
        self.started = False
        self.drained = True
        self.unsettled = 0
        """Inbox files ``run_once`` left because they kept changing (exit code 3)."""
        self.ledger: SqliteLedger
        self.pipeline: Pipeline
        self.submitter: Submitter
        self.store: FileStore
        self.watcher: InboxWatcher | None = None
        self._scheduler: Any = None
        self._file_pool: ThreadPoolExecutor | None = None

    # -- wiring --------------------------------------------------------------------------------

    @property
    def client(self) -> Any:
        """The Factus client in use."""
        return self._client

    def start(self, *, watch: bool) -> None:
        """Open the ledger, recover unfinished work and, when ``watch``, start watcher and scheduler.

        Raises:
            LedgerError: another daemon holds the ledger, or it cannot be opened.
        """
        s = self.settings
        if not self._lock.acquire():
            raise LedgerError(
                f"another factus-daemon (pid {self._lock.holder()}) is using the ledger "
                f"{s.paths.ledger_path}; stop it first or use another state_dir"
            )
        if not self._inbox_lock.acquire():
            self._lock.release()
            raise LedgerError(
                f"another factus-daemon is watching the inbox {s.paths.inbox} (with another ledger); "
                "two daemons on one inbox could issue an invoice twice, so this one does not start"
            )
        try:
            self._start(watch=watch)
        except BaseException:
            self._inbox_lock.release()
            self._lock.release()
            raise

    def _start(self, *, watch: bool) -> None:
        s = self.settings
        if self._client is None:
            from daemon.factus.tokens import check_credentials

            check_credentials(s.factus)  # missing FACTUS_* variables: exit 2 with their names
        self.ledger = SqliteLedger(s.paths.ledger_path)
        if self._client is None:
            from daemon.factus.client import FactusClient

            limiter = ServiceRateLimiter(s.factus.rate_limit, s.factus.rate_window_s)
            self._client = FactusClient(s.factus, rate_limiter=limiter)
        self.store = FileStore(s.paths.inbox, s.paths.archive_dir, s.paths.failed_dir)
        self.store.ensure_dirs()
        s.paths.outbox.mkdir(parents=True, exist_ok=True)
        outbox = Outbox(s.paths.outbox)
        policy = SubmitPolicy(
            concurrency=s.submit.concurrency,
            max_attempts=s.submit.max_attempts,
            backoff_base_s=s.factus.backoff_base_s,
            backoff_max_s=s.factus.backoff_max_s,
            in_doubt_grace_s=in_doubt_grace_s(s),
            retry_pending_s=s.scheduler.retry_pending_s,
            outage_after=s.submit.outage_after,
            outage_hold_s=s.submit.outage_hold_s,
        )
        self.submitter = Submitter(self.ledger, self._client, outbox, policy, on_done=self._invoice_done)
        reader = self._reader
        if reader is None:
            from daemon.service.source import intake_reader

            self._load_lookups()
            reader = intake_reader(s, lambda: self.lookups)
        self.pipeline = Pipeline(
            self.ledger, self.store, outbox, self.submitter, reader, max_file_bytes=s.watch.max_file_bytes
        )
        self.pipeline.track_touched = not watch
        self.pipeline.on_returned = self._on_returned
        self._file_pool = ThreadPoolExecutor(
            max_workers=max(1, min(4, s.submit.concurrency)), thread_name_prefix="file"
        )
        self._token_check(initial=True)
        roots = {s.paths.outbox, s.paths.archive_dir, s.paths.failed_dir}
        for file_id in self.pipeline.recover(sorted(roots)):
            self._kick(file_id)
        # A new start retries every pending invoice at once, whatever its next_attempt_at.
        for file_id in self.pipeline.due_work(now=float("inf")):
            self._kick(file_id)
        self.watcher = InboxWatcher(
            s.paths.inbox,
            self._on_ready,
            stable_s=s.watch.stable_s,
            polling=s.watch.polling,
            done_marker=s.watch.done_marker,
            observe=watch,
        )
        if watch:
            self.watcher.start()
            self._scheduler = build_scheduler(
                Jobs(
                    token_check=self._token_check,
                    rescan=self._rescan,
                    retry_pending=self._retry_pending,
                    refresh_lookups=self._refresh_lookups,
                    purge_archive=self._purge_archive,
                ),
                s.scheduler,
                rescan_s=s.watch.rescan_s,
            )
            self._scheduler.start()
        self.started = True
        _log.info(
            "daemon_started",
            inbox=str(s.paths.inbox),
            outbox=str(s.paths.outbox),
            ledger=str(s.paths.ledger_path),
            factus=s.factus.base_url,
            watch=watch,
            concurrency=s.submit.concurrency,
        )

    def _load_lookups(self) -> None:
        from daemon.intake import Lookups

        self.lookups = Lookups.load(
            self.settings.paths.lookup_cache_path,
            source=self._client,
            max_age_s=self.settings.scheduler.lookup_refresh_h * 3600,
        )

    # -- file tasks ------------------------------------------------------------------------------

    def _kick(self, file_id: int) -> None:
        """Advance a file on the file pool; a request while it runs makes it run once more."""
        pool = self._file_pool
        if pool is None:
            return
        with self._kick_lock:
            if file_id in self._running:
                self._dirty.add(file_id)
                return
            self._running.add(file_id)
        try:
            pool.submit(self._advance_task, file_id)
        except RuntimeError:  # shutting down
            with self._kick_lock:
                self._running.discard(file_id)

    def _advance_task(self, file_id: int) -> None:
        try:
            with structlog.contextvars.bound_contextvars(file_id=file_id):
                self.pipeline.advance(file_id)
            self._step_errors.pop(file_id, None)
        except Exception as exc:
            _log.exception("file_step_failed", file_id=file_id, error=redact(repr(exc)))
            self._step_errors[file_id] = self._step_errors.get(file_id, 0) + 1
            if self._step_errors[file_id] >= _MAX_STEP_ERRORS:
                with contextlib.suppress(Exception):
                    self.pipeline.fail_unreadable(file_id, exc)
        finally:
            for other in self.pipeline.kicks():
                self._kick(other)
            again = False
            with self._kick_lock:
                self._running.discard(file_id)
                if file_id in self._dirty:
                    self._dirty.discard(file_id)
                    again = True
            if again and not self._stop.is_set():
                self._kick(file_id)

    def _on_ready(self, path: Path) -> None:
        pool = self._file_pool
        if pool is None or self._stop.is_set():
            return
        with self._kick_lock:
            if path in self._claiming:
                return
            self._claiming.add(path)
        try:
            pool.submit(self._claim_task, path)
        except RuntimeError:
            with self._kick_lock:
                self._claiming.discard(path)

    def _claim_task(self, path: Path) -> None:
        try:
            if self._stop.is_set():
                return
            file_id = self.pipeline.claim(path)
            if file_id is None:
                return
            self._consume_marker(path)
            self._kick(file_id)
        except Exception as exc:
            _log.exception("file_claim_failed", path=str(path), error=redact(repr(exc)))
        finally:
            with self._kick_lock:
                self._claiming.discard(path)

    def _consume_marker(self, path: Path) -> None:
        """Done-marker mode: the marker of a claimed file goes to the archive, never deleted."""
        if not self.settings.watch.done_marker or self.watcher is None:
            return
        marker = self.watcher.marker_of(path)
        if os.path.lexists(marker):
            try:
                self.store.move_to(marker, self.store.archive_target(marker.name))
            except OSError as exc:
                _log.warning("done_marker_not_moved", marker=str(marker), error=repr(exc))

    def _on_returned(self, path: Path) -> None:
        """A changed file was put back into the inbox: watch it again like a new one."""
        if self.watcher is not None:
            self.watcher.hint(path)

    def _invoice_done(self, reference_code: str) -> None:
        for file_id in self.pipeline.files_for_invoice(reference_code):
            self._kick(file_id)

    def busy(self) -> bool:
        """True while any file step, claim or invoice worker is running."""
        with self._kick_lock:
            files = bool(self._running or self._dirty or self._claiming)
        return files or self.submitter.active_count() > 0

    # -- scheduled jobs --------------------------------------------------------------------------

    def _token_check(self, initial: bool = False) -> None:
        """Renew the token before it expires (wall clock); resume submissions after an auth pause."""
        tokens = getattr(self._client, "tokens", None)
        if tokens is None or not self._token_lock.acquire(blocking=False):
            return
        try:
            paused = not self.submitter.auth_ok.is_set()
            if paused:
                tokens.login()
            elif not tokens.is_fresh():
                tokens.ensure_fresh()
            else:
                return
            if self.submitter.resume_auth() and not initial:
                self._retry_pending()
        except AuthError as exc:
            self.submitter.pause_for_auth(str(exc))
        except ConfigError as exc:
            self.submitter.pause_for_auth(str(exc))
        except FactusError as exc:
            _log.warning("token_refresh_failed", error=redact(str(exc)))
        except Exception as exc:
            _log.exception("token_check_failed", error=redact(repr(exc)))
        finally:
            self._token_lock.release()

    def _rescan(self) -> None:
        if self.watcher is not None:
            self.watcher.supervise()
        for file in self.ledger.unfinished_files():
            self._kick(file.id)

    def _retry_pending(self) -> None:
        for file_id in self.pipeline.due_work():
            self._kick(file_id)

    def _refresh_lookups(self) -> None:
        if self._reader is not None:
            return
        try:
            current = self.lookups
            self.lookups = current.refresh(self._client) if current is not None else None
            if self.lookups is None:
                self._load_lookups()
            _log.info("lookups_refreshed")
        except Exception as exc:
            _log.warning("lookups_refresh_failed", error=redact(repr(exc)))

    def _purge_archive(self) -> None:
        days = self.settings.scheduler.archive_retention_days
        root = self.settings.paths.archive_dir
        if days is None or not root.is_dir():
            return
        cutoff = (datetime.now(UTC) - timedelta(days=days)).strftime("%Y-%m-%d")
        for folder in sorted(root.iterdir()):
            name = folder.name
            if folder.is_dir() and not folder.is_symlink() and len(name) == 10 and name < cutoff:
                try:
                    datetime.strptime(name, "%Y-%m-%d")
                except ValueError:
                    continue
                shutil.rmtree(folder)
                _log.info("archive_purged", folder=str(folder), retention_days=days)

    # -- run modes ---------------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Ask ``run``/``run_once`` to stop (signal handlers call this)."""
        self._stop.set()

    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        """SIGTERM/SIGINT ask for a clean stop while running (main thread only); restored after."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, _frame: FrameType | None) -> None:
            _log.info("daemon_signal", signal=signal.Signals(signum).name)
            self.request_stop()

        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
        if _early.received():  # SIGTERM while the process was still starting: stop at once
            _log.info("daemon_signal", signal="received during start-up")
            self.request_stop()
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)

    def run(self) -> int:
        """Watch until SIGTERM/SIGINT (or :meth:`request_stop`), then drain and return 0."""
        with self._signals():
            if self._stop.is_set():
                return EXIT_OK
            self.start(watch=True)
            try:
                while not self._stop.wait(0.5):
                    pass
            finally:
                self.shutdown()
        return EXIT_OK

    def run_once(self) -> int:
        """Process the inbox as it is now plus unfinished work; return 0, 1 or 3."""
        with self._signals():
            return self._run_once()

    def _run_once(self) -> int:
        self.start(watch=False)
        progress = Progress(self._progress_stream) if self._progress_stream is not None else None
        try:
            watcher = self.watcher
            assert watcher is not None
            # Files put back into the inbox because they changed after their claim are taken again,
            # a few rounds at most; what is still left waits for the next run (exit code 3).
            for round_no in range(1, _ONCE_ROUNDS + 1):
                self.pipeline.returned = 0
                self._once_round(watcher, progress)
                if not self.pipeline.returned or self._stop.is_set():
                    break
                if round_no == _ONCE_ROUNDS:
                    self.unsettled += self.pipeline.returned
                    _log.warning(
                        "files_still_changing", count=self.pipeline.returned, left_for="the next run"
                    )
            if not self._stop.is_set():
                for file_id in sorted(self.pipeline.touched):
                    try:
                        self.pipeline.advance(file_id)
                    except Exception:
                        _log.exception("file_step_failed", file_id=file_id)
            self._draw(progress, final=True)
            code = self.exit_code()
            summary = self.summary()
        finally:
            self.shutdown()
        _log.info("run_once_finished", exit_code=code, **summary)
        return code

    def _once_round(self, watcher: InboxWatcher, progress: Progress | None) -> None:
        """Claim what the inbox holds now and wait until every worker is idle."""
        watcher.scan()
        # A file still being written is waited for, but not forever: it is left for the next run.
        settle_by = time.monotonic() + max(30.0, 10 * self.settings.watch.stable_s)
        while watcher.pending() and not self._stop.is_set():
            if time.monotonic() > settle_by:
                self.unsettled = watcher.pending()
                _log.warning("files_still_changing", count=self.unsettled, left_for="the next run")
                break
            watcher.check()
            self._draw(progress)
            self._stop.wait(watcher.tick_s)
        idle_polls = 0
        while not self._stop.is_set() and idle_polls < 3:
            idle_polls = 0 if self.busy() else idle_polls + 1
            self._draw(progress)
            self._stop.wait(0.05)

    def _draw(self, progress: Progress | None, *, final: bool = False) -> None:
        if progress is None or not (final or progress.due()):
            return
        s = self.summary()
        progress.update(
            files_done=s["files_done"],
            files_total=s["files"],
            invoices=s["invoices"],
            final=final,
        )

    def summary(self) -> dict[str, Any]:
        """Counts over the files this process touched (progress bar and the final log line)."""
        counts: Counter[str] = Counter()
        files_done = failed = 0
        touched = sorted(self.pipeline.touched) if self.started else []
        for file_id in touched:
            file = self.ledger.file(file_id)
            if file.state in ("archived", "failed", "reported", "archiving", "failing"):
                files_done += 1
            if file.state in ("failed", "failing"):
                failed += 1
                continue
            for status, n in self._statuses(file_id).items():
                counts[status] += n
        return {
            "files": len(touched),
            "files_done": files_done,
            "files_failed": failed,
            "invoices": dict(counts),
        }

    def _statuses(self, file_id: int) -> Counter[str]:
        report = self.pipeline.report(self.ledger.file(file_id), final=False)
        return Counter({k: v for k, v in report["summary"].items() if v})

    def exit_code(self) -> int:
        """0 all validated (or nothing), 1 any rejected/invalid or failed file, 3 pending work."""
        s = self.summary()
        inv = s["invoices"]
        if s["files_failed"] or inv.get("rejected") or inv.get("invalid"):
            return EXIT_FAILED
        if inv.get("pending") or s["files_done"] < s["files"] or self.unsettled:
            return EXIT_PENDING
        if self.started and (self.ledger.invoices("planned", "submitting", "pending")):
            return EXIT_PENDING
        return EXIT_OK

    def shutdown(self) -> None:
        """Stop taking work, let in-flight requests finish, checkpoint and release the ledger."""
        self._stop.set()
        if not self.started:
            self._inbox_lock.release()
            self._lock.release()
            return
        self.started = False
        timeout = self.settings.submit.shutdown_timeout_s
        deadline = time.monotonic() + timeout
        if self.watcher is not None:
            self.watcher.stop()
        if self._scheduler is not None:
            with contextlib.suppress(Exception):
                self._scheduler.shutdown(wait=False)
        drained = self.submitter.shutdown(max(0.0, deadline - time.monotonic()))
        while time.monotonic() < deadline:
            with self._kick_lock:
                if not (self._running or self._claiming):
                    break
            time.sleep(0.05)
        with self._kick_lock:
            files_idle = not (self._running or self._claiming)
        self.drained = drained and files_idle
        if self._file_pool is not None:
            self._file_pool.shutdown(wait=self.drained, cancel_futures=True)
        if self.drained:
            with contextlib.suppress(DaemonError):
                self.ledger.close()
            if self._owns_client:
                with contextlib.suppress(Exception):
                    self._client.close()
        else:
            _log.warning("daemon_drain_timeout", timeout_s=timeout)
        self._inbox_lock.release()
        self._lock.release()
        _log.info("daemon_stopped", drained=self.drained)
        with contextlib.suppress(Exception):
            sys.stderr.flush()

"""Watching the inbox: watchdog events are hints, scans are the truth, stability decides readiness.

A startup scan and a periodic rescan find every file; watchdog (native or polling observer) only
makes arrivals noticed sooner. A candidate is *ready* when its size and mtime are unchanged over two
checks ``stable_s`` apart, no other process still has it open for writing (Linux: a read-lease probe,
see :func:`held_open_for_writing`), and, in done-marker mode, ``<name>.done`` exists. Office lock files
(``~$*``, ``.~lock*``), ``*.tmp``, ``*.part``, dot files and ``.processing/`` are never candidates.
Files are taken from the inbox itself and from one level of profile folders (``inbox/<profile>/``);
symbolic links are reported as they are (the pipeline moves them aside), never followed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

import structlog

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["DONE_SUFFIX", "InboxWatcher", "eligible", "held_open_for_writing"]

_log = structlog.get_logger("daemon.service.watcher")

DONE_SUFFIX = ".done"
_IGNORED_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", ".fdtmp", ".swp")
_IGNORED_NAMES = frozenset({"thumbs.db", "desktop.ini"})
_READ_ONLY_EVENTS = frozenset({"opened", "closed_no_write"})


def held_open_for_writing(path: Path) -> bool:
    """True when some process has ``path`` open for writing, as far as the OS can tell.

    Linux refuses a read lease (``F_SETLEASE``/``F_RDLCK``) with EAGAIN while anyone holds the file
    open for writing: an exporter that pauses longer than ``stable_s`` without closing its file is
    then still seen as writing. The lease is dropped at once. Where leases are unavailable (another
    OS, a network filesystem, a file we do not own without CAP_LEASE) the answer is False and size
    and mtime stability alone decide. A lease break is signalled to the holder with SIGIO, whose
    default action ends the process, so the lease is set to signal SIGURG (ignored by default).
    """
    setlease = getattr(fcntl, "F_SETLEASE", None)
    if setlease is None:
        return False
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        fcntl.fcntl(fd, fcntl.F_SETSIG, signal.SIGURG)
        fcntl.fcntl(fd, setlease, fcntl.F_RDLCK)
    except OSError as exc:
        return exc.errno == errno.EAGAIN
    else:
        with contextlib.suppress(OSError):
            fcntl.fcntl(fd, setlease, fcntl.F_UNLCK)
        return False
    finally:
        os.close(fd)


def eligible(rel: PurePath, *, done_marker: bool = False) -> bool:
    """True when an inbox-relative path may be a source file (not temp, lock, hidden or nested)."""
    parts = rel.parts
    if not parts or len(parts) > 2:
        return False
    if any(p.startswith(".") for p in parts):
        return False  # dot files, .~lock*, .processing/
    name = parts[-1]
    lower = name.lower()
    if name.startswith("~$") or lower in _IGNORED_NAMES or lower.endswith(_IGNORED_SUFFIXES):
        return False
    return not (done_marker and lower.endswith(DONE_SUFFIX))


@dataclass(slots=True)
class _Seen:
    size: int
    mtime_ns: int
    at: float


class _Handler:
    """watchdog handler: every event becomes a hint; exceptions never reach the observer thread."""

    def __init__(self, watcher: InboxWatcher) -> None:
        self._watcher = watcher

    def dispatch(self, event: Any) -> None:
        # Opening or reading a file changes nothing (and the readiness probe opens files itself).
        if getattr(event, "event_type", "") in _READ_ONLY_EVENTS:
            return
        try:
            for attr in ("src_path", "dest_path"):
                raw = getattr(event, attr, None)
                if not raw:
                    continue
                path = Path(os.fsdecode(raw))
                if getattr(event, "is_directory", False):
                    if attr == "dest_path" or getattr(event, "event_type", "") == "created":
                        self._watcher.request_scan()
                    continue
                self._watcher.hint(path)
        except Exception:  # a handler exception would kill watchdog's dispatcher thread
            _log.exception("watcher_event_failed")


class InboxWatcher:
    """Finds ready files in the inbox and hands them to ``on_ready`` (once per readiness).

    Args:
        inbox: the watched folder.
        on_ready: called with each ready path (from the watcher thread; must be quick).
        stable_s: size+mtime must be unchanged over this interval.
        polling: use watchdog's polling observer (network shares).
        done_marker: a file is ready only once ``<name>.done`` exists next to it.
        observe: start a watchdog observer (False: scans only, as ``run --once`` does).
        clock: monotonic seconds.
    """

    def __init__(
        self,
        inbox: Path,
        on_ready: Callable[[Path], None],
        *,
        stable_s: float = 2.0,
        polling: bool = False,
        done_marker: bool = False,
        observe: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.inbox = inbox
        self._on_ready = on_ready
        self.stable_s = stable_s
        self.polling = polling
        self.done_marker = done_marker
        self._observe = observe
        self._clock = clock
        self._lock = threading.Lock()
        self._candidates: dict[Path, _Seen] = {}
        self._scan_requested = threading.Event()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._observer: Any = None
        self._warned: set[Path] = set()
        self.tick_s = max(0.05, min(stable_s / 2, 1.0))

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Scan once, start the observer (when observing) and the readiness thread."""
        self.inbox.mkdir(parents=True, exist_ok=True)
        self.scan()
        if self._observe:
            self._start_observer()
        self._thread = threading.Thread(target=self._loop, name="inbox-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the observer and the readiness thread."""
        self._stop.set()
        self._wake.set()
        self._stop_observer()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _start_observer(self) -> None:
        try:
            if self.polling:
                from watchdog.observers.polling import PollingObserver

                observer: Any = PollingObserver(timeout=max(0.2, min(self.stable_s, 2.0)))
            else:
                from watchdog.observers import Observer

                observer = Observer()
            observer.schedule(_Handler(self), str(self.inbox), recursive=True)
            observer.daemon = True
            observer.start()
            self._observer = observer
            _log.info("watcher_started", inbox=str(self.inbox), polling=self.polling)
        except Exception as exc:  # inotify limits and friends: scans still find every file
            self._observer = None
            _log.warning("watcher_observer_failed", inbox=str(self.inbox), error=repr(exc), fallback="scans")

    def _stop_observer(self) -> None:
        observer, self._observer = self._observer, None
        if observer is not None:
            try:
                observer.stop()
                observer.join(timeout=5)
            except Exception:
                _log.exception("watcher_stop_failed")

    def supervise(self) -> None:
        """Restart a dead observer (watchdog threads can die silently) and rescan."""
        if self._observe and not self._stop.is_set():
            observer = self._observer
            if observer is None or not observer.is_alive():
                _log.warning("watcher_observer_restarted", inbox=str(self.inbox))
                self._stop_observer()
                self._start_observer()
        self.scan()

    # -- discovery ---------------------------------------------------------------------------

    def request_scan(self) -> None:
        """Ask the watcher thread for a full scan soon (e.g. a folder appeared)."""
        self._scan_requested.set()
        self._wake.set()

    def hint(self, path: Path) -> None:
        """A watchdog event touched ``path``: consider it (nothing is read yet)."""
        try:
            rel = path.relative_to(self.inbox)
        except ValueError:
            return
        if eligible(rel, done_marker=self.done_marker):
            self._add(path)
            self._wake.set()
        elif self.done_marker and path.name.lower().endswith(DONE_SUFFIX):
            self._add(path.with_name(path.name[: -len(DONE_SUFFIX)]))
            self._wake.set()

    def scan(self) -> int:
        """Walk the inbox (and one level of profile folders); returns the number of candidates."""
        try:
            top = list(os.scandir(self.inbox))
        except OSError as exc:
            _log.error("inbox_unreadable", inbox=str(self.inbox), error=repr(exc))
            return self.pending()
        for entry in top:
            if entry.name.startswith("."):
                continue
            path = Path(entry.path)
            try:
                if entry.is_dir(follow_symlinks=False):
                    self._scan_profile(path)
                    continue
            except OSError:
                continue
            if eligible(PurePath(entry.name), done_marker=self.done_marker):
                self._add(path)
        return self.pending()

    def _scan_profile(self, folder: Path) -> None:
        try:
            entries = list(os.scandir(folder))
        except OSError:
            return
        for entry in entries:
            path = Path(entry.path)
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                continue
            if is_dir:
                if path not in self._warned and not entry.name.startswith("."):
                    self._warned.add(path)
                    _log.warning("inbox_nested_folder_ignored", folder=str(path))
                continue
            if eligible(PurePath(folder.name, entry.name), done_marker=self.done_marker):
                self._add(path)

    def _add(self, path: Path) -> None:
        with self._lock:
            if path in self._candidates:
                return
        seen = self._stat(path)
        if seen is None:
            return
        with self._lock:
            self._candidates.setdefault(path, seen)

    def _stat(self, path: Path) -> _Seen | None:
        try:
            st = path.lstat()
        except OSError:
            return None
        if stat.S_ISDIR(st.st_mode):
            return None
        return _Seen(st.st_size, st.st_mtime_ns, self._clock())

    def pending(self) -> int:
        """Candidates not yet ready."""
        with self._lock:
            return len(self._candidates)

    # -- readiness ---------------------------------------------------------------------------

    def check(self) -> list[Path]:
        """One readiness pass: hand every stable candidate to ``on_ready``; returns them."""
        now = self._clock()
        with self._lock:
            items = list(self._candidates.items())
        ready: list[Path] = []
        for path, seen in items:
            current = self._stat(path)
            if current is None:
                with self._lock:
                    self._candidates.pop(path, None)
                continue
            if (current.size, current.mtime_ns) != (seen.size, seen.mtime_ns):
                with self._lock:
                    self._candidates[path] = current
                continue
            if now - seen.at < self.stable_s:
                continue
            if self.done_marker and not path.is_symlink() and not self.marker_of(path).exists():
                continue
            if not path.is_symlink() and held_open_for_writing(path):
                with self._lock:  # still being written: wait another stable_s after it is closed
                    self._candidates[path] = current
                continue
            with self._lock:
                self._candidates.pop(path, None)
            ready.append(path)
        for path in ready:
            try:
                self._on_ready(path)
            except Exception:
                _log.exception("watcher_on_ready_failed", path=str(path))
        return ready

    @staticmethod
    def marker_of(path: Path) -> Path:
        """The done-marker of a source file: ``<name>.done``."""
        return path.with_name(path.name + DONE_SUFFIX)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.tick_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                if self._scan_requested.is_set():
                    self._scan_requested.clear()
                    self.scan()
                self.check()
            except Exception:
                _log.exception("watcher_loop_failed")

"""Source-file lifecycle on disk: claim into ``.processing/``, archive, move aside to ``failed/``.

Every move is a rename (atomic on one filesystem; copy + fsync + rename + unlink of the source across
filesystems), a destination is never overwritten (a ``-2``, ``-3``... suffix is added) and nothing is
ever deleted. A claimed file lives at ``<inbox>/.processing/<token>/<path relative to the inbox>``, so
its original name and profile folder survive a crash that happens before the ledger knows it.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from daemon.fsutil import TMP_SUFFIX, atomic_write_text, fsync_dir, safe_name

__all__ = ["PROCESSING_DIR", "Claimed", "FileStore", "sha256_of", "utf8_safe"]

PROCESSING_DIR = ".processing"
_CHUNK = 1024 * 1024


def utf8_safe(text: str) -> str:
    """A name or path that is valid UTF-8 text: undecodable bytes of a file name become U+FFFD.

    Linux file names are bytes; Python keeps undecodable ones as lone surrogates, which neither
    SQLite nor a UTF-8 report can hold.
    """
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def sha256_of(path: Path) -> str:
    """SHA-256 of a file's bytes.

    A symbolic link is hashed by its target text (never followed); anything else that is not a
    regular file (a FIFO would block whoever opens it) by its type and name, never opened.
    """
    mode = path.lstat().st_mode
    if stat.S_ISLNK(mode):
        return hashlib.sha256(b"symlink:" + os.readlink(path).encode("utf-8", "surrogateescape")).hexdigest()
    if not stat.S_ISREG(mode):
        marker = f"special:{stat.S_IFMT(mode)}:{path.name}:{time.time_ns()}"
        return hashlib.sha256(marker.encode("utf-8", "surrogateescape")).hexdigest()
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class Claimed:
    """A file moved into ``.processing/``: where it is now and where it came from."""

    path: Path
    original: Path
    name: str
    profile: str | None


def _component(name: str) -> str:
    """Keep a sane original name as is (it already is one path component); sanitise the rest."""
    if (
        name
        and not name.startswith(".")
        and len(name.encode("utf-8", "surrogateescape")) <= 180
        and all(c.isprintable() and c not in "/\\" for c in name)
    ):
        return name
    return safe_name(name, default="source", max_len=180)


def _unique(target: Path) -> Path:
    """``target`` itself, or ``stem-2.ext``, ``stem-3.ext``... whichever does not exist yet."""
    if not os.path.lexists(target):
        return target
    stem, suffix = target.stem, target.suffix
    n = 2
    while True:
        candidate = target.with_name(f"{stem}-{n}{suffix}")
        if not os.path.lexists(candidate):
            return candidate
        n += 1


def _tmp_beside(path: Path) -> Path:
    """A temp name next to ``path``, recognisable (and cleaned on start) as a crash leftover."""
    return path.with_name(f".{path.name}.{os.getpid()}{TMP_SUFFIX}")


def _durable_copy(src: Path, dst: Path) -> None:
    """Copy ``src`` (data and times) to ``dst`` and fsync it."""
    shutil.copy2(src, dst)
    with dst.open("rb") as fh:
        os.fsync(fh.fileno())


def _move(src: Path, dst: Path) -> None:
    """Rename ``src`` to ``dst`` durably; across filesystems copy, fsync, rename, then unlink."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(src, dst)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        tmp = _tmp_beside(dst)
        if src.is_symlink():
            os.symlink(os.readlink(src), tmp)
        else:
            _durable_copy(src, tmp)
        os.rename(tmp, dst)
        fsync_dir(dst.parent)
        os.unlink(src)
    fsync_dir(dst.parent)
    fsync_dir(src.parent)


def _own_copy(path: Path) -> None:
    """Give a claimed file an inode of its own when it is a hard link to a file elsewhere.

    The claim is a rename, which keeps the inode: the archived copy of a hard-linked file would
    otherwise change whenever the file at its other name is edited. Nothing is deleted: the other
    name keeps its data; only our directory entry now points at a private copy.
    """
    try:
        st = path.lstat()
    except OSError:
        return
    if not stat.S_ISREG(st.st_mode) or st.st_nlink <= 1:
        return
    tmp = _tmp_beside(path)
    _durable_copy(path, tmp)
    os.replace(tmp, path)
    fsync_dir(path.parent)


class FileStore:
    """The inbox, its ``.processing/`` folder, the archive and the failed folder.

    Args:
        inbox: the watched folder.
        archive: where processed sources go, in ``YYYY-MM-DD`` sub-folders (UTC).
        failed: where unreadable sources go, each with ``<name>.reason.json``.
        clock: epoch seconds (date folders and claim tokens).
    """

    def __init__(self, inbox: Path, archive: Path, failed: Path, *, clock: Any = time.time) -> None:
        self.inbox = inbox
        self.processing = inbox / PROCESSING_DIR
        self.archive = archive
        self.failed = failed
        self._clock = clock

    def ensure_dirs(self) -> None:
        """Create the folders the daemon writes to."""
        for folder in (self.inbox, self.processing, self.archive, self.failed):
            folder.mkdir(parents=True, exist_ok=True)

    # -- claim --------------------------------------------------------------------------------

    def relative(self, path: Path) -> Path:
        """``path`` relative to the inbox (raises ValueError when outside it)."""
        return path.relative_to(self.inbox)

    def claim(self, path: Path) -> Claimed | None:
        """Atomically move an inbox file into ``.processing/``; None when someone else took it first."""
        rel = self.relative(path)
        token = f"{time.time_ns():x}-{os.getpid():x}"
        # The claimed copy gets a valid UTF-8 name, so every later path can go into the ledger.
        target = self.processing / token / Path(*[utf8_safe(p) for p in rel.parts])
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(path, target)
        except FileNotFoundError:
            with contextlib.suppress(OSError):
                target.parent.rmdir()
                if target.parent != self.processing / token:
                    (self.processing / token).rmdir()
            return None
        fsync_dir(target.parent)
        fsync_dir(path.parent)
        _own_copy(target)
        return Claimed(
            path=target,
            original=Path(utf8_safe(str(path))),
            name=target.name,
            profile=utf8_safe(rel.parts[0]) if len(rel.parts) > 1 else None,
        )

    def claimed_files(self) -> Iterator[Claimed]:
        """Every file found in ``.processing/`` (resumed on start), oldest claim first."""
        if not self.processing.is_dir():
            return
        for token_dir in sorted(self.processing.iterdir()):
            if not token_dir.is_dir() or token_dir.is_symlink():
                continue
            for entry in sorted(token_dir.rglob("*")):
                if entry.is_dir() and not entry.is_symlink():
                    continue
                rel = entry.relative_to(token_dir)
                if entry.name.endswith(TMP_SUFFIX):
                    continue
                if utf8_safe(str(entry)) != str(entry):
                    fixed = entry.with_name(utf8_safe(entry.name))
                    if os.path.lexists(fixed):
                        continue
                    os.rename(entry, fixed)
                    entry, rel = fixed, fixed.relative_to(token_dir)
                _own_copy(entry)  # a crash between the claim and its private copy
                yield Claimed(
                    path=entry,
                    original=Path(utf8_safe(str(self.inbox / rel))),
                    name=rel.name,
                    profile=utf8_safe(rel.parts[0]) if len(rel.parts) > 1 else None,
                )

    def prune_processing(self) -> None:
        """Remove empty claim folders left in ``.processing/`` (folders only, never files)."""
        if not self.processing.is_dir():
            return
        for token_dir in self.processing.iterdir():
            if token_dir.is_dir() and not token_dir.is_symlink():
                for sub in sorted(token_dir.rglob("*"), reverse=True):
                    if sub.is_dir() and not sub.is_symlink():
                        with contextlib.suppress(OSError):
                            sub.rmdir()
                with contextlib.suppress(OSError):
                    token_dir.rmdir()

    def _release(self, path: Path) -> None:
        """Drop the (now empty) claim folders of a file that left ``.processing/``."""
        parent = path.parent
        with contextlib.suppress(OSError, ValueError):
            while parent != self.processing and parent.is_relative_to(self.processing):
                parent.rmdir()
                parent = parent.parent

    # -- terminal places ----------------------------------------------------------------------

    def archive_target(self, name: str) -> Path:
        """A free path for ``name`` in today's archive folder."""
        day = datetime.fromtimestamp(self._clock(), UTC).strftime("%Y-%m-%d")
        return _unique(self.archive / day / _component(name))

    def failed_target(self, name: str) -> Path:
        """A free path for ``name`` in the failed folder (its reason file must be free too)."""
        target = _unique(self.failed / _component(name))
        while os.path.lexists(self.reason_path(target)):
            target = _unique(target.with_name(f"{target.stem}-x{target.suffix}"))
        return target

    def inbox_target(self, original: Path, name: str) -> Path:
        """A free path in the inbox to put a claimed file back: its original place when free."""
        try:
            rel = self.relative(original)
        except ValueError:
            rel = Path(_component(name))
        if not rel.parts or rel.parts[0] == PROCESSING_DIR or ".." in rel.parts:
            rel = Path(_component(name))
        return _unique(self.inbox / rel)

    @staticmethod
    def reason_path(target: Path) -> Path:
        """``<failed>/<name>.reason.json`` for a failed file at ``target``."""
        return target.with_name(f"{target.name}.reason.json")

    def move_to(self, src: Path, target: Path) -> Path:
        """Move a claimed file to its terminal place; a taken ``target`` gets a fresh unique name.

        Returns:
            Where the file is now.
        """
        if os.path.lexists(target):
            target = _unique(target)
        _move(src, target)
        self._release(src)
        return target

    def write_reason(self, target: Path, reason: dict[str, Any]) -> Path:
        """Write ``<target>.reason.json`` atomically."""
        path = self.reason_path(target)
        atomic_write_text(path, json.dumps(reason, ensure_ascii=False, indent=2) + "\n")
        return path

    def restore_failed(self, failed_path: Path, original_rel: Path) -> Path:
        """Move a failed file back into the inbox (``retry --failed``); its reason file is kept aside.

        Returns:
            The file's new path in the inbox.
        """
        rel = Path(*[safe_name(p) for p in original_rel.parts]) if original_rel.parts else Path("source")
        target = _unique(self.inbox / rel)
        _move(failed_path, target)
        reason = self.reason_path(failed_path)
        if reason.exists():
            stamp = datetime.fromtimestamp(self._clock(), UTC).strftime("%Y%m%dT%H%M%SZ")
            _move(reason, _unique(self.failed / "retried" / f"{reason.name}.{stamp}"))
        return target

    def clean_temp_files(self, *roots: Path) -> list[Path]:
        """Remove ``*.fdtmp`` leftovers of interrupted atomic writes under ``roots``.

        These are our own half-written temp files, never user data.
        """
        removed: list[Path] = []
        for root in roots:
            if not root.is_dir():
                continue
            for tmp in root.rglob(f"*{TMP_SUFFIX}"):
                if tmp.is_file() and not tmp.is_symlink():
                    with contextlib.suppress(OSError):
                        tmp.unlink()
                        removed.append(tmp)
        return removed

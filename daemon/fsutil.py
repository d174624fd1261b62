"""Crash-safe file writes and safe names: temp file in the target folder, fsync, rename."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import unicodedata
from pathlib import Path

__all__ = ["TMP_SUFFIX", "atomic_write_bytes", "atomic_write_text", "fsync_dir", "safe_name"]

TMP_SUFFIX = ".fdtmp"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_RESERVED = {
    "CON", "PRN", "AUX", "NUL",
    *(f"COM{i}" for i in range(1, 10)),
    *(f"LPT{i}" for i in range(1, 10)),
}  # fmt: skip


def fsync_dir(path: Path) -> None:
    """Flush a directory entry so a rename inside it survives a power cut."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` so readers see either the old file or the whole new one.

    The temp file lives in the same folder (same filesystem, so the rename is atomic) and carries
    ``TMP_SUFFIX`` so a crash leftover is recognisable and cleaned on the next start.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:80]}.", suffix=TMP_SUFFIX, dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str, *, mode: int = 0o644) -> None:
    """UTF-8 variant of :func:`atomic_write_bytes`."""
    atomic_write_bytes(path, text.encode("utf-8"), mode=mode)


def safe_name(raw: str, *, default: str = "unnamed", max_len: int = 120) -> str:
    """Turn an untrusted string (a reference code, a number) into one safe path component.

    Separators, ``..``, control characters and reserved device names can never escape the folder.
    """
    # accents become their base letter (ñandú -> nandu) rather than a gap
    plain = "".join(c for c in unicodedata.normalize("NFKD", raw) if not unicodedata.combining(c))
    name = _UNSAFE.sub("_", plain).strip("._-")  # no dot file, no name a shell reads as an option
    if not name:
        name = default
    if name.split(".")[0].upper() in _RESERVED:
        name = f"_{name}"
    if len(name) > max_len:  # shortened, the extension is kept: it says what the file is
        stem, dot, ext = name.rpartition(".")
        keep = f".{ext}" if dot and stem and 0 < len(ext) <= 10 else ""
        name = name[: max_len - len(keep)].rstrip("._-") + keep
    return name

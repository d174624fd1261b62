"""Test-only crash hook: kill the process with SIGKILL at a named point of the pipeline.

The reliability suites arm it through the hidden ``run --crash-at POINT[@N]`` option; production runs
never arm it and every call is then a cheap no-op. ``N`` (default 1) kills at the N-th time the point
is reached, so a test can crash in the middle of a batch rather than at its first invoice.
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import threading
from pathlib import Path

from daemon.errors import ConfigError
from daemon.fsutil import TMP_SUFFIX

__all__ = ["POINTS", "arm", "armed", "disarm", "reach", "reach_partial"]

POINTS = (
    "after_claim",  # the file is in .processing/ and its ledger row is committed, nothing read yet
    "before_submit",  # an invoice is committed as `submitting`, the POST is not sent
    "after_send",  # the POST was answered (or failed) and the answer is not recorded
    "after_validated",  # `validated` is committed, no PDF/XML written
    "mid_document",  # a PDF/XML temp file is half written
    "mid_report",  # a report temp file is half written
    "before_archive",  # the final report is written, the source is not moved
    "after_archive",  # the source is in the archive, the ledger does not know yet
)

_lock = threading.Lock()
_armed: str | None = None
_remaining = 0


def arm(spec: str) -> None:
    """Arm the hook from ``POINT`` or ``POINT@N``.

    Raises:
        ConfigError: unknown point or a count that is not a positive integer.
    """
    global _armed, _remaining
    point, _, count = spec.partition("@")
    if point not in POINTS:
        raise ConfigError(f"unknown crash point {point!r}; choose one of {', '.join(POINTS)}")
    try:
        n = int(count) if count else 1
    except ValueError:
        raise ConfigError(f"crash point count must be an integer, got {count!r}") from None
    if n < 1:
        raise ConfigError(f"crash point count must be at least 1, got {n}")
    with _lock:
        _armed, _remaining = point, n


def disarm() -> None:
    """Forget any armed point."""
    global _armed
    with _lock:
        _armed = None


def armed() -> str | None:
    """The armed point, if any."""
    return _armed


def _due(point: str) -> bool:
    global _remaining
    if _armed != point:
        return False
    with _lock:
        if _armed != point:
            return False
        _remaining -= 1
        return _remaining == 0


def _die() -> None:  # pragma: no cover - the process ends here
    os.kill(os.getpid(), signal.SIGKILL)


def reach(point: str) -> None:
    """Kill the process now when ``point`` is armed and due."""
    if _due(point):
        _die()


def reach_partial(point: str, target: Path, data: bytes) -> None:
    """When ``point`` is due, leave half of ``data`` in a temp file next to ``target``, then die.

    This reproduces a crash in the middle of :func:`daemon.fsutil.atomic_write_bytes`.
    """
    if not _due(point):
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, _tmp = tempfile.mkstemp(prefix=f".{target.name[:80]}.", suffix=TMP_SUFFIX, dir=target.parent)
    with contextlib.suppress(OSError):
        os.write(fd, data[: max(1, len(data) // 2)])
        os.fsync(fd)
    _die()

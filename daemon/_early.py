"""SIGTERM/SIGINT that arrive while the process is still starting up.

Python applies the default action (terminate) to a signal that arrives before a handler is set, so
a supervisor's SIGTERM sent a moment after it started the daemon killed it mid-start (exit -15)
instead of stopping it cleanly. ``python -m daemon`` calls :func:`install` before importing
anything heavy; the CLI then either hands a recorded signal to the daemon (which stops at once and
exits 0) or, for the other commands, restores the default handlers and exits as the signal asked.
"""

from __future__ import annotations

import signal
from types import FrameType

_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_received: list[int] = []
_installed = False


def _record(signum: int, _frame: FrameType | None) -> None:
    _received.append(signum)


def install() -> None:
    """Record SIGTERM/SIGINT instead of dying while the program starts (idempotent)."""
    global _installed
    if not _installed:
        for sig in _SIGNALS:
            signal.signal(sig, _record)
        _installed = True


def received() -> bool:
    """True when a SIGTERM/SIGINT arrived during start-up."""
    return bool(_received)


def release() -> None:
    """Restore the default handlers; a signal recorded meanwhile ends the process (128 + signal)."""
    global _installed
    if not _installed:
        return
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    _installed = False
    if _received:
        raise SystemExit(128 + _received[0])

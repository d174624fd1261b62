"""A one-line progress bar for ``run --once`` on a terminal (hand-written, no dependency)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TextIO

__all__ = ["Progress"]

_ORDER = ("validated", "duplicate", "rejected", "invalid", "pending")


class Progress:
    """Redraws ``[#####-----] 3/5 files | validated 12 rejected 1`` in place, at most 10 times a second.

    Args:
        stream: a terminal (usually stderr).
        width: bar width in characters.
        clock: monotonic seconds (throttling).
    """

    def __init__(
        self, stream: TextIO, *, width: int = 28, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._stream = stream
        self._width = width
        self._clock = clock
        self._last = float("-inf")
        self._shown = ""

    def due(self) -> bool:
        """True when a redraw would be shown now (callers skip costly counting otherwise)."""
        return self._clock() - self._last >= 0.1

    def render(self, files_done: int, files_total: int, invoices: Mapping[str, int]) -> str:
        """The text of the bar (no control characters)."""
        filled = 0 if files_total == 0 else round(self._width * files_done / files_total)
        bar = "#" * filled + "-" * (self._width - filled)
        counts = " ".join(f"{k} {invoices[k]}" for k in _ORDER if invoices.get(k))
        return f"[{bar}] {files_done}/{files_total} files" + (f" | {counts}" if counts else "")

    def update(
        self, *, files_done: int, files_total: int, invoices: Mapping[str, int], final: bool = False
    ) -> None:
        """Redraw (throttled unless ``final``); the final call ends the line."""
        if not final and not self.due():
            return
        self._last = self._clock()
        text = self.render(files_done, files_total, invoices)
        pad = " " * max(0, len(self._shown) - len(text))
        self._stream.write("\r" + text + pad + ("\n" if final else ""))
        self._stream.flush()
        self._shown = text

"""One request budget shared by every Factus call of the process (Factus allows 80 per minute).

A sliding window of request start times: a call may start when fewer than ``limit`` calls started in
the last ``window_s`` seconds and no server-imposed pause (``Retry-After`` on 429/503, or
``X-RateLimit-Remaining: 0`` with ``X-RateLimit-Reset``) is running. When the budget is short the
waiter with the highest priority goes first (validations 10, reads 5, downloads 0); equal priorities
are served in arrival order.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping

import structlog

from daemon.factus.retry import parse_retry_after

__all__ = ["PRIORITY_DOWNLOAD", "PRIORITY_READ", "PRIORITY_VALIDATE", "RateLimiter"]

PRIORITY_VALIDATE = 10
PRIORITY_READ = 5
PRIORITY_DOWNLOAD = 0

_log = structlog.get_logger(__name__)
# An epoch timestamp is far larger than any sane "seconds until reset" value.
_EPOCH_THRESHOLD = 1_000_000_000


class RateLimiter:
    """Thread-safe sliding-window limiter with priorities and server-driven pauses.

    Args:
        limit: requests allowed per window.
        window_s: window length in seconds.
        clock: monotonic seconds (injected in tests).
        sleep: when given, waiting calls ``sleep(seconds)`` outside the lock instead of waiting on
            the internal condition (tests pass one that advances a fake clock).
        wall_clock: epoch seconds, to read an ``X-RateLimit-Reset`` given as a timestamp.
        max_pause_s: cap of any server-imposed pause (default: twice the window).
    """

    def __init__(
        self,
        limit: int,
        window_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] | None = None,
        wall_clock: Callable[[], float] = time.time,
        max_pause_s: float | None = None,
    ) -> None:
        if limit < 1:
            raise ValueError(f"rate limit must be at least 1, got {limit}")
        if window_s <= 0:
            raise ValueError(f"rate window must be positive, got {window_s}")
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._sleep = sleep
        self._wall_clock = wall_clock
        self._max_pause_s = max_pause_s if max_pause_s is not None else 2 * window_s
        self._starts: deque[float] = deque()
        self._paused_until = 0.0
        self._cond = threading.Condition()
        self._waiters: list[tuple[int, int]] = []  # heap of (-priority, ticket)
        self._tickets = itertools.count()

    @property
    def paused_until(self) -> float:
        """Clock value before which no request may start (0 when not paused)."""
        with self._cond:
            return self._paused_until

    def in_window(self) -> int:
        """How many requests started within the current window."""
        with self._cond:
            self._prune(self._clock())
            return len(self._starts)

    def _prune(self, now: float) -> None:
        horizon = now - self.window_s
        while self._starts and self._starts[0] <= horizon:
            self._starts.popleft()

    def _wait_s(self, now: float) -> float:
        """Seconds until a slot frees up (0 when one is free now); call with the lock held."""
        self._prune(now)
        wait = max(0.0, self._paused_until - now)
        if len(self._starts) >= self.limit:
            wait = max(wait, self._starts[len(self._starts) - self.limit] + self.window_s - now)
        return wait

    def acquire(self, priority: int = 0) -> float:
        """Block until this request may start, then count it; return the seconds waited."""
        entry = (-priority, next(self._tickets))
        started = self._clock()
        with self._cond:
            heapq.heappush(self._waiters, entry)
            try:
                while True:
                    now = self._clock()
                    head = self._waiters[0] == entry
                    wait = self._wait_s(now)
                    if head and wait <= 0:
                        heapq.heappop(self._waiters)
                        self._starts.append(now)
                        self._cond.notify_all()
                        return now - started
                    if not head:
                        # Someone more urgent is ahead; they notify when they take their slot.
                        self._cond.wait(timeout=max(wait, 0.05) if self._sleep is None else 0.05)
                    elif self._sleep is None:
                        self._cond.wait(timeout=wait)
                    else:
                        self._cond.release()
                        try:
                            self._sleep(wait)
                        finally:
                            self._cond.acquire()
            except BaseException:
                if entry in self._waiters:
                    self._waiters.remove(entry)
                    heapq.heapify(self._waiters)
                    self._cond.notify_all()
                raise

    def pause(self, seconds: float, *, reason: str = "") -> None:
        """Stop every caller from starting a request for ``seconds`` (capped at ``max_pause_s``)."""
        seconds = min(max(0.0, seconds), self._max_pause_s)
        with self._cond:
            until = self._clock() + seconds
            if until > self._paused_until:
                self._paused_until = until
                _log.info("factus_rate_pause", seconds=round(seconds, 3), reason=reason)
            self._cond.notify_all()

    def observe(self, headers: Mapping[str, str], status_code: int | None = None) -> float | None:
        """Read the rate-limit headers of a response and pause everyone when the server asks.

        ``Retry-After`` is honoured on 429 and 503 (or whenever ``status_code`` is not given);
        ``X-RateLimit-Remaining: 0`` with ``X-RateLimit-Reset`` (seconds, or an epoch timestamp)
        pauses until the reset. Returns the ``Retry-After`` seconds when there was one.
        """
        retry_after: float | None = None
        if status_code in (None, 429, 503):
            retry_after = parse_retry_after(_header(headers, "retry-after"), now_epoch=self._wall_clock())
            if retry_after is not None:
                self.pause(retry_after, reason=f"retry-after on {status_code}")
        remaining = _as_float(_header(headers, "x-ratelimit-remaining"))
        if remaining is not None and remaining <= 0:
            reset = _as_float(_header(headers, "x-ratelimit-reset"))
            if reset is not None:
                seconds = reset - self._wall_clock() if reset > _EPOCH_THRESHOLD else reset
                self.pause(seconds, reason="x-ratelimit-remaining is 0")
        return retry_after


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        # Plain dicts are case-sensitive; httpx.Headers is not.
        lowered = {k.lower(): v for k, v in headers.items()}
        value = lowered.get(name)
    return value


def _as_float(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return number if number == number else None

"""Retry policy for idempotent Factus calls: capped exponential backoff with full jitter.

Only :class:`~daemon.errors.TransientError` is retried. A ``Retry-After`` the server sent is honoured
as the delay; one longer than ``max_s`` is not waited for in-process: the error is raised with its
``retry_after_s`` so the caller can schedule the work later instead of blocking a worker.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import TypeVar

import structlog

from daemon.errors import TransientError

__all__ = ["RetryPolicy", "call_with_retries", "parse_retry_after"]

T = TypeVar("T")
_log = structlog.get_logger(__name__)


def parse_retry_after(value: str | None, *, now_epoch: float | None = None) -> float | None:
    """Parse a ``Retry-After`` header (delta seconds or an HTTP date) into seconds from now.

    >>> parse_retry_after("3"), parse_retry_after(" 1.5 "), parse_retry_after("soon")
    (3.0, 1.5, None)
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when.timestamp() - (time.time() if now_epoch is None else now_epoch)
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how long to wait before retrying a transient failure.

    Attributes:
        max_retries: retries after the first attempt (0 = never retry).
        base_s: the backoff ceiling of the first retry; it doubles on each later retry.
        max_s: cap of any single wait, including a server ``Retry-After``.
    """

    max_retries: int = 4
    base_s: float = 0.5
    max_s: float = 30.0
    rng: random.Random = field(default_factory=random.Random, compare=False)

    def delay_s(self, retry: int, retry_after_s: float | None = None) -> float | None:
        """Seconds to wait before retry number ``retry`` (0-based), or None to give up now.

        Full jitter: uniform in ``[0, min(max_s, base_s * 2**retry)]``. A server ``Retry-After`` wins
        over the jitter; one longer than ``max_s`` means "give up now and come back later".
        """
        if retry_after_s is not None:
            return retry_after_s if retry_after_s <= self.max_s else None
        ceiling = min(self.max_s, self.base_s * (2 ** min(retry, 30)))
        return self.rng.uniform(0.0, max(0.0, ceiling))


def call_with_retries(
    fn: Callable[[int], T],
    *,
    policy: RetryPolicy,
    sleep: Callable[[float], None],
    what: str,
) -> T:
    """Call ``fn(attempt)`` until it succeeds, retrying :class:`TransientError` per ``policy``.

    Args:
        fn: the operation; receives the 0-based attempt number (for logging).
        policy: retry limits and backoff.
        sleep: how to wait (injected in tests).
        what: short operation name for the log (``GET /v1/bills``), never a secret.

    Raises:
        TransientError: the last transient failure once retries are exhausted or the server asked
            for a wait longer than ``policy.max_s``.
    """
    attempt = 0
    while True:
        try:
            return fn(attempt)
        except TransientError as exc:
            if attempt >= policy.max_retries:
                raise
            delay = policy.delay_s(attempt, exc.retry_after_s)
            if delay is None:
                raise
            _log.info(
                "factus_retry",
                operation=what,
                attempt=attempt,
                status=exc.status_code,
                delay_s=round(delay, 3),
                error=exc.message,
            )
            if delay > 0:
                sleep(delay)
            attempt += 1

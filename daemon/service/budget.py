"""The daemon's request budget: the client's sliding-window limiter, tuned for sustained batches.

Two adjustments to :class:`daemon.factus.ratelimit.RateLimiter`, both about running at the limit for
long stretches without 429s and without idling:

* the window is padded a little (``max(30 ms, 0.1 %)``): the server counts a request when it
  arrives, after network and scheduling jitter, so a request sent exactly one window after another
  could land in the server's previous window;
* ``X-RateLimit-Remaining: 0`` is honoured only when our own count disagrees (another client shares
  the account's budget). When our count agrees, the sliding window already waits exactly until a
  slot frees, and pausing until the integer-second ``X-RateLimit-Reset`` would idle for up to one
  more second per window. ``Retry-After`` on 429/503 is always honoured.
"""

from __future__ import annotations

from collections.abc import Mapping

from daemon.factus.ratelimit import RateLimiter

__all__ = ["ServiceRateLimiter", "window_padding_s"]

_RATE_HEADERS = ("x-ratelimit-remaining", "x-ratelimit-reset")


def window_padding_s(window_s: float) -> float:
    """Extra seconds added to the limiter window (30 ms, or 0.1 % of long windows)."""
    return max(0.03, window_s * 0.001)


class ServiceRateLimiter(RateLimiter):
    """:class:`RateLimiter` with a padded window and a smarter reading of the rate headers.

    Args:
        limit: requests allowed per window (the server's figure).
        window_s: the server's window length.
    """

    def __init__(self, limit: int, window_s: float) -> None:
        super().__init__(limit, window_s + window_padding_s(window_s))

    def observe(self, headers: Mapping[str, str], status_code: int | None = None) -> float | None:
        """Honour ``Retry-After``; honour ``Remaining: 0`` only when someone else spends our budget."""
        lowered = {str(k).lower(): v for k, v in headers.items()}
        remaining = lowered.get("x-ratelimit-remaining")
        try:
            exhausted = remaining is not None and float(remaining) <= 0
        except ValueError:
            exhausted = False
        if exhausted and self.in_window() >= self.limit - 2:
            lowered = {k: v for k, v in lowered.items() if k not in _RATE_HEADERS}
        return super().observe(lowered, status_code)

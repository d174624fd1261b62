"""RateLimiter (sliding window, priorities, server pauses) and the retry policy, with injected clocks."""

from __future__ import annotations

import random
import threading
import time

import pytest

from daemon.errors import TransientError
from daemon.factus.ratelimit import RateLimiter
from daemon.factus.retry import RetryPolicy, call_with_retries, parse_retry_after


class FakeClock:
    """A monotonic clock that only moves when someone sleeps on it."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def make_limiter(limit: int = 3, window_s: float = 10.0) -> tuple[RateLimiter, FakeClock]:
    clock = FakeClock()
    return RateLimiter(limit, window_s, clock=clock, sleep=clock.sleep, wall_clock=lambda: 0.0), clock


class TestRateLimiter:
    def test_allows_limit_within_window_then_waits(self) -> None:
        """The (limit+1)-th request waits until the oldest one leaves the sliding window."""
        limiter, clock = make_limiter(3, 10.0)
        for _ in range(3):
            assert limiter.acquire() == 0
            clock.now += 1
        waited = limiter.acquire()
        assert waited == pytest.approx(7.0)
        assert clock.now == pytest.approx(1010.0)
        assert limiter.in_window() == 3

    def test_window_slides(self) -> None:
        """Requests older than the window no longer count."""
        limiter, clock = make_limiter(2, 5.0)
        limiter.acquire()
        limiter.acquire()
        clock.now += 5.01
        assert limiter.acquire() == 0
        assert limiter.in_window() == 1

    def test_retry_after_on_429_pauses_everyone(self) -> None:
        """A 429 with Retry-After blocks the next request for that many seconds."""
        limiter, _clock = make_limiter(80, 60.0)
        limiter.acquire()
        assert limiter.observe({"Retry-After": "4"}, 429) == 4.0
        assert limiter.acquire() == pytest.approx(4.0)

    def test_retry_after_ignored_on_success(self) -> None:
        """Retry-After on a 200 does not pause (only 429/503 carry that meaning)."""
        limiter, _clock = make_limiter()
        limiter.observe({"Retry-After": "30"}, 200)
        assert limiter.acquire() == 0

    def test_remaining_zero_pauses_until_reset_seconds(self) -> None:
        """X-RateLimit-Remaining 0 with a relative X-RateLimit-Reset pauses until the reset."""
        limiter, _clock = make_limiter()
        limiter.observe({"x-ratelimit-remaining": "0", "x-ratelimit-reset": "3"}, 200)
        assert limiter.acquire() == pytest.approx(3.0)

    def test_remaining_zero_pauses_until_reset_epoch(self) -> None:
        """An epoch X-RateLimit-Reset is converted with the wall clock."""
        clock = FakeClock()
        limiter = RateLimiter(5, 60, clock=clock, sleep=clock.sleep, wall_clock=lambda: 1_700_000_000.0)
        limiter.observe({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1700000002"}, 200)
        assert limiter.acquire() == pytest.approx(2.0)

    def test_pause_is_capped(self) -> None:
        """A silly Retry-After cannot block the process longer than max_pause_s."""
        clock = FakeClock()
        limiter = RateLimiter(5, 10, clock=clock, sleep=clock.sleep, max_pause_s=7)
        limiter.observe({"Retry-After": "86400"}, 429)
        assert limiter.acquire() == pytest.approx(7.0)

    def test_invalid_arguments(self) -> None:
        """A zero limit or window is refused."""
        with pytest.raises(ValueError, match="at least 1"):
            RateLimiter(0, 1)
        with pytest.raises(ValueError, match="positive"):
            RateLimiter(1, 0)

    def test_higher_priority_waiter_goes_first(self) -> None:
        """When the budget is exhausted a later high-priority caller overtakes an earlier low one."""
        limiter = RateLimiter(1, 0.25)
        limiter.acquire()
        order: list[str] = []

        def take(name: str, priority: int) -> None:
            limiter.acquire(priority)
            order.append(name)

        low = threading.Thread(target=take, args=("download", 0))
        high = threading.Thread(target=take, args=("validate", 10))
        low.start()
        time.sleep(0.05)
        high.start()
        low.join(timeout=5)
        high.join(timeout=5)
        assert order == ["validate", "download"]

    def test_threads_never_exceed_the_budget(self) -> None:
        """Concurrent callers never start more than `limit` requests in any window."""
        limiter = RateLimiter(5, 0.2)
        starts: list[float] = []
        lock = threading.Lock()

        def worker() -> None:
            for _ in range(3):
                limiter.acquire()
                with lock:
                    starts.append(time.monotonic())

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=10)
        starts.sort()
        assert len(starts) == 12
        for i in range(len(starts) - 5):
            assert starts[i + 5] - starts[i] >= 0.2 - 0.01


class TestRetry:
    def test_parse_retry_after(self) -> None:
        """Retry-After is read as seconds or as an HTTP date; garbage is ignored."""
        assert parse_retry_after("7") == 7.0
        assert parse_retry_after("-3") == 0.0
        assert parse_retry_after("") is None
        assert parse_retry_after(None) is None
        assert parse_retry_after("later") is None
        assert parse_retry_after("Thu, 01 Jan 1970 00:00:10 GMT", now_epoch=4.0) == pytest.approx(6.0)

    def test_full_jitter_is_capped(self) -> None:
        """Backoff is uniform in [0, min(max, base * 2**n)]."""
        policy = RetryPolicy(10, 0.5, 3.0, random.Random(1))
        for n in range(10):
            for _ in range(50):
                d = policy.delay_s(n)
                assert d is not None
                assert 0 <= d <= min(3.0, 0.5 * 2**n)

    def test_retry_after_wins_and_long_ones_give_up(self) -> None:
        """A server Retry-After is the delay; one beyond the cap means give up now."""
        policy = RetryPolicy(3, 0.5, 10.0)
        assert policy.delay_s(0, 4.0) == 4.0
        assert policy.delay_s(0, 11.0) is None

    def test_call_with_retries_retries_transient_only(self) -> None:
        """Transient errors are retried max_retries times, then the last one is raised."""
        slept: list[float] = []
        attempts: list[int] = []

        def fn(attempt: int) -> str:
            attempts.append(attempt)
            raise TransientError("boom", status_code=503)

        with pytest.raises(TransientError):
            call_with_retries(fn, policy=RetryPolicy(2, 0.01, 0.05), sleep=slept.append, what="GET /x")
        assert attempts == [0, 1, 2]
        assert len(slept) == 2

    def test_call_with_retries_gives_up_on_long_retry_after(self) -> None:
        """A Retry-After longer than the cap is raised at once for the caller to schedule."""
        calls: list[int] = []

        def fn(attempt: int) -> str:
            calls.append(attempt)
            raise TransientError("busy", status_code=429, retry_after_s=120)

        with pytest.raises(TransientError) as info:
            call_with_retries(fn, policy=RetryPolicy(4, 0.01, 30), sleep=lambda s: None, what="GET /x")
        assert calls == [0]
        assert info.value.retry_after_s == 120

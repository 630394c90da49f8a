"""The run's pacer: concurrency cap, AIMD on 429, pauses for Retry-After and exhausted budgets,
and even spacing at the rate a server announces (fake clock, no real sleeping)."""

from __future__ import annotations

import asyncio
import itertools

from migrate.retry import RateSignal
from migrate.throttle import Throttle


class FakeTime:
    """A clock that only moves when the throttle sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        """Current fake time."""
        return self.now

    async def sleep(self, seconds: float) -> None:
        """Advance the clock instead of waiting."""
        self.sleeps.append(seconds)
        self.now += seconds


def test_rate_signal_reads_standard_headers() -> None:
    """RateLimit-* headers, both Retry-After forms and a w= window are read."""
    signal = RateSignal.from_response(
        200,
        {
            "RateLimit-Limit": "50",
            "RateLimit-Remaining": "7",
            "RateLimit-Reset": "1",
            "RateLimit-Policy": "50;w=2",
        },
    )
    assert (signal.limit, signal.remaining, signal.reset_s, signal.window_s) == (50, 7, 1.0, 2.0)
    limited = RateSignal.from_response(429, {"Retry-After": "3"})
    assert limited.rate_limited and limited.retry_after == 3.0


def test_announced_rate_spaces_request_starts() -> None:
    """After the server announces 50 per 1 s, starts are ~20 ms apart (a 2% margin)."""
    fake = FakeTime()

    async def run() -> list[float]:
        throttle = Throttle(16, clock=fake.clock, sleep=fake.sleep)
        await throttle.acquire()
        throttle.release(RateSignal(limit=50, reset_s=1.0, remaining=49))
        starts = []
        for _ in range(5):
            await throttle.acquire()
            starts.append(fake.now)
            throttle.release(RateSignal())
        return starts

    starts = asyncio.run(run())
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert all(abs(gap - 0.0204) < 1e-6 for gap in gaps), gaps


def test_429_halves_the_limit_and_pauses_for_retry_after() -> None:
    """A 429 halves the concurrency ceiling and pauses new starts for Retry-After seconds."""
    fake = FakeTime()

    async def run() -> Throttle:
        throttle = Throttle(8, clock=fake.clock, sleep=fake.sleep)
        await throttle.acquire()
        throttle.release(RateSignal(rate_limited=True, retry_after=2.5))
        await throttle.acquire()
        return throttle

    throttle = asyncio.run(run())
    assert throttle.limit == 4.0
    assert fake.sleeps == [2.5]


def test_in_flight_never_exceeds_the_ceiling() -> None:
    """With 50 concurrent users of an 8-slot throttle, at most 8 hold a slot at once."""

    async def run() -> int:
        throttle = Throttle(8)

        async def user() -> None:
            await throttle.acquire()
            await asyncio.sleep(0)  # yield: the other users try to acquire meanwhile
            throttle.release(RateSignal())

        await asyncio.gather(*(user() for _ in range(50)))
        return throttle.peak_in_flight

    assert asyncio.run(run()) == 8

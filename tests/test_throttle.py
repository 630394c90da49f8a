"""The run's pacer: concurrency cap, AIMD on 429, pauses for Retry-After and exhausted budgets,
and even spacing at the rate a server announces (fake clock, no real sleeping)."""

from __future__ import annotations

import asyncio
import itertools
import math

import httpx
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from migrate.retry import RateSignal
from migrate.sandbox.faults import RateLimiter, RateMode
from migrate.throttle import RateLearner, Throttle


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


def test_rate_signal_reads_http_headers_in_any_case_and_repeated() -> None:
    """Read from an answer's headers, names match in any case and a repeated header reads as
    its values joined (as httpx joins them); an answer without any yields the empty signal."""
    headers = httpx.Headers(
        [
            ("x-ratelimit-remaining", "garbage"),
            ("X-RATELIMIT-REMAINING", "4"),
            ("ratelimit-policy", "10;w=5"),
            ("Retry-After", "2"),
            ("X-Other", "1"),
        ]
    )
    signal = RateSignal.from_response(429, headers)
    assert (signal.remaining, signal.limit, signal.window_s, signal.retry_after) == (
        None,  # "garbage, 4": its first value is not a number, as before
        10,
        5.0,
        2.0,
    )
    assert signal.announced == (
        "Retry-After: 2; RateLimit-Policy: 10;w=5; X-RateLimit-Remaining: garbage, 4"
    )
    plain = httpx.Headers({"Content-Type": "application/json", "Content-Length": "2"})
    assert RateSignal.from_response(200, plain) == RateSignal()
    assert RateSignal.from_response(429, plain) == RateSignal(rate_limited=True)


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


# --- a limit the server never announces --------------------------------------------------------


def _run_against_limiter(
    mode: RateMode, limit: int, window: float, successes: int
) -> tuple[int, float]:
    """Sequential requests (1 ms each, so the limit binds) through a throttle against the
    sandbox's limiter with no rate headers, on one fake clock: (429s answered, seconds until
    `successes` succeeded)."""
    fake = FakeTime()
    limiter = RateLimiter(clock=fake.clock)

    async def run() -> int:
        throttle = Throttle(16, clock=fake.clock, sleep=fake.sleep)
        done = refused = 0
        while done < successes:
            await throttle.acquire()
            decision = limiter.check(
                "client", limit, window, http_date=False, mode=mode, headers="none"
            )
            fake.now += 0.001
            status = 200 if decision.allowed else 429
            throttle.release(RateSignal.from_response(status, decision.headers))
            done += decision.allowed
            refused += not decision.allowed
        return refused

    refused = asyncio.run(run())
    return refused, fake.now


@pytest.mark.parametrize("mode", ["window", "bucket"])
@pytest.mark.parametrize(("limit", "window"), [(50, 1.0), (20, 2.0), (500, 120.0)])
def test_unannounced_limit_is_learned_from_429s(mode: RateMode, limit: int, window: float) -> None:
    """With only Retry-After on 429s, at most 5% of requests are refused and the run takes at
    most 1.15x the time the limit itself imposes (requests / R), for a fixed window and a token
    bucket."""
    successes = 6 * limit
    refused, elapsed = _run_against_limiter(mode, limit, window, successes)
    floor = successes / (limit / window)
    assert refused <= 0.05 * (successes + refused), refused
    assert elapsed <= 1.15 * floor, (elapsed, floor)


def test_429_without_retry_after_pauses_doubling_while_nothing_is_learned() -> None:
    """Bare 429s (no Retry-After, nothing learned yet) pause 1 s, then 2 s: a wait that
    doubles while the server keeps refusing."""
    fake = FakeTime()

    async def run() -> None:
        throttle = Throttle(4, clock=fake.clock, sleep=fake.sleep)
        for _ in range(3):
            await throttle.acquire()
            throttle.release(RateSignal(rate_limited=True))

    asyncio.run(run())
    assert fake.sleeps == [1.0, 2.0]


@pytest.mark.parametrize("retry_after", [None, 1.0])
def test_429_under_an_announced_window_still_holds_new_starts(retry_after: float | None) -> None:
    """A server that states its window (limit 50 per 10 s) and still answers 429, bare or with
    Retry-After: 1: new starts wait (a tenth of the stated window) instead of going on at once."""
    fake = FakeTime()

    async def run() -> None:
        throttle = Throttle(4, clock=fake.clock, sleep=fake.sleep)
        await throttle.acquire()
        throttle.release(RateSignal(limit=50, reset_s=10.0, remaining=49, window_s=10.0))
        await throttle.acquire()
        throttle.release(RateSignal(rate_limited=True, retry_after=retry_after))
        fake.sleeps.clear()
        before = fake.now
        await throttle.acquire()
        assert fake.now - before >= 1.0

    asyncio.run(run())


@pytest.mark.parametrize("late", [0.001, 0.015])
def test_late_wakeups_do_not_slow_the_announced_rate(late: float) -> None:
    """A sleep that wakes late every time (1 ms; 15 ms, as a loop busy parsing an answer
    does, three quarters of the 20 ms spacing) still yields starts at the announced rate on
    average (the slot, not the late wake-up, is the next start's reference)."""
    fake = FakeTime()

    async def late_sleep(seconds: float) -> None:
        await fake.sleep(seconds + late)

    async def run() -> list[float]:
        throttle = Throttle(16, clock=fake.clock, sleep=late_sleep)
        await throttle.acquire()
        throttle.release(RateSignal(limit=50, reset_s=1.0, remaining=49, window_s=1.0))
        starts = []
        for _ in range(101):
            await throttle.acquire()
            starts.append(fake.now)
            throttle.release(RateSignal())
        return starts

    starts = asyncio.run(run())
    assert (starts[-1] - starts[0]) / 100 < 0.0204 * 1.01


def test_a_probe_that_runs_the_server_out_returns_to_the_last_good_pace() -> None:
    """After a first learned pace, most of a budget of successes probes 12% faster; the server
    running out (`remaining: 0`) at the probe returns to the pace before it, and probing
    becomes rarer."""
    learner = RateLearner()
    limited = RateSignal(rate_limited=True, retry_after=1.0)
    t = 0.0
    for _ in range(10):  # a first budget of 10
        learner.observe(t, t, RateSignal(), oldest_in_flight=t)
        t += 0.01
    learner.observe(t, t, limited, oldest_in_flight=t)
    t = 1.0
    learner.observe(t, t, RateSignal(), oldest_in_flight=t)  # back after the pause
    learned = learner.interval
    assert learned == pytest.approx(1.02 / 10)  # 10 admitted, back 1 s after the first
    while learner.interval == learned:
        t += learned
        learner.observe(t, t, RateSignal(), oldest_in_flight=t)
    assert learner.interval == pytest.approx(learned * 0.88)
    t += learner.interval
    learner.observe(t, t, RateSignal(remaining=0), oldest_in_flight=t)
    assert learner.interval == learned
    assert learner._probe_every == 2


def test_a_burst_of_429s_halves_the_limit_once() -> None:
    """Eight requests in flight all answered 429 (one burst) halve the limit once, not eight
    times: the pause they share is one signal."""
    fake = FakeTime()

    async def run() -> Throttle:
        throttle = Throttle(16, clock=fake.clock, sleep=fake.sleep)
        for _ in range(8):
            await throttle.acquire()
        for _ in range(8):
            throttle.release(RateSignal(rate_limited=True, retry_after=1.0))
        return throttle

    assert asyncio.run(run()).limit == 8.0


def test_once_a_pace_is_learned_a_rounded_up_retry_after_neither_idles_nor_halves() -> None:
    """After the rate is learned, a 429 with `Retry-After: 1` (whole seconds, rounded up)
    holds starts for a tenth of a budget's time, not a second, and keeps the concurrency."""
    fake = FakeTime()
    limited = RateSignal(rate_limited=True, retry_after=1.0)

    async def run() -> Throttle:
        throttle = Throttle(8, clock=fake.clock, sleep=fake.sleep)
        for _ in range(10):  # a first budget of 10, then the server runs out
            await throttle.acquire()
            throttle.release(RateSignal())
        await throttle.acquire()
        throttle.release(limited)
        await throttle.acquire()  # waits the first Retry-After in full: nothing learned yet
        throttle.release(RateSignal())  # back: 10 per ~1 s learned
        fake.sleeps.clear()
        await throttle.acquire()
        throttle.release(limited)
        await throttle.acquire()
        throttle.release(RateSignal())
        return throttle

    throttle = asyncio.run(run())
    assert throttle.limit >= 4.0  # halved once, for the first 429 only
    assert max(fake.sleeps) < 0.2, fake.sleeps


def test_a_429_is_retried_through_the_throttle_once_a_pace_is_known() -> None:
    """Before any pace is known a 429's retry is the client's to wait (its Retry-After);
    once the server states a window, or a pace is learned, the client waits 0 and the
    throttle's own pause holds the retry with every other start."""
    fake = FakeTime()

    async def stated() -> tuple[float | None, float | None]:
        throttle = Throttle(4, clock=fake.clock, sleep=fake.sleep)
        before = throttle.retry_after_429()
        await throttle.acquire()
        throttle.release(RateSignal(limit=50, remaining=10, reset_s=1.0, window_s=1.0))
        return before, throttle.retry_after_429()

    async def learned() -> tuple[float | None, float | None]:
        throttle = Throttle(8, clock=fake.clock, sleep=fake.sleep)
        for _ in range(10):  # a first budget of 10, then the server runs out
            await throttle.acquire()
            throttle.release(RateSignal())
        await throttle.acquire()
        throttle.release(RateSignal(rate_limited=True, retry_after=1.0))
        before = throttle.retry_after_429()
        await throttle.acquire()
        throttle.release(RateSignal())  # back: a pace is learned
        return before, throttle.retry_after_429()

    assert asyncio.run(stated()) == (None, 0.0)
    assert asyncio.run(learned()) == (None, 0.0)


def _refused_with_late_wakeups(limit: int, lateness: list[float]) -> int:
    """Sequential requests against the sandbox's fixed window (`limit` per 1 s, draft6 headers
    stating the window) through a throttle whose sleeps wake late by `lateness` in turn (a
    fraction of the spacing each, then on time): the number of 429s."""
    fake = FakeTime()
    limiter = RateLimiter(clock=fake.clock)
    interval = 1.02 / limit
    wakes = iter(lateness)

    async def late_sleep(seconds: float) -> None:
        await fake.sleep(seconds + next(wakes, 0.0) * interval)

    async def run() -> int:
        throttle = Throttle(16, clock=fake.clock, sleep=late_sleep)
        refused = 0
        for _ in range(3 * limit):
            await throttle.acquire()
            decision = limiter.check("client", limit, 1.0, http_date=False, headers="draft6")
            refused += not decision.allowed
            status = 200 if decision.allowed else 429
            throttle.release(RateSignal.from_response(status, decision.headers))
        return refused

    return asyncio.run(run())


@settings(max_examples=60, deadline=None)
@example(limit=10, lateness=[0.0] * 8 + [0.9])
@given(
    limit=st.integers(min_value=2, max_value=50),
    lateness=st.lists(st.floats(min_value=0.0, max_value=1.0), max_size=60),
)
def test_late_wakeups_never_overrun_an_announced_fixed_window(
    limit: int, lateness: list[float]
) -> None:
    """However late the loop wakes, the starts spaced for a stated fixed window never put more
    than its limit into one window: a made-up late start must not bunch with the next slots."""
    assert _refused_with_late_wakeups(limit, lateness) == 0


def test_a_pace_learned_from_429s_makes_up_no_late_start() -> None:
    """Once a pace is learned from 429s (no window known), a start that woke late by half the
    spacing is not made up: the next start keeps the whole spacing after it. Making it up let
    the catch-up starts run a fixed window out, and the 429s that followed taught the learner
    half the rate (the benchmark's header-less window took 1.6x requests / R)."""
    fake = FakeTime()
    late = {"by": 0.0}

    async def sleep(seconds: float) -> None:
        await fake.sleep(seconds + late["by"])

    async def run() -> tuple[float, list[float]]:
        throttle = Throttle(8, clock=fake.clock, sleep=sleep)
        for _ in range(10):  # a first budget of 10, then the server runs out
            await throttle.acquire()
            throttle.release(RateSignal())
        await throttle.acquire()
        throttle.release(RateSignal(rate_limited=True, retry_after=1.0))
        await throttle.acquire()
        throttle.release(RateSignal())  # back: a pace is learned
        starts: list[float] = []
        for n in range(4):
            # The third start wakes late by half the spacing the first two kept.
            late["by"] = (starts[1] - starts[0]) / 2 if n == 2 else 0.0
            await throttle.acquire()
            starts.append(fake.now)
            throttle.release(RateSignal())
        return starts[1] - starts[0], starts

    interval, starts = asyncio.run(run())
    assert interval > 0
    assert starts[3] - starts[2] >= interval * 0.999, (interval, starts)


def test_window_cycles_split_by_an_idle_spell_keep_the_measured_window() -> None:
    """A legacy fixed window's cycle measured once at 1 s, then once across 100 s of idling,
    leaves no cycle within 1.5x of their median: the learner keeps the 1 s window instead of
    raising (StatisticsError from the mean of no cycle)."""
    learner = RateLearner()
    limit = 4

    def one_window(opened: float) -> None:
        for n in range(limit):
            started = opened + 0.1 * n
            answer = RateSignal(limit=limit, remaining=limit - 1 - n, reset_s=opened + 1 - started)
            learner.observe(started, started, answer, oldest_in_flight=started)

    one_window(0.0)
    one_window(1.0)  # the first cycle: 1 s
    one_window(101.0)  # the second: 100 s, idle between
    assert learner.window == pytest.approx(1.0)
    assert learner.interval == pytest.approx(1.01 / limit)


def _bucket_openers(learner: RateLearner, opened: float, limit: int) -> None:
    """What a token bucket answers in legacy form when drained a little, then left to refill:
    `remaining = limit - 1` twice, a fraction of a second apart, under one whole-second reset."""
    reset_at = math.floor(opened) + 1.0
    times = [opened + 0.01 * n for n in range(limit // 4 + 1)]
    for n, started in enumerate(times):
        answer = RateSignal(limit=limit, remaining=limit - 1 - n, reset_s=reset_at - started)
        learner.observe(started, started, answer, oldest_in_flight=started)
    refilled = opened + 0.3
    answer = RateSignal(limit=limit, remaining=limit - 1, reset_s=reset_at - refilled)
    learner.observe(refilled, refilled, answer, oldest_in_flight=refilled)


def test_a_429_under_a_measured_window_refutes_it() -> None:
    """Openers of a refilled token bucket read as a 0.3 s window; the second 429 at its pace
    within a limit of successes drops that window for good, and the spacing falls back to the
    stated limit over the longest reset seen instead of 50 requests per 0.3 s."""
    learner = RateLearner()
    limit = 50
    _bucket_openers(learner, 0.0, limit)
    assert learner.window == pytest.approx(0.3)  # the false window the 429s must undo
    refused = RateSignal(rate_limited=True, limit=limit, remaining=0, reset_s=0.5)
    learner.observe(0.5, 0.5, refused, oldest_in_flight=0.5)
    assert learner.window == pytest.approx(0.3)  # one 429 may be the network's jitter
    learner.observe(0.52, 0.52, refused, oldest_in_flight=0.52)
    assert learner.window == 0.0
    assert learner.interval >= 1.02 * 0.7 / limit  # the longest reset seen: 0.7 s for 50
    _bucket_openers(learner, 2.0, limit)
    assert learner.window == 0.0  # openers are not believed again


def test_a_budget_learned_from_a_slow_start_is_capped_by_the_stated_limit() -> None:
    """300 requests admitted before a bucket of 50 first ran out make a budget of 50, not 300:
    the pause after a 429 at the learned pace is a tenth of 50 spacings."""
    learner = RateLearner()
    limit = 50
    for n in range(300):
        started = 0.03 * n
        answer = RateSignal(limit=limit, remaining=10, reset_s=0.5)
        learner.observe(started, started, answer, oldest_in_flight=started)
    refused = RateSignal(rate_limited=True, limit=limit, remaining=0, reset_s=0.5)
    learner.observe(9.0, 9.0, refused, oldest_in_flight=9.0)
    back = RateSignal(limit=limit, remaining=5, reset_s=0.5)
    learner.observe(9.1, 9.1, back, oldest_in_flight=9.1)
    assert learner.interval > 0
    assert learner.tail_pause() == pytest.approx(0.1 * limit * learner.interval)


def test_a_429_without_the_limiters_headers_keeps_a_measured_window() -> None:
    """A measured window survives any number of 429s that carry no rate-limit header (a
    proxy's, not the limiter's), and a limiter 429 a window's limit of successes after another."""
    learner = RateLearner()
    limit = 50
    _bucket_openers(learner, 0.0, limit)
    for at in (0.5, 0.51, 0.52):
        learner.observe(at, at, RateSignal(rate_limited=True), oldest_in_flight=at)
    assert learner.window == pytest.approx(0.3)
    refused = RateSignal(rate_limited=True, limit=limit, remaining=0, reset_s=0.5)
    learner.observe(0.6, 0.6, refused, oldest_in_flight=0.6)
    for n in range(limit + 1):
        started = 0.7 + 0.03 * n
        answer = RateSignal(limit=limit, remaining=10, reset_s=0.5)
        learner.observe(started, started, answer, oldest_in_flight=started)
    learner.observe(3.0, 3.0, refused, oldest_in_flight=3.0)
    assert learner.window == pytest.approx(0.3)

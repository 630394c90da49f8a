"""Request pacing shared by every request of a run: a concurrency cap, an optional request-rate
cap, and back-off that adapts to 429s.

- At most `limit` requests are in flight. `limit` starts at the configured concurrency, halves on
  every 429 (not below 1) and grows back by one per `limit` successes (AIMD, as TCP does).
- `max_rps` spaces request starts at least `1 / max_rps` apart.
- A `Retry-After` pauses every new request until it has passed, so one 429 does not become a
  storm of them. When the server says its budget is spent (remaining 0) with a reset time,
  requests pause until the reset before any 429 happens. Once a pace is learned (below), a
  whole-second `Retry-After` is waited less its last second (it is rounded up), a bare 429
  holds starts for a tenth of a learned budget's time, and neither halves the concurrency:
  waiting out a rounded-up second per window would idle up to half the run. The request
  answered 429 then waits in that pause too, not its own Retry-After (`retry_after_429`; the
  client does so for a call's first retry).
- When the server announces its budget with a window (`w=`), request starts are spread evenly
  at just under that rate, so a fixed window is never overrun in a burst.
- When it does not, `RateLearner` learns the rate from what the server shows: the requests it
  admitted between the points where it ran out of budget (a 429 or `remaining: 0`) or came
  back, and, for the legacy form's exact epoch reset, the cycle between each window's first
  request (`remaining = limit - 1`); never from a whole-second reset alone. A bare 429 before
  anything is learned waits 1 s, doubling while the 429s go on.
- No server-announced wait or spacing is longer than `max_wait_s` (--max-wait): a longer one is
  not waited at all — the throttle stops the run with `AnnouncedWaitError` (exit 5), which every
  later `acquire` raises and `raise_if_stopped` re-raises for the runner.
- `close` (the first Ctrl-C or SIGTERM) ends every wait at once; only requests in flight finish.
"""

from __future__ import annotations

import asyncio
import bisect
import math
import statistics
import time
from collections import deque
from collections.abc import Awaitable, Callable
from contextvars import ContextVar

from migrate.errors import AnnouncedWaitError, RunInterruptedError
from migrate.retry import Pacer, RateSignal, announced_wait_error

DEFAULT_MAX_WAIT_S = 300.0
# A learned spacing is probed 3% faster after a learned budget of successes without the server
# running out (about one of its windows); each probe that runs it out makes probing 2x rarer.
_PROBE_STEP = 0.97
_PROBE_BACKOFF = 2
_MARGIN = 1.02  # spacing 2% above the learned rate's absorbs clock skew and jitter
_CYCLE_MARGIN = 1.01  # over a window measured from its openers (the cycle holds the gaps)
_HISTORY = 4096  # admitted request starts kept for counting
_ANCHORS = 16  # saturation points kept per kind
_STARTED: ContextVar[float | None] = ContextVar("migrate_request_started", default=None)


class Throttle(Pacer):
    """The pacer of one run; safe to share between the source and the target client."""

    def __init__(
        self,
        concurrency: int,
        *,
        max_rps: float | None = None,
        max_wait_s: float = DEFAULT_MAX_WAIT_S,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if max_rps is not None and not (math.isfinite(max_rps) and max_rps > 0):
            raise ValueError(f"max_rps must be a finite number above 0, not {max_rps}")
        if not (math.isfinite(max_wait_s) and max_wait_s >= 0):
            raise ValueError(f"max_wait_s must be a finite number of seconds, not {max_wait_s}")
        self.ceiling = max(1, concurrency)
        self.limit = float(self.ceiling)
        self.max_rps = max_rps
        self.max_wait_s = max_wait_s
        self.in_flight = 0
        self.peak_in_flight = 0
        self.rate_limited = 0
        self.requests = 0
        self._clock = clock
        self._sleep = sleep
        self._last_start = float("-inf")
        self._paused_until = 0.0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._budget: int | None = None
        self._window = 0.0
        self._server_interval = 0.0
        self.closed = False
        self.stopped: AnnouncedWaitError | None = None
        self._woken: asyncio.Event | None = None
        self._budget_reset_at = 0.0
        self._budget_announced = ""
        self._learner = RateLearner()
        self._starts: list[float] = []  # start times of the requests in flight, sorted
        self._refused_in_row = 0  # pauses for 429s since the last success

    async def acquire(self) -> None:
        """Wait for a free slot, then for the rate cap and any server-requested pause.

        Raises RunInterruptedError once `close` was called, and AnnouncedWaitError once the
        server announced a wait beyond `max_wait_s`.
        """
        while self.in_flight >= int(self.limit):
            self._refuse_if_closed()
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter
        self._refuse_if_closed()
        self.in_flight += 1
        self.requests += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            if self._budget is not None and not self._learner.interval:
                if self._budget <= 0 and self._budget_reset_at > self._clock():
                    wait = self._budget_reset_at - self._clock()
                    if wait > self.max_wait_s:
                        self._stop(
                            announced_wait_error(
                                f"that its rate-limit budget is spent ({self._budget_announced})",
                                wait,
                                self.max_wait_s,
                            )
                        )
                        self._refuse_if_closed()
                    self._paused_until = max(self._paused_until, self._budget_reset_at)
                    self._budget = None  # a new window: unknown until the next answer says
                else:
                    self._budget -= 1
            # Spacing is enforced when a request actually starts, not when it was scheduled: if
            # the event loop was busy, late wakers re-wait instead of leaving in a burst.
            while True:
                self._refuse_if_closed()
                now = self._clock()
                interval = max(1.0 / self.max_rps if self.max_rps else 0.0, self._pace())
                start = max(now, self._paused_until, self._last_start + interval)
                if start <= now:
                    break
                await self.sleep(start - now)
        except BaseException:
            self._free_slot()
            raise
        # The slot this start was spaced for, not the moment the loop woke: a loop busy for a
        # few ms with an answer (parsing 100 KB) wakes that late, which would otherwise slow the
        # whole run by as much (5% at 50/s). Up to one interval is made up (less under a stated
        # window, below); after a pause or idle time the spacing starts from now.
        slot = self._last_start + interval
        # A start made up by d shares a window of W s with the next W / interval slots: only
        # the spacing's margin over a known window, (margin - 1) * W, can be made up without a
        # window's limit + 1 starts (a 429) - a whole interval could at 50 per 1 s or less. A
        # pace learned from 429s knows no window: making up more than a sliver of it ran the
        # server out, and the 429s that followed taught the learner half the rate.
        made_up = 0.1 * interval
        if self._server_interval:
            made_up = min(interval, 0.999 * (_MARGIN - 1) * self._window)
        elif self._learner.window:
            made_up = min(interval, 0.999 * (_CYCLE_MARGIN - 1) * self._learner.window)
        self._last_start = slot if now - slot <= made_up else now
        # The learner reads each answer against the time its request started; the client
        # acquires and releases in one task, so the task's context carries that time across.
        _STARTED.set(now)
        bisect.insort(self._starts, now)

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds`, or less: `close` and a stop end every wait at once."""
        if self.closed or seconds <= 0:
            return
        if self._woken is None:
            self._woken = asyncio.Event()
        woken = asyncio.ensure_future(self._woken.wait())
        slept = asyncio.ensure_future(self._sleep(seconds))
        try:
            await asyncio.wait((woken, slept), return_when=asyncio.FIRST_COMPLETED)
        finally:
            woken.cancel()
            slept.cancel()

    def close(self) -> None:
        """Refuse every request that has not started yet (interrupts) and end every wait;
        in-flight ones finish."""
        self.closed = True
        if self._woken is not None:
            self._woken.set()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    def raise_if_stopped(self) -> None:
        """Re-raise the AnnouncedWaitError that stopped the run, if one did."""
        if self.stopped is not None:
            raise self._fresh_stop(self.stopped)

    def release(self, signal: RateSignal) -> None:
        """Free the slot and adapt: learn from the answer, shrink and pause after a 429 (less
        once a pace is learned), grow after a success, and pause before the server's announced
        budget runs out."""
        self._free_slot()
        now = self._clock()
        started = _STARTED.get()
        if started is None:
            started = now
        else:
            _STARTED.set(None)
            index = bisect.bisect_left(self._starts, started)
            if index < len(self._starts) and self._starts[index] == started:
                del self._starts[index]
        learned = bool(self._learner.interval)
        if not self._server_interval:
            self._learner.observe(
                started, now, signal, oldest_in_flight=self._starts[0] if self._starts else now
            )
        if signal.rate_limited:
            self.rate_limited += 1
            if now >= self._paused_until:
                self._refused_in_row += 1  # once per pause, as the halving below
            if now >= self._paused_until and not (learned or self._server_interval):
                # Once per pause: the other requests of the same burst answer 429 too, and
                # halving for each would leave one request in flight after one burst. Once a
                # pace is learned the pace, not the concurrency, keeps the rate.
                self.limit = max(1.0, self.limit / 2)
            announced = signal.retry_after
            if announced is not None and announced > self.max_wait_s:
                self._stop(
                    announced_wait_error(
                        f"HTTP 429 with {signal.announced or 'Retry-After'}",
                        announced,
                        self.max_wait_s,
                    )
                )
                return
            self._paused_until = max(self._paused_until, now + self._pause_after_429(announced))
            self._budget = None
            self._stop_if_too_slow()
            return
        self._refused_in_row = 0
        self.limit = min(float(self.ceiling), self.limit + 1.0 / self.limit)
        if signal.limit and (signal.window_s or signal.reset_s):
            # Without a stated window the reset stands in for it here: a limit whose spacing
            # alone is beyond --max-wait stops the run, named (the learner paces otherwise).
            window = max(self._window, signal.window_s or signal.reset_s or 0.0)
            # A 2% margin absorbs clock skew between our spacing and the server's windows.
            interval = _MARGIN * window / signal.limit
            if interval > self.max_wait_s:
                self._stop(
                    announced_wait_error(
                        f"a rate limit of {signal.limit} requests per {window:g} s"
                        f" ({signal.announced})",
                        interval,
                        self.max_wait_s,
                    )
                )
                return
            if signal.window_s:
                self._window = window
                self._server_interval = interval
        if self._server_interval:
            # Even spacing already keeps each window under its budget; pausing until a
            # whole-second Reset on top of it would idle up to a second per window.
            self._budget = None
        elif signal.remaining is not None and signal.reset_s is not None:
            # Requests already in flight will spend part of what the server says is left.
            self._budget = signal.remaining - self.in_flight
            self._budget_reset_at = now + signal.reset_s
            self._budget_announced = signal.announced
        self._stop_if_too_slow()

    def retry_after_429(self) -> float | None:
        """0 once a pace is known (stated or learned): the pause `release` set after the 429
        holds the retry in `acquire` with every other start, while a whole-second Retry-After
        waited by the request itself would hold it up to a second longer (and every request
        that waits for it, as imports wait for the last export)."""
        return 0.0 if self._pace() else None

    def _pace(self) -> float:
        """Seconds between starts: the server's stated window per request, else the learned
        pace (0 while neither is known)."""
        return self._server_interval or self._learner.interval

    def _pause_after_429(self, retry_after: float | None) -> float:
        """Seconds no request starts after a 429 (module docstring)."""
        if self._pace():
            # Sending on at the pace would be refused until the budget returns: a tenth of a
            # budget's time (the stated window, or the learned one) bounds those 429s and
            # idles little.
            tail = 0.1 * self._window if self._server_interval else self._learner.tail_pause()
            if retry_after is None:
                return tail
            if retry_after >= 1 and retry_after == math.floor(retry_after):
                # Whole seconds, rounded up: the budget may return up to a second earlier,
                # and the learned pace, not a second of idling, keeps the next window.
                return max(tail, retry_after - 1)
            return retry_after
        if retry_after is not None:
            return retry_after
        # Nothing says when the budget returns: wait 1 s, doubling while the 429s go on.
        return min(self.max_wait_s, 2.0 ** min(self._refused_in_row - 1, 30))

    def _stop_if_too_slow(self) -> None:
        """Stop when the pace the 429s imply is slower than --max-wait allows."""
        interval = self._learner.interval
        if interval > self.max_wait_s:
            self._stop(
                announced_wait_error(
                    f"by its 429s a rate limit of one request per {interval:g} s",
                    interval,
                    self.max_wait_s,
                )
            )

    def _free_slot(self) -> None:
        self.in_flight -= 1
        free = int(self.limit) - self.in_flight
        while free > 0 and self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                free -= 1

    def _stop(self, error: AnnouncedWaitError) -> None:
        """Stop the run: no request starts any more, every wait ends, `error` says why."""
        if self.stopped is None:
            self.stopped = error
        self.close()

    def _refuse_if_closed(self) -> None:
        if self.stopped is not None:
            raise self._fresh_stop(self.stopped)
        if self.closed:
            raise RunInterruptedError("interrupted: no new request starts")

    @staticmethod
    def _fresh_stop(error: AnnouncedWaitError) -> AnnouncedWaitError:
        # One instance per raise: callers annotate errors (attempts) as they pass through.
        return AnnouncedWaitError(error.message, hint=error.hint)


class RateLearner:
    """The request rate a server sustains, learned from its answers when it does not announce
    its window (module docstring). Pure: every time is passed in.

    - Saturation points: the server is out of budget when it answers 429 or `remaining: 0`.
      The start of the first such answer after a success (an onset) and of the first success
      after one (a recovery) are points where a token bucket is empty and a fixed window just
      filled or just opened. Between two points of one kind the server admitted exactly what it
      sustains in that time (within one request), whatever its model and phase, so the
      requests admitted between the oldest and the newest kept point, over the time between
      them, is the rate; periods when we sent less than it only make that figure lower.
    - Windows: when answers carry a limit, `remaining` and an absolute reset (the legacy
      epoch form), the first request of each window answers `remaining = limit - 1` and every
      answer in one window names the same reset; the time between such openers is the
      window's cycle, measured without a single 429. Two of the limiter's 429s (nothing
      remaining) within a window's limit of successes, paced under a measured window, refute
      it for the rest of the run: a token bucket refilled between our requests mimics openers.
    - Probing: after a budget of successes (what was admitted before the server first ran
      out) without running it out, the spacing is tried 3% shorter; a probe that runs it out
      returns to the spacing that did not, and probing becomes rarer.
    """

    def __init__(self) -> None:
        self.interval = 0.0  # seconds between request starts; 0 while nothing is learned
        self.window = 0.0  # a fixed window's length, once measured from its openers
        self._admitted: list[float] = []  # start times of admitted requests, sorted
        self._saturated_at = -math.inf  # start of the latest out-of-budget answer
        self._recovered_at = -math.inf  # start of the first success after it
        self._anchors: dict[str, deque[float]] = {
            "onset": deque(maxlen=_ANCHORS),
            "recovery": deque(maxlen=_ANCHORS),
        }
        self._pending: set[str] = set()  # kinds whose newest point awaits earlier answers
        self._rates: dict[str, float] = {}
        self._budget: int | None = None  # admitted before the server first ran out
        self._quiet = 0  # successes since the server last ran out
        self._good = 0.0  # the shortest spacing that ran a budget without running it out
        self._probed = False
        self._probe_every = 1
        self._probe_gain = 1
        self._refused_in_row = 0
        self._first_start: float | None = None
        self._first_onset = math.inf
        self._provisional = 0.0  # from a limit and the longest reset, until something better
        # Windows seen through openers.
        self._opener_at = -math.inf
        self._window_reset_at = 0.0
        self._window_steady = False
        self._window_count = 0
        self._cycles: deque[float] = deque(maxlen=8)
        self._limit = 0
        self._refuted = False  # 429s under a measured window: the openers were no window's
        self._announced_limit = 0  # the largest limit an answer stated (caps the budget)
        self._successes = 0  # admitted answers seen
        self._strike: int | None = None  # `_successes` at the latest 429 under a window

    def observe(
        self, started: float, now: float, signal: RateSignal, *, oldest_in_flight: float
    ) -> None:
        """Learn from one answer: its request started at `started`, it arrived at `now`, and
        no request still unanswered started before `oldest_in_flight`."""
        admitted = not signal.rate_limited
        if self._first_start is None or started < self._first_start:
            self._first_start = started
        if signal.limit:
            self._announced_limit = max(self._announced_limit, signal.limit)
        if signal.rate_limited and self._cycles and signal.limit and signal.remaining == 0:
            # Only the limiter's own refusals (its headers: nothing remaining) refute the window;
            # a 429 without them (a proxy's) says nothing about its cycle. And two of them
            # within a window's limit of successes: jitter in the network carries one request
            # of a window now and then into the one before (the margin is 1% of it).
            if self._strike is not None and self._successes - self._strike <= self._limit:
                self._refute_window()
            self._strike = self._successes
        if admitted:
            self._successes += 1
            bisect.insort(self._admitted, started)
            if len(self._admitted) > _HISTORY:
                del self._admitted[: len(self._admitted) - _HISTORY]
        if signal.rate_limited or signal.remaining == 0:
            self._saturated(started)
        elif self._recovered_at < self._saturated_at < started:
            self._recovered(started)
        elif self.interval and (self._budget or signal.limit):
            self._quiet += 1
            if 4 * self._quiet >= 3 * self._probe_every * (self._budget or signal.limit or 1):
                self._probe()
        if signal.rate_limited:
            self._refused_in_row += 1
            if self.interval and self._refused_in_row >= max(3, (self._budget or 0) // 2):
                # Refused for half a budget in a row at the learned pace: it is far too fast.
                self.interval *= 1.5
                self._good = 0.0
                self._refused_in_row = 0
        else:
            self._refused_in_row = 0
        self._observe_window(started, now, signal)
        for kind in list(self._pending):
            if self._anchors[kind][-1] <= oldest_in_flight:
                self._pending.discard(kind)
                self._estimate(kind)

    def tail_pause(self) -> float:
        """Seconds to hold new starts after a 429 at the learned pace: a tenth of the time a
        budget takes at it."""
        return 0.1 * (self._budget or 1) * self.interval

    def _refute_window(self) -> None:
        """Forget the measured window: paced under it, the server still refused. A token
        bucket the client drains more slowly than it refills answers `remaining = limit - 1`
        again and again with one whole-second reset, which reads as a window's openers a
        fraction of a second apart, and pacing at that "window" overruns the bucket. The 429s,
        not the openers, tell the rate from here on."""
        self._refuted = True
        self._cycles.clear()
        self.window = 0.0
        self.interval = max(self._provisional, self._good)
        self._update()

    def _budget_of(self, admitted: int) -> int:
        """`admitted` before the server ran out, as a budget: never above a stated limit (a
        bucket refilling while we sent slowly admits far more than one budget before then)."""
        budget = max(1, admitted)
        return min(budget, self._announced_limit) if self._announced_limit else budget

    def _saturated(self, started: float) -> None:
        """The server ran out of budget for the request that started at `started`."""
        if self._budget is None:
            self._budget = self._budget_of(len(self._admitted))
            self._first_onset = started
        if self._saturated_at <= self._recovered_at < started:
            self._add_anchor("onset", started)
        self._saturated_at = max(self._saturated_at, started)
        self._quiet = 0
        if self._probed:
            # The probe ran the server out: back to the spacing that did not.
            self._probed = False
            self._probe_every *= _PROBE_BACKOFF
            self._probe_gain = 1
            self.interval = self._good

    def _recovered(self, started: float) -> None:
        """The first success after the server ran out started at `started`."""
        if self._recovered_at == -math.inf and self._first_start is not None:
            # The server's budget came back by now: what it admitted before running out,
            # over the time since the first request, is a first (low) figure for its rate.
            before = bisect.bisect_right(self._admitted, self._first_onset)
            self._budget = self._budget_of(before)
            self._rates["first"] = max(1, before) / max(1e-3, started - self._first_start)
            self._update()
        if started - self._saturated_at <= 2 * self.interval:
            self._add_anchor("recovery", started)
        else:
            # After a pause a bucket has refilled and a window may have opened long
            # before: not a point where the budget just came back.
            self._anchors["recovery"].clear()
            self._pending.discard("recovery")
        self._recovered_at = started

    def _probe(self) -> None:
        """Try a shorter spacing after a budget of successes without running the server out."""
        if self._cycles:
            return  # measured windows need no probing
        # Points from before a stretch the server bore would count its idle capacity as
        # unused rate: measure afresh from the next saturation on.
        for anchors in self._anchors.values():
            anchors.clear()
        self._pending.clear()
        # Each probe in a row that the server bears is twice as bold (3%, 6%, 12%); while
        # only the first, low figure is known, probing starts at 12%.
        if set(self._rates) <= {"first"}:
            self._probe_gain = 4
        self._good = self.interval
        self.interval *= 1 - (1 - _PROBE_STEP) * self._probe_gain
        self._probe_gain = min(4, 2 * self._probe_gain)
        self._probed = True
        self._quiet = 0

    def _add_anchor(self, kind: str, at: float) -> None:
        self._anchors[kind].append(at)
        self._pending.add(kind)  # counted once every request started before it has answered

    def _estimate(self, kind: str) -> None:
        anchors = self._anchors[kind]
        if len(anchors) < 2:
            return
        first, last = anchors[0], anchors[-1]
        admitted = bisect.bisect_left(self._admitted, last) - bisect.bisect_left(
            self._admitted, first
        )
        if admitted >= 2 and last > first:
            self._rates[kind] = admitted / (last - first)
            self._update()

    def _observe_window(self, started: float, now: float, signal: RateSignal) -> None:
        """Measure a fixed window's cycle from its openers (class docstring)."""
        limit, remaining, reset_s = signal.limit, signal.remaining, signal.reset_s
        if signal.rate_limited or limit is None or remaining is None or reset_s is None:
            return
        if not self._cycles and not self._rates:
            # Until something is measured: the limit per the longest reset seen, which is at
            # least the window (a whole-second reset rounds it up, never down).
            provisional = _MARGIN * reset_s / limit
            if provisional > self._provisional:
                self._provisional = self.interval = provisional
        if self._refuted or limit == 1 or started < self._opener_at:
            # Refuted: no more openers are believed. One request per window shows no opener
            # apart; an earlier start belongs to an earlier window.
            return
        reset_at = now + reset_s
        if remaining == limit - 1:
            if self._window_steady and self._window_count >= max(3, limit // 4):
                self._limit = limit
                self._cycles.append(started - self._opener_at)
                self._update()
            self._opener_at = started
            self._window_reset_at = reset_at
            self._window_steady = True
            self._window_count = 1
            return
        self._window_count += 1
        # A window's answers name one reset time (a bucket's creeps on); a delta in whole
        # seconds wobbles by one, which rules out the legacy form's exact epoch only.
        if abs(reset_at - self._window_reset_at) > 0.05:
            self._window_steady = False

    def _update(self) -> None:
        """Space starts at the rate the latest observations support."""
        # Saturation points of both kinds measure the rate; the first figure is only a
        # stopgap until they do (a token bucket's burst makes it far too high).
        measured = [rate for kind, rate in self._rates.items() if kind != "first"]
        rates = [statistics.fmean(measured)] if measured else list(self._rates.values())
        candidates = [_MARGIN / rate for rate in rates if rate > 0]
        if self._cycles:
            middle = statistics.median(self._cycles)
            steady = [c for c in self._cycles if middle / 1.5 <= c <= middle * 1.5]
            # Cycles in two groups far apart (an idle spell lengthens one; an even count puts
            # the median between them) agree on none: the window measured before stands until
            # one group holds the majority. A single cycle is always steady, so one exists.
            if steady:
                self.window = statistics.fmean(steady)
            # The cycle already holds the gap before each window's first request: 1% is margin
            # enough.
            candidates.append(_CYCLE_MARGIN * self.window / self._limit)
        if not candidates:
            return
        self.interval = min(candidates)
        self._probed = False

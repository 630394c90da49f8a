"""Request pacing shared by every request of a run: a concurrency cap, an optional request-rate
cap, and back-off that adapts to 429s.

- At most `limit` requests are in flight. `limit` starts at the configured concurrency, halves on
  every 429 (not below 1) and grows back by one per `limit` successes (AIMD, as TCP does).
- `max_rps` spaces request starts at least `1 / max_rps` apart.
- A `Retry-After` pauses every new request until it has passed, so one 429 does not become a
  storm of them. When the server says its budget is spent (remaining 0) with a reset time,
  requests pause until the reset before any 429 happens.
- When the server announces its budget (a limit per window; the window from a `w=` policy
  parameter, else the longest reset seen), request starts are spread evenly at just under that
  rate, so a fixed window is never overrun in a burst.
- When it announces nothing, the budget is learned from how the 429s fall: a 429 with
  `Retry-After: T` at time t says the server's window (or bucket) admits the next request at
  t + T, so the requests it admitted since the previous such point (or since the first request)
  are what it allows per that span. Starts are then spread at just under that rate; each later
  429 re-learns it (never faster than the pace that earned it), and a learned budget of
  successes without one speeds up by 3% (additive increase, as AIMD probes; each probe that
  earns a 429 makes probing 4x rarer). Without `Retry-After`, a 429 doubles the spacing.
- No server-announced wait or spacing is longer than `max_wait_s` (--max-wait): a longer one is
  not waited at all — the throttle stops the run with `AnnouncedWaitError` (exit 5), which every
  later `acquire` raises and `raise_if_stopped` re-raises for the runner.
- `close` (the first Ctrl-C or SIGTERM) ends every wait at once; only requests in flight finish.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable

from migrate.errors import AnnouncedWaitError, RunInterruptedError
from migrate.retry import Pacer, RateSignal, announced_wait_error

DEFAULT_MAX_WAIT_S = 300.0
# A learned spacing is probed 3% faster after two learned budgets of successes without a 429
# (about two of the server's windows); each probe that earns a 429 makes probing 4x rarer.
_PROBE_STEP = 0.97
_PROBE_BACKOFF = 4


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
        # Learning a limit the server does not announce (module docstring).
        self._learned_interval = 0.0
        self._learn_since: float | None = None  # when the span being counted began
        self._admitted = 0  # successes since `_learn_since`
        self._since_429 = 0  # successes since the last 429 or probe, for the additive probe
        self._learned_budget = 0  # successes per span at the last 429
        self._probe_every = 2  # budgets of successes between probes
        self._probed = False  # the spacing was probed faster since the last 429
        self._before_probe = 0.0  # the spacing before that probe

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
            if self._budget is not None:
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
                interval = max(
                    1.0 / self.max_rps if self.max_rps else 0.0,
                    self._server_interval or self._learned_interval,
                )
                start = max(now, self._paused_until, self._last_start + interval)
                if start <= now:
                    break
                await self.sleep(start - now)
        except BaseException:
            self._free_slot()
            raise
        # The slot this start was spaced for, not the moment the loop woke: waking ~1 ms late
        # per request would otherwise slow the whole run by that much (5% at 50/s). Only such
        # a slight delay is made up; after a pause or idle time the spacing starts from now.
        slot = self._last_start + interval
        self._last_start = slot if now - slot <= 0.1 * interval else now
        if self._learn_since is None:
            self._learn_since = now

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
        """Free the slot and adapt: shrink and pause after a 429, grow after a success, and
        pause before the server's announced budget runs out."""
        self._free_slot()
        now = self._clock()
        if signal.rate_limited:
            self.rate_limited += 1
            if now >= self._paused_until:
                # Once per pause: the other requests of the same burst answer 429 too, and
                # halving for each would leave one request in flight after one burst.
                self.limit = max(1.0, self.limit / 2)
            wait = 1.0 if signal.retry_after is None else signal.retry_after
            if wait > self.max_wait_s:
                self._stop(
                    announced_wait_error(
                        f"HTTP 429 with {signal.announced or 'Retry-After'}", wait, self.max_wait_s
                    )
                )
                return
            self._paused_until = max(self._paused_until, now + wait)
            self._budget = None
            if not self._server_interval:
                self._learn_from_429(now, signal.retry_after)
        else:
            if self._learn_since is None or now >= self._learn_since:
                self._admitted += 1  # not one admitted before the point a 429 set
            self._since_429 += 1
            if (
                self._learned_interval
                and self._since_429 > self._probe_every * self._learned_budget
            ):
                self._before_probe = self._learned_interval
                self._learned_interval *= _PROBE_STEP
                self._since_429 = 0
                self._probed = True
            self.limit = min(float(self.ceiling), self.limit + 1.0 / self.limit)
            if signal.limit and (signal.window_s or signal.reset_s):
                window = max(self._window, signal.window_s or signal.reset_s or 0.0)
                # A 2% margin absorbs clock skew between our spacing and the server's windows.
                interval = 1.02 * window / signal.limit
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

    def _learn_from_429(self, now: float, retry_after: float | None) -> None:
        """Spread starts at the rate the 429s imply (module docstring); never faster than the
        spacing that just earned this 429."""
        self._since_429 = 0
        if self._probed:
            # The last probe overshot: back to the last pace that earned no 429 (a better
            # figure than a span ending in a whole-second Retry-After), and probe less often.
            self._probe_every *= _PROBE_BACKOFF
            self._probed = False
            self._learned_interval = self._before_probe
            self._learn_since = now + (retry_after or 0.0)
            self._admitted = 0
            return
        if retry_after is None:
            # Nothing says when the budget returns: back off multiplicatively instead.
            self._learned_interval = max(2 * self._learned_interval, 0.01)
            return
        admits_at = now + retry_after
        if self._learn_since is not None and self._admitted > 0:
            span = admits_at - self._learn_since
            # 2% under the observed rate absorbs clock skew, as for an announced limit. A 429
            # while pacing means that pace was too fast: never faster than it, a step slower.
            estimate = 1.02 * span / self._admitted
            self._learned_interval = max(estimate, 1.02 * self._learned_interval)
            self._learned_budget = self._admitted
        self._learn_since = admits_at
        self._admitted = 0
        if self._learned_interval > self.max_wait_s:
            self._stop(
                announced_wait_error(
                    f"by its 429s a rate limit of one request per {self._learned_interval:g} s",
                    self._learned_interval,
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

"""Request pacing shared by every request of a run: a concurrency cap, an optional request-rate
cap, and back-off that adapts to 429s.

- At most `limit` requests are in flight. `limit` starts at the configured concurrency, halves on
  every 429 (not below 1) and grows back by one per `limit` successes (AIMD, as TCP does).
- `max_rps` spaces request starts at least `1 / max_rps` apart.
- A `Retry-After` pauses every new request until it has passed, so one 429 does not become a
  storm of them. When the server sends `RateLimit-Remaining: 0` with a reset time, requests
  pause until the reset before any 429 happens.
- When the server announces its budget (`RateLimit-Limit` per window; the window from a
  `w=` policy parameter, else the longest `RateLimit-Reset` seen), request starts are spread
  evenly at just under that rate, so a fixed window is never overrun in a burst.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable

from migrate.errors import RunInterruptedError
from migrate.retry import Pacer, RateSignal


class Throttle(Pacer):
    """The pacer of one run; safe to share between the source and the target client."""

    def __init__(
        self,
        concurrency: int,
        *,
        max_rps: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.ceiling = max(1, concurrency)
        self.limit = float(self.ceiling)
        self.max_rps = max_rps
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
        self._budget_reset_at = 0.0

    async def acquire(self) -> None:
        """Wait for a free slot, then for the rate cap and any server-requested pause."""
        while self.in_flight >= int(self.limit):
            if self.closed:
                raise RunInterruptedError("interrupted: no new request starts")
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter
        if self.closed:
            raise RunInterruptedError("interrupted: no new request starts")
        self.in_flight += 1
        self.requests += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        if self._budget is not None:
            if self._budget <= 0 and self._budget_reset_at > self._clock():
                self._paused_until = max(self._paused_until, self._budget_reset_at)
                self._budget = None  # a new window: unknown until the next answer says
            else:
                self._budget -= 1
        # Spacing is enforced when a request actually starts, not when it was scheduled: if the
        # event loop was busy, late wakers re-wait instead of leaving together in a burst.
        while True:
            now = self._clock()
            interval = max(1.0 / self.max_rps if self.max_rps else 0.0, self._server_interval)
            start = max(now, self._paused_until, self._last_start + interval)
            if start <= now:
                break
            await self._sleep(start - now)
        self._last_start = now

    def close(self) -> None:
        """Refuse every request that has not started yet (interrupts); in-flight ones finish."""
        self.closed = True
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    def release(self, signal: RateSignal) -> None:
        """Free the slot and adapt: shrink and pause after a 429, grow after a success, and
        pause before the server's announced budget runs out."""
        self.in_flight -= 1
        now = self._clock()
        if signal.rate_limited:
            self.rate_limited += 1
            self.limit = max(1.0, self.limit / 2)
            self._paused_until = max(self._paused_until, now + (signal.retry_after or 1.0))
            self._budget = None
        else:
            self.limit = min(float(self.ceiling), self.limit + 1.0 / self.limit)
            if signal.limit and (signal.window_s or signal.reset_s):
                self._window = max(self._window, signal.window_s or signal.reset_s or 0.0)
                # A 2% margin absorbs clock skew between our spacing and the server's windows.
                self._server_interval = 1.02 * self._window / signal.limit
            if self._server_interval:
                # Even spacing already keeps each window under its budget; pausing until a
                # whole-second Reset on top of it would idle up to a second per window.
                self._budget = None
            elif signal.remaining is not None and signal.reset_s is not None:
                # Requests already in flight will spend part of what the server says is left.
                self._budget = signal.remaining - self.in_flight
                self._budget_reset_at = now + signal.reset_s
        free = int(self.limit) - self.in_flight
        while free > 0 and self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                free -= 1

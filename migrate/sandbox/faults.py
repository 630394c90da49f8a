"""Fault injection: the runtime knobs, the fixed-window rate limiter, and the dropped connection.

Order per request (applied by the app's middleware): rate limit -> latency -> fail_rate (a 5xx
before anything is done) -> handler -> for committed imports, drop_rate (commit, then cut).
Every random draw comes from one `random.Random(random_seed)`, so a seeded sandbox injects the
same faults for the same sequence of requests.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

FAIL_STATUSES: tuple[int, ...] = (500, 502, 503)


class ConnectionDropped(Exception):  # public name fixed by the project's contract
    """Raised by the app after an import committed, to simulate a connection cut mid-response."""


@dataclass
class Faults:
    """Fault knobs, settable at runtime (`sandbox.faults.fail_rate = 0.5`) from any thread."""

    latency_ms: float = 0
    fail_rate: float = 0.0
    drop_rate: float = 0.0
    rate_limit: tuple[int, float] | None = None
    retry_after_http_date: bool = False
    fail_statuses: tuple[int, ...] = FAIL_STATUSES
    random_seed: int | None = None
    _rng: random.Random = field(init=False, repr=False)
    _lock: threading.Lock = field(init=False, repr=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.random_seed)  # noqa: S311  # fault dice, not crypto

    def reseed(self, seed: int | None) -> None:
        """Restart the dice, e.g. between phases of a test."""
        with self._lock:
            self.random_seed = seed
            self._rng = random.Random(seed)  # noqa: S311

    def draw_failure(self) -> int | None:
        """The 5xx status to answer with, or None when this request goes through."""
        with self._lock:
            if self.fail_rate <= 0 or self._rng.random() >= self.fail_rate:
                return None
            return self._rng.choice(self.fail_statuses)

    def draw_drop(self) -> bool:
        """True when this committed write should lose its response."""
        with self._lock:
            return self.drop_rate > 0 and self._rng.random() < self.drop_rate


@dataclass(frozen=True)
class RateDecision:
    """Outcome of one rate-limit check; `headers` go on the response either way."""

    allowed: bool
    headers: dict[str, str]


class RateLimiter:
    """Per-client fixed windows of `limit` requests per `window` seconds.

    A window opens at a client's first request and lasts `window` seconds; every request counts,
    refused ones included (as express-rate-limit does). Headers follow the IETF draft that
    express-rate-limit's `standardHeaders` sends: RateLimit-Limit, -Remaining, -Reset (seconds).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._windows: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def reset(self) -> None:
        """Forget every window."""
        with self._lock:
            self._windows.clear()

    def check(self, client: str, limit: int, window: float, *, http_date: bool) -> RateDecision:
        """Count one request from `client` and say whether it may proceed."""
        now = self._clock()
        with self._lock:
            opened, count = self._windows.get(client, (now, 0))
            if now - opened >= window:
                opened, count = now, 0
            count += 1
            self._windows[client] = (opened, count)
        remaining_s = max(0.0, opened + window - now)
        # Retry-After is whole seconds by RFC 9110; rounding up never invites an early retry.
        reset_s = math.ceil(remaining_s)
        headers = {
            "RateLimit-Limit": str(limit),
            "RateLimit-Remaining": str(max(0, limit - count)),
            "RateLimit-Reset": str(reset_s),
        }
        if count <= limit:
            return RateDecision(True, headers)
        if http_date:
            # An HTTP-date has one-second resolution: round up so it never lies early.
            when = datetime.now(UTC) + timedelta(seconds=remaining_s)
            when = when.replace(microsecond=0) + timedelta(seconds=1 if when.microsecond else 0)
            headers["Retry-After"] = format_datetime(when, usegmt=True)
        else:
            headers["Retry-After"] = str(reset_s)
        return RateDecision(False, headers)

"""Fault injection: the runtime knobs, the rate limiter, and the dropped connection.

Order per request (applied by the app's middleware): rate limit -> latency -> fail_rate (a 5xx
before anything is done) -> endless listing pages -> handler -> for committed imports,
refuse_after_store_rate (commit, then answer 400) or drop_rate (commit, then cut); the body then
goes out at `slow_body_bps` when set. `listing_lag` hides fresh writes from the next N listings.
Every random draw comes from one `random.Random(random_seed)`, so a seeded sandbox injects the
same faults for the same sequence of requests.

The rate limiter counts in fixed windows or as a token bucket (`rate_mode`) and announces its
budget in one of the header forms servers use (`rate_headers`): IETF draft 6
(`RateLimit-Limit/-Remaining/-Reset` + `RateLimit-Policy: N;w=S`), draft 7 (one
`RateLimit: limit=N, remaining=R, reset=T` + `RateLimit-Policy`), legacy (`X-RateLimit-*` with
an epoch reset), or none (only `Retry-After` on a 429). Hostile servers are rehearsed with
`retry_after_s` (what every 429 announces), `rate_header_override` (headers sent verbatim on
every answer, e.g. `RateLimit-Remaining: nan`), `slow_body_bps`, `endless_pages` and
`echo_credentials` (the request's Authorization header echoed into answers).
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
from typing import Literal

FAIL_STATUSES: tuple[int, ...] = (500, 502, 503)

RateHeaders = Literal["none", "draft6", "draft7", "legacy"]
RateMode = Literal["window", "bucket"]
EndlessPages = Literal["off", "endless", "cycle"]
EchoCredentials = Literal["off", "errors", "all"]
ECHO_CREDENTIALS: tuple[EchoCredentials, ...] = ("off", "errors", "all")
RATE_HEADER_FORMS: tuple[RateHeaders, ...] = ("none", "draft6", "draft7", "legacy")
RATE_MODES: tuple[RateMode, ...] = ("window", "bucket")
ENDLESS_PAGES: tuple[EndlessPages, ...] = ("off", "endless", "cycle")


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
    rate_headers: RateHeaders = "draft6"
    rate_mode: RateMode = "window"
    retry_after_s: float | None = None  # every 429 announces this, whatever the limiter says
    rate_header_override: dict[str, str] = field(default_factory=dict)  # sent verbatim
    slow_body_bps: float = 0  # > 0: response bodies go out at this many bytes per second
    endless_pages: EndlessPages = "off"  # listings whose pages never run out, or cycle
    # "errors": the Authorization header in every error body (JSON, and injected 5xx as HTML
    # pages) and in every listed name; "all": in every export's `_meta` too.
    echo_credentials: EchoCredentials = "off"
    fail_statuses: tuple[int, ...] = FAIL_STATUSES
    # A write shows in dashboard listings only after this many further listings (page-1
    # requests) of its workspace began; export by id sees it at once. Deterministic.
    listing_lag: int = 0
    refuse_after_store_rate: float = 0.0  # a committed import answered 400 anyway
    # The next import of each id here is refused (400 INVALID_REQUEST_BODY) and the id dropped,
    # as a server refusing a new version for good; a later import of it goes through.
    refuse_import_ids: set[str] = field(default_factory=set)
    random_seed: int | None = None
    _rng: random.Random = field(init=False, repr=False)
    _listings: dict[str, int] = field(init=False, repr=False, default_factory=dict)
    _visible_from: dict[tuple[str, str], int] = field(init=False, repr=False, default_factory=dict)
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

    def draw_refusal(self) -> bool:
        """True when this committed import should be answered 400 all the same."""
        with self._lock:
            rate = self.refuse_after_store_rate
            return rate > 0 and self._rng.random() < rate

    def note_write(self, workspace: str, dashboard_id: str) -> None:
        """A dashboard was written: hide it from the next `listing_lag` listings."""
        with self._lock:
            if self.listing_lag > 0:
                seen = self._listings.get(workspace, 0)
                self._visible_from[(workspace, dashboard_id)] = seen + self.listing_lag + 1

    def listing_hides(self, workspace: str, *, first_page: bool) -> frozenset[str]:
        """The ids this listing request of `workspace` must not show; a first page begins a
        new listing."""
        with self._lock:
            if first_page:
                self._listings[workspace] = self._listings.get(workspace, 0) + 1
            count = self._listings.get(workspace, 0)
            return frozenset(
                dash_id
                for (space, dash_id), visible in self._visible_from.items()
                if space == workspace and visible > count
            )

    def refuse_import(self, dashboard_id: str) -> bool:
        """True (once per listed id) when this import is to be refused for good."""
        with self._lock:
            if dashboard_id not in self.refuse_import_ids:
                return False
            self.refuse_import_ids.discard(dashboard_id)
            return True

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
    """Per-client rate limits of `limit` requests per `window` seconds.

    `mode="window"`: fixed windows; a window opens at a client's first request and lasts
    `window` seconds; every request counts, refused ones included (as express-rate-limit does).
    `mode="bucket"`: a token bucket of `limit` tokens refilled at `limit / window` per second;
    a refused request takes no token. Headers are in the form `headers` names (module docstring).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._windows: dict[str, tuple[float, int]] = {}
        self._buckets: dict[str, tuple[float, float]] = {}  # client -> (updated at, tokens)
        self._lock = threading.Lock()

    def reset(self) -> None:
        """Forget every window and bucket."""
        with self._lock:
            self._windows.clear()
            self._buckets.clear()

    def check(
        self,
        client: str,
        limit: int,
        window: float,
        *,
        http_date: bool,
        mode: RateMode = "window",
        headers: RateHeaders = "draft6",
        retry_after_s: float | None = None,
    ) -> RateDecision:
        """Count one request from `client` and say whether it may proceed."""
        now = self._clock()
        if mode == "bucket":
            allowed, remaining, reset_s, wait_s = self._take_token(client, limit, window, now)
        else:
            allowed, remaining, reset_s, wait_s = self._count_in_window(client, limit, window, now)
        out = _rate_headers(headers, limit, window, remaining, reset_s)
        if allowed:
            return RateDecision(True, out)
        if retry_after_s is not None:
            out["Retry-After"] = f"{retry_after_s:g}"
        elif http_date:
            # An HTTP-date has one-second resolution: round up so it never lies early.
            when = datetime.now(UTC) + timedelta(seconds=wait_s)
            when = when.replace(microsecond=0) + timedelta(seconds=1 if when.microsecond else 0)
            out["Retry-After"] = format_datetime(when, usegmt=True)
        else:
            # Retry-After is whole seconds by RFC 9110; rounding up never invites an early retry.
            out["Retry-After"] = str(math.ceil(wait_s))
        return RateDecision(False, out)

    def _count_in_window(
        self, client: str, limit: int, window: float, now: float
    ) -> tuple[bool, int, float, float]:
        """(allowed, remaining, seconds to reset, seconds to wait) in a fixed window."""
        with self._lock:
            opened, count = self._windows.get(client, (now, 0))
            if now - opened >= window:
                opened, count = now, 0
            count += 1
            self._windows[client] = (opened, count)
        remaining_s = max(0.0, opened + window - now)
        return count <= limit, max(0, limit - count), remaining_s, remaining_s

    def _take_token(
        self, client: str, limit: int, window: float, now: float
    ) -> tuple[bool, int, float, float]:
        """(allowed, remaining, seconds until full, seconds until a token) in a token bucket."""
        rate = limit / window
        with self._lock:
            updated, tokens = self._buckets.get(client, (now, float(limit)))
            tokens = min(float(limit), tokens + (now - updated) * rate)
            allowed = tokens >= 1.0
            if allowed:
                tokens -= 1.0
            self._buckets[client] = (now, tokens)
        until_full = (limit - tokens) / rate
        until_token = 0.0 if tokens >= 1.0 else (1.0 - tokens) / rate
        return allowed, int(tokens), until_full, until_token


def _rate_headers(
    form: RateHeaders, limit: int, window: float, remaining: int, reset_s: float
) -> dict[str, str]:
    """The rate-limit headers of one answer in the named form (none: no headers)."""
    reset = math.ceil(reset_s)
    policy = f"{limit};w={window:g}"
    if form == "draft6":
        return {
            "RateLimit-Limit": str(limit),
            "RateLimit-Remaining": str(remaining),
            "RateLimit-Reset": str(reset),
            "RateLimit-Policy": policy,
        }
    if form == "draft7":
        return {
            "RateLimit": f"limit={limit}, remaining={remaining}, reset={reset}",
            "RateLimit-Policy": policy,
        }
    if form == "legacy":
        return {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": str(math.ceil(time.time() + reset_s)),
        }
    return {}

"""Retry and rate-limit policy: pure decisions about waiting, shared by the client and the
throttle. No I/O here: the client asks, then sleeps through an injectable `sleep`.

- `RetryPolicy`: capped exponential backoff with full jitter, bounded by attempts and a deadline;
  a `Retry-After` beyond `retry_after_cap_s` (--max-wait) stops the run instead of sleeping.
- `is_retryable`: reads retry on transient failures; a write only when it certainly never landed.
- `RateSignal`: what one answer said about the server's rate limit (429, Retry-After in both
  forms, the standard `RateLimit-*` headers), for `throttle.Throttle` to adapt to.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from migrate.errors import (
    AnnouncedWaitError,
    EndpointError,
    RateLimitedError,
    ServerError,
    TransportError,
)
from migrate.models import Operation

MAX_HEADER_NUMBER = 1e12  # larger is no count or duration a server means: ignored
EPOCH_THRESHOLD = 1_000_000_000  # a reset beyond this (2001-09-09) is an epoch time
_RATE_HEADERS = (
    "Retry-After",
    "RateLimit",
    "RateLimit-Policy",
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
)
_RATE_NAMES = frozenset(name.lower() for name in _RATE_HEADERS)

# Writes whose repetition could do something twice (a second embed, a second delete that now
# fails, a taken name): repeated only when they certainly never reached the server.
UNREPEATABLE_WRITES: frozenset[Operation] = frozenset(
    {"import", "create_embed", "delete_embed", "create_workspace"}
)
# Every write: after a 5xx or a lost answer it may have taken effect.
WRITES: frozenset[Operation] = UNREPEATABLE_WRITES | {
    "update_embed",
    "rename_embed",
    "rebind_filters",
}


@dataclass(frozen=True)
class RetryPolicy:
    """Capped exponential backoff with full jitter, bounded by attempts and by a deadline.

    `retry_after_cap_s` (--max-wait) bounds how long a `Retry-After` may make us wait: beyond it
    the run stops with a clear message rather than sleeping for hours. A wait the server
    announced within that cap is honoured even past `deadline_s`, which bounds our own backoff.
    """

    attempts: int = 6
    deadline_s: float = 180.0
    base_s: float = 0.2
    cap_s: float = 10.0
    retry_after_cap_s: float = 300.0

    def backoff(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait before attempt `attempt + 1` (full jitter)."""
        return float(rand() * min(self.cap_s, self.base_s * (2 ** (attempt - 1))))


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header: delta-seconds or an HTTP-date.

    None for anything unusable (garbage, negative, NaN, infinite, absurdly large); a date in the
    past is 0.
    """
    if not value:
        return None
    value = value.strip()
    try:
        float(value)
    except ValueError:
        pass
    else:
        return _number(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def _number(text: str) -> float | None:
    """A header's number, or None when it is not one a sane server sends."""
    try:
        value = float(text.strip().strip('"'))
    except ValueError:
        return None
    if not math.isfinite(value) or value < 0 or value > MAX_HEADER_NUMBER:
        return None
    return value


def _params(text: str) -> dict[str, str]:
    """`key=value` items of a structured header, split on `,` and `;` (keys lower-cased)."""
    items: dict[str, str] = {}
    for part in re.split(r"[,;]", text):
        key, sep, value = part.partition("=")
        if sep:
            items.setdefault(key.strip().lower(), value.strip())
    return items


def _first(*candidates: str | None) -> float | None:
    """The first candidate that is a usable number."""
    for text in candidates:
        if text is not None and (value := _number(text.split(",")[0].split(";")[0])) is not None:
            return value
    return None


def describe_wait(seconds: float) -> str:
    """`45 s`, `2.5 h`, `1,157 days`: a wait as a person reads it."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:,.0f} days"


def announced_wait_error(announced: str, seconds: float, max_wait_s: float) -> AnnouncedWaitError:
    """The error that stops a run instead of waiting `seconds` because the server said so."""
    return AnnouncedWaitError(
        f"the server announced {announced}, which means waiting {describe_wait(seconds)};"
        f" that is more than --max-wait ({max_wait_s:g} s), so the run stops instead of waiting",
        hint="try again once the server's rate limit has reset, or raise --max-wait if waiting"
        " that long is acceptable",
    )


class Pacer:
    """Hooks every request passes through; this default does nothing (see `throttle`)."""

    async def acquire(self) -> None:
        """Wait until one more request may start."""

    def release(self, signal: RateSignal) -> None:
        """Record how the request ended."""

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds` (a retry's backoff); a pacer may end the wait early on interrupt."""
        await asyncio.sleep(seconds)

    def retry_after_429(self) -> float | None:
        """Seconds a call's first retry after a 429 waits before it is sent, when the pacer
        holds every start for as long as the server needs (the retry then waits in `acquire`);
        None when it does not. Later retries, and every retry when None, wait the announced
        Retry-After or the backoff (a pacer's pause may end before the server's window)."""
        return None


@dataclass(frozen=True)
class RateSignal:
    """What one answer said about the server's rate limit.

    Every value is optional and independent: each header form is read (IETF draft 6
    `RateLimit-Limit/-Remaining/-Reset`, draft 7 `RateLimit: limit=, remaining=, reset=`, later
    drafts `RateLimit: r=, t=` and `RateLimit-Policy: q=, w=`, legacy `X-RateLimit-*` with an
    epoch reset), and a value that is not a sane number is ignored, never an error.
    """

    rate_limited: bool = False
    retry_after: float | None = None  # seconds, from Retry-After
    remaining: int | None = None  # requests left in the current window
    reset_s: float | None = None  # seconds until the window resets
    limit: int | None = None  # requests allowed per window
    window_s: float | None = None  # the window's length, when a policy states it
    announced: str = ""  # the rate-limit headers as sent (shortened), for messages

    @classmethod
    def from_response(
        cls, status: int, headers: Mapping[str, str], *, now: float | None = None
    ) -> RateSignal:
        """Read every rate-limit header form an answer may carry; `now` is the epoch time.

        Header names match in any case; a header sent more than once reads as its values
        joined by ", " (as `httpx.Headers.get` gives them)."""
        found = _rate_headers(headers)
        if not found:  # the usual answer: no rate-limit header at all
            return _NO_SIGNAL[status == 429]
        combined = _params(found.get("ratelimit") or "")
        policy_text = found.get("ratelimit-policy") or ""
        policy = _params(policy_text)
        limit_text = found.get("ratelimit-limit") or ""
        remaining = _first(
            found.get("ratelimit-remaining"),
            found.get("x-ratelimit-remaining"),
            combined.get("remaining"),
            combined.get("r"),
        )
        reset = _first(
            found.get("ratelimit-reset"),
            found.get("x-ratelimit-reset"),
            combined.get("reset"),
            combined.get("t"),
        )
        if reset is not None and reset > EPOCH_THRESHOLD:  # some servers send an epoch time
            reset = max(0.0, reset - (time.time() if now is None else now))
        limit = _first(
            limit_text or None,
            found.get("x-ratelimit-limit"),
            combined.get("limit"),
            policy.get("q"),
            policy_text or None,
        )
        window = _first(policy.get("w"), _params(limit_text).get("w"))
        return cls(
            rate_limited=status == 429,
            retry_after=parse_retry_after(found.get("retry-after"), now=now)
            if status == 429
            else None,
            remaining=int(remaining) if remaining is not None else None,
            reset_s=reset,
            limit=int(limit) if limit is not None and limit >= 1 else None,
            window_s=window or None,
            announced=_announced(found),
        )


_NO_SIGNAL = {False: RateSignal(), True: RateSignal(rate_limited=True)}
"""The signal of an answer without rate-limit headers, by whether it is a 429 (immutable)."""


def _rate_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The rate-limit headers of an answer, keyed by lower-case name, in one pass: an answer
    carries a dozen headers, and looking each known name up costs a scan of them all."""
    found: dict[str, str] = {}
    for name, value in headers.items():
        key = name.lower()
        if key in _RATE_NAMES:
            found[key] = f"{found[key]}, {value}" if key in found else value
    return found


def _announced(found: Mapping[str, str]) -> str:
    """The rate-limit headers of an answer (`_rate_headers`) as one short, printable line."""
    parts = [
        f"{name}: {value}"
        for name in _RATE_HEADERS
        if (value := found.get(name.lower())) is not None
    ]
    text = "; ".join(parts)
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= 200 else text[:197] + "..."


def is_retryable(exc: EndpointError, op: Operation) -> bool:
    """Whether a failed attempt may simply be repeated."""
    if isinstance(exc, AnnouncedWaitError):
        return False  # the run stops: waiting that long was refused
    if isinstance(exc, RateLimitedError):
        return True  # a 429 means the request was not processed
    if op in UNREPEATABLE_WRITES:
        # A write is repeated here only when it certainly never reached the server; any other
        # failure goes up, so the caller can confirm through the inventory before re-sending.
        return isinstance(exc, TransportError) and not exc.uncertain
    if isinstance(exc, TransportError):
        return True
    return isinstance(exc, ServerError) and exc.status in (500, 502, 503, 504)

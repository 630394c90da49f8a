"""Retry and rate-limit policy: pure decisions about waiting, shared by the client and the
throttle. No I/O here: the client asks, then sleeps through an injectable `sleep`.

- `RetryPolicy`: capped exponential backoff with full jitter, bounded by attempts and a deadline;
  a `Retry-After` beyond `retry_after_cap_s` fails instead of sleeping for hours.
- `is_retryable`: reads retry on transient failures; a write only when it certainly never landed.
- `RateSignal`: what one answer said about the server's rate limit (429, Retry-After in both
  forms, the standard `RateLimit-*` headers), for `throttle.Throttle` to adapt to.
"""

from __future__ import annotations

import email.utils
import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from migrate.errors import EndpointError, RateLimitedError, ServerError, TransportError

_WINDOW = re.compile(r";\s*w\s*=\s*(\d+(?:\.\d+)?)")

Operation = Literal[
    "list_workspaces",
    "list_dashboards",
    "list_metrics",
    "export",
    "import",
    "list_embeds",
    "create_embed",
    "export_embed",
    "update_embed",
    "rename_embed",
    "delete_embed",
    "list_app_dashboards",
    "create_workspace",
    "list_datasources",
    "rebind_filters",
]
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

    `retry_after_cap_s` bounds how long a `Retry-After` may make us wait: beyond it the request
    fails with a clear message rather than sleeping for hours.
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
    """Seconds to wait from a `Retry-After` header: delta-seconds or an HTTP-date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


class Pacer:
    """Hooks every request passes through; this default does nothing (see `throttle`)."""

    async def acquire(self) -> None:
        """Wait until one more request may start."""

    def release(self, signal: RateSignal) -> None:
        """Record how the request ended."""


@dataclass(frozen=True)
class RateSignal:
    """What one answer said about the server's rate limit."""

    rate_limited: bool = False
    retry_after: float | None = None  # seconds, from Retry-After
    remaining: int | None = None  # RateLimit-Remaining (or X-RateLimit-Remaining)
    reset_s: float | None = None  # RateLimit-Reset: seconds until the window resets
    limit: int | None = None  # RateLimit-Limit: requests allowed per window
    window_s: float | None = None  # the window's length, when a policy header states it

    @classmethod
    def from_response(cls, status: int, headers: Mapping[str, str]) -> RateSignal:
        """Read the standard rate-limit headers (IETF draft / express-rate-limit)."""
        remaining = _header_number(headers, "RateLimit-Remaining", "X-RateLimit-Remaining")
        reset = _header_number(headers, "RateLimit-Reset", "X-RateLimit-Reset")
        if reset is not None and reset > 1_000_000_000:  # some servers send an epoch time
            reset = max(0.0, reset - time.time())
        limit = _header_number(headers, "RateLimit-Limit", "X-RateLimit-Limit")
        policy = headers.get("RateLimit-Policy") or headers.get("RateLimit-Limit") or ""
        window = _WINDOW.search(policy)
        return cls(
            rate_limited=status == 429,
            retry_after=parse_retry_after(headers.get("Retry-After")) if status == 429 else None,
            remaining=int(remaining) if remaining is not None else None,
            reset_s=reset,
            limit=int(limit) if limit else None,
            window_s=float(window.group(1)) if window else None,
        )


def _header_number(headers: Mapping[str, str], *names: str) -> float | None:
    for name in names:
        value = headers.get(name)
        if value is not None:
            try:
                return float(value.split(",")[0].strip())
            except ValueError:
                return None
    return None


def is_retryable(exc: EndpointError, op: Operation) -> bool:
    """Whether a failed attempt may simply be repeated."""
    if isinstance(exc, RateLimitedError):
        return True  # a 429 means the request was not processed
    if op in UNREPEATABLE_WRITES:
        # A write is repeated here only when it certainly never reached the server; any other
        # failure goes up, so the caller can confirm through the inventory before re-sending.
        return isinstance(exc, TransportError) and not exc.uncertain
    if isinstance(exc, TransportError):
        return True
    return isinstance(exc, ServerError) and exc.status in (500, 502, 503, 504)

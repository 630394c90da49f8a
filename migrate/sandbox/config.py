"""How a sandbox is configured: the frozen `SandboxConfig`, the `--rate-limit N/S` syntax and
the `--rate-header NAME=VALUE` syntax."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from migrate.sandbox.faults import (
    ECHO_CREDENTIALS,
    ENDLESS_PAGES,
    RATE_HEADER_FORMS,
    RATE_MODES,
    EchoCredentials,
    EndlessPages,
    RateHeaders,
    RateMode,
)

DEFAULT_TOKEN = "sandbox-token"  # noqa: S105  # documented public default, not a secret
"""The documented token for local use; the sandbox guards nothing worth a secret."""

KNOWN_SEEDS = ("demo", "empty")
EMBED_ID_SCHEMES = ("suffix", "uuid")


@dataclass(frozen=True)
class SandboxConfig:
    """Everything a sandbox app starts with; fault knobs can be changed later on `Sandbox.faults`.

    `seed="demo"` loads the demo data set only when the database has no workspaces yet, so
    re-opening a seeded database never duplicates it. Rates are fractions in [0, 1].
    `rate_limit` is `(N requests, per S seconds)` per client IP, counted as `rate_mode` says
    and announced in the `rate_headers` form; `retry_after_s`, `rate_header_override`,
    `slow_body_bps`, `endless_pages` and `echo_credentials` rehearse hostile servers (see `faults`).
    """

    db_path: str | Path
    token: str = DEFAULT_TOKEN
    seed: str | None = None
    latency_ms: float = 0
    fail_rate: float = 0.0
    drop_rate: float = 0.0
    rate_limit: tuple[int, float] | None = None
    retry_after_http_date: bool = False
    rate_headers: RateHeaders = "draft6"
    rate_mode: RateMode = "window"
    retry_after_s: float | None = None
    rate_header_override: tuple[tuple[str, str], ...] = ()
    slow_body_bps: float = 0
    endless_pages: EndlessPages = "off"
    echo_credentials: EchoCredentials = "off"
    remint_ids: bool = False
    company_unique_ids: bool = False
    legacy_import_response: bool = False
    # Servers that misbehave in ways the real API is not known to: rehearsals for the tool.
    mint_dashboard_ids: bool = False  # store each import under an id of its own making
    no_duplicate_refusal: bool = False  # an import under an existing id stores a second copy
    remint_other_ids: bool = False  # change metric `datasourceId`s and filter `id`s on import
    listing_lag: int = 0  # a write shows in listings only after this many further listings
    refuse_after_store_rate: float = 0.0  # commit the import, then answer 400 anyway
    schema_pairs_sql_only: bool = False
    random_seed: int | None = None
    # (name, API key) of data apps to create or re-key at start-up; keys never in repr.
    data_apps: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    embed_ids: str = "suffix"  # how new embed ids are minted: "suffix" | "uuid"

    def __post_init__(self) -> None:
        if self.listing_lag < 0:
            raise ValueError(f"listing_lag must not be negative, got {self.listing_lag}")
        for name in ("fail_rate", "drop_rate", "refuse_after_store_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value}")
        if self.latency_ms < 0:
            raise ValueError(f"latency_ms must not be negative, got {self.latency_ms}")
        if self.rate_limit is not None:
            count, window = self.rate_limit
            if count < 1 or window <= 0:
                raise ValueError(f"rate_limit needs N >= 1 and S > 0, got {count}/{window}")
        if self.rate_headers not in RATE_HEADER_FORMS:
            raise ValueError(f"rate_headers must be one of {', '.join(RATE_HEADER_FORMS)}")
        if self.rate_mode not in RATE_MODES:
            raise ValueError(f"rate_mode must be one of {', '.join(RATE_MODES)}")
        if self.echo_credentials not in ECHO_CREDENTIALS:
            raise ValueError(f"echo_credentials must be one of {', '.join(ECHO_CREDENTIALS)}")
        if self.endless_pages not in ENDLESS_PAGES:
            raise ValueError(f"endless_pages must be one of {', '.join(ENDLESS_PAGES)}")
        if self.retry_after_s is not None and not (
            math.isfinite(self.retry_after_s) and self.retry_after_s >= 0
        ):
            raise ValueError(f"retry_after_s must be seconds >= 0, got {self.retry_after_s}")
        if not (math.isfinite(self.slow_body_bps) and self.slow_body_bps >= 0):
            raise ValueError(f"slow_body_bps must be >= 0, got {self.slow_body_bps}")
        if self.seed is not None and self.seed not in KNOWN_SEEDS:
            raise ValueError(f"unknown seed {self.seed!r}; known: {', '.join(KNOWN_SEEDS)}")
        if not self.token:
            raise ValueError("token must not be empty")
        if self.embed_ids not in EMBED_ID_SCHEMES:
            raise ValueError(f"embed_ids must be one of {EMBED_ID_SCHEMES}, got {self.embed_ids!r}")
        if any(not name or not key for name, key in self.data_apps):
            raise ValueError("every data app needs a name and a non-empty API key")


def parse_rate_limit(text: str) -> tuple[int, float]:
    """Parse the `--rate-limit N/S` syntax (`500/120`, `5/0.5`); ValueError says what is wrong."""
    count_text, sep, window_text = text.partition("/")
    try:
        if not sep:
            raise ValueError
        count, window = int(count_text), float(window_text)
    except ValueError:
        raise ValueError(f"rate limit {text!r} is not N/S, e.g. 500/120") from None
    if count < 1 or window <= 0:
        raise ValueError(f"rate limit {text!r} needs N >= 1 and S > 0")
    return count, window


_HEADER_NAME = re.compile(r"^[A-Za-z0-9-]+$")


def parse_header_override(text: str) -> tuple[str, str]:
    """Parse `--rate-header NAME=VALUE` (`RateLimit-Remaining=nan`); ValueError says why."""
    name, sep, value = text.partition("=")
    name = name.strip()
    if not sep or not _HEADER_NAME.match(name):
        raise ValueError(f"header {text!r} is not NAME=VALUE, e.g. RateLimit-Remaining=nan")
    if not value.isprintable():
        raise ValueError(f"header {name} has an unprintable value")
    return name, value.strip()


def parse_data_app(text: str) -> tuple[str, str]:
    """Split `NAME=VALUE` at the first `=` (`--data-app`, `--data-app-env`); ValueError if not."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip() or not value.strip():
        # Never echo `text`: its value part may be a key.
        raise ValueError("expected NAME=VALUE with both parts non-empty")
    return name.strip(), value.strip()

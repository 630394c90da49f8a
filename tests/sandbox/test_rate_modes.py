"""The sandbox's rate limiter: every header form, fixed windows and token buckets (fake clock),
and the hostile-server knobs (Retry-After override, header overrides, endless pages)."""

from __future__ import annotations

from typing import Any

import pytest

from migrate.retry import RateSignal
from migrate.sandbox import SandboxConfig, create_app
from migrate.sandbox.config import parse_header_override
from migrate.sandbox.faults import RateLimiter

from .conftest import client_for

pytestmark = pytest.mark.anyio


class Clock:
    """A settable clock."""

    now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("form", ["draft6", "draft7", "legacy"])
async def test_each_header_form_reads_as_the_same_budget(form: str) -> None:
    """draft6, draft7 and legacy headers all tell the client: 5 per 60 s, 4 left."""
    app = create_app(
        SandboxConfig(":memory:", seed="demo", rate_limit=(5, 60), rate_headers=form)  # type: ignore[arg-type]
    )
    async with client_for(app) as client:
        answer = await client.get("/api/v2/workspace")
    signal = RateSignal.from_response(answer.status_code, answer.headers)
    assert (signal.limit, signal.remaining) == (5, 4)
    assert signal.reset_s is not None and 0 <= signal.reset_s <= 61
    assert signal.window_s == (None if form == "legacy" else 60.0)


async def test_none_form_sends_only_retry_after() -> None:
    """rate_headers none: no rate-limit headers, and a 429 carries only Retry-After."""
    app = create_app(
        SandboxConfig(":memory:", seed="demo", rate_limit=(1, 60), rate_headers="none")
    )
    async with client_for(app) as client:
        ok = await client.get("/api/v2/workspace")
        refused = await client.get("/api/v2/workspace")
    assert not [h for h in ok.headers if "ratelimit" in h]
    assert refused.status_code == 429 and "retry-after" in refused.headers
    assert not [h for h in refused.headers if "ratelimit" in h]


def test_token_bucket_refills_gradually_and_window_resets_at_once() -> None:
    """Bucket: 2 tokens per 10 s refill one every 5 s; window: all at the window's end."""
    clock = Clock()
    limiter = RateLimiter(clock)

    def take(mode: Any) -> bool:
        return limiter.check("c", 2, 10, http_date=False, mode=mode).allowed

    assert [take("bucket") for _ in range(3)] == [True, True, False]
    clock.now += 5
    assert [take("bucket") for _ in range(2)] == [True, False]
    refused = limiter.check("c", 2, 10, http_date=False, mode="bucket")
    assert int(refused.headers["Retry-After"]) == 5
    limiter.reset()
    assert [take("window") for _ in range(3)] == [True, True, False]
    clock.now += 5
    assert take("window") is False
    clock.now += 5
    assert [take("window") for _ in range(2)] == [True, True]


async def test_retry_after_override_and_hostile_headers() -> None:
    """retry_after_s is what every 429 says; overrides go verbatim on every answer."""
    app = create_app(
        SandboxConfig(
            ":memory:",
            seed="demo",
            rate_limit=(1, 60),
            retry_after_s=100000,
            rate_header_override=(("RateLimit-Remaining", "nan"),),
        )
    )
    async with client_for(app) as client:
        ok = await client.get("/api/v2/workspace")
        refused = await client.get("/api/v2/workspace")
    assert ok.headers["ratelimit-remaining"] == "nan"
    assert refused.headers["retry-after"] == "100000"


async def test_endless_and_cycling_pages() -> None:
    """endless: every page is full and new; cycle: odd and even pages repeat two full sets."""
    app = create_app(SandboxConfig(":memory:", seed="demo", endless_pages="cycle"))
    sandbox = app.state.sandbox
    pages = []
    async with client_for(app) as client:
        for number in (1, 2, 3, 1000):
            body = {"workspaceName": "Sales Dev", "isPagination": True, "pageNumber": number}
            answer = await client.post("/api/v2/workspace/dashboards", json=body)
            pages.append(answer.json()["data"])
        sandbox.faults.endless_pages = "endless"
        later = await client.get("/api/v2/workspace?isPagination=true&pageNumber=7")
    assert all(len(page) == 10 for page in pages)
    assert pages[0] == pages[2] != pages[1] == pages[3]
    assert later.json()["data"][0]["name"] == "endless-7-0"


def test_header_override_syntax() -> None:
    """--rate-header NAME=VALUE parses; anything else says what is expected."""
    assert parse_header_override("RateLimit-Reset=999999999") == ("RateLimit-Reset", "999999999")
    with pytest.raises(ValueError, match="NAME=VALUE"):
        parse_header_override("no value")

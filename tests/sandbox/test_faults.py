"""Fault injection in-process: rate limiting, latency without blocking, injected 5xx, dropped
responses after commit, and knobs switched at runtime."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import anyio
import httpx
import pytest

from migrate.sandbox import ConnectionDropped, Sandbox, SandboxConfig, create_app
from migrate.sandbox.faults import RateLimiter

from .conftest import client_for

pytestmark = pytest.mark.anyio

IMPORT = "/api/v2/data-app/import-dashboard"
EXPORT = "/api/v2/data-app/export-dashboard"


def sandbox_with(**knobs: Any) -> tuple[Any, Sandbox]:
    app = create_app(SandboxConfig(":memory:", seed="demo", random_seed=3, **knobs))
    return app, app.state.sandbox


def import_body(sandbox: Sandbox, dashboard_id: str = "kpi-core") -> dict[str, Any]:
    return {
        "workspaceName": "Sales Prod",
        "dashboardId": dashboard_id,
        "importDashboardData": sandbox.get_dashboard("Sales Dev", "kpi-core"),
    }


async def test_rate_limit_429_with_retry_after_seconds() -> None:
    """Past N requests in the window: 429 RATE_LIMIT_EXCEEDED, Retry-After seconds, headers."""
    app, sandbox = sandbox_with(rate_limit=(3, 60))
    async with client_for(app) as client:
        ok = [await client.get("/api/v2/workspace") for _ in range(3)]
        assert [r.status_code for r in ok] == [200, 200, 200]
        assert ok[0].headers["ratelimit-limit"] == "3"
        assert ok[0].headers["ratelimit-remaining"] == "2"
        refused = await client.post(IMPORT, json=import_body(sandbox))
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "RATE_LIMIT_EXCEEDED"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["ratelimit-remaining"] == "0"
    assert sandbox.write_count == 0 and sandbox.list_dashboards("Sales Prod") == []
    assert sandbox.requests("import")[0].status == 429
    assert sandbox.requests("import")[0].dashboard_id == "kpi-core"


async def test_rate_limit_retry_after_http_date() -> None:
    """retry_after_http_date sends Retry-After as an HTTP-date within the window."""
    app, _ = sandbox_with(rate_limit=(1, 30), retry_after_http_date=True)
    async with client_for(app) as client:
        await client.get("/api/v2/workspace")
        refused = await client.get("/api/v2/workspace")
    assert refused.status_code == 429
    when = parsedate_to_datetime(refused.headers["retry-after"])
    delta = (when - datetime.now(UTC)).total_seconds()
    assert 0 < delta <= 31
    assert refused.headers["retry-after"].endswith("GMT")


async def test_rate_limit_window_resets() -> None:
    """A fixed window re-opens after S seconds, and not a moment before (fake clock)."""
    app, sandbox = sandbox_with(rate_limit=(1, 10))
    now = [100.0]
    sandbox.rate_limiter = RateLimiter(clock=lambda: now[0])
    async with client_for(app) as client:
        assert (await client.get("/api/v2/workspace")).status_code == 200
        assert (await client.get("/api/v2/workspace")).status_code == 429
        now[0] = 109.9
        refused = await client.get("/api/v2/workspace")
        assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
        now[0] = 110.0
        assert (await client.get("/api/v2/workspace")).status_code == 200


async def test_latency_does_not_block_and_is_counted_in_flight() -> None:
    """Latency holds each request without blocking the loop: six delayed requests are in flight
    at once, none finished, and cancelling them leaves nothing counted in flight."""
    app, sandbox = sandbox_with(latency_ms=60_000)  # held until cancelled, on any machine
    async with client_for(app) as client:
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for _ in range(6):
                    tg.start_soon(client.get, "/api/v2/workspace")
                while sandbox.in_flight < 6:
                    await anyio.sleep(0)  # yield to the requests; no wall time involved
                assert sandbox.request_log == []  # all six are held by the latency
                tg.cancel_scope.cancel()
    assert sandbox.max_in_flight == 6 and sandbox.in_flight == 0


async def test_fail_rate_answers_5xx_before_doing_anything() -> None:
    """fail_rate=1: every request is a 5xx and no import is committed; turning it off heals."""
    app, sandbox = sandbox_with(fail_rate=1.0)
    async with client_for(app) as client:
        statuses = {
            (await client.post(IMPORT, json=import_body(sandbox))).status_code for _ in range(12)
        }
        assert statuses <= {500, 502, 503} and 500 in statuses
        assert sandbox.write_count == 0 and sandbox.list_dashboards("Sales Prod") == []
        sandbox.faults.fail_rate = 0.0
        assert (await client.post(IMPORT, json=import_body(sandbox))).status_code == 200
    assert sandbox.write_count == 1


async def test_fault_dice_are_deterministic_with_a_seed() -> None:
    """The same random_seed gives the same sequence of injected failures."""

    async def run() -> list[int]:
        app, _ = sandbox_with(fail_rate=0.5)
        async with client_for(app) as client:
            return [(await client.get("/api/v2/workspace")).status_code for _ in range(20)]

    first, second = await run(), await run()
    assert first == second and 200 in first and any(s >= 500 for s in first)


async def test_drop_commits_then_raises_in_process() -> None:
    """drop_rate=1: the import commits, then ConnectionDropped reaches the in-process client."""
    app, sandbox = sandbox_with(drop_rate=1.0)
    async with client_for(app) as client:
        with pytest.raises(ConnectionDropped):
            await client.post(IMPORT, json=import_body(sandbox))
        assert sandbox.list_dashboards("Sales Prod") == [("kpi-core", "Core KPIs")]
        assert sandbox.write_count == 1
        record = sandbox.requests("import")[0]
        assert record.dropped and record.dashboard_id == "kpi-core"
        # A retry is refused as a duplicate (no commit, so no drop) and nothing is doubled.
        retry = await client.post(IMPORT, json=import_body(sandbox))
        assert retry.status_code == 400
        # Reads are never dropped.
        export = await client.post(
            EXPORT, json={"dashboardId": "kpi-core", "workspaceName": "Sales Dev"}
        )
        assert export.status_code == 200
    assert sandbox.write_count == 1


async def test_reset_stats(client: httpx.AsyncClient, sandbox: Sandbox) -> None:
    """reset_stats clears the log, the write count and the in-flight peak."""
    await client.get("/api/v2/workspace")
    sandbox.reset_stats()
    assert sandbox.request_log == [] and sandbox.write_count == 0 and sandbox.max_in_flight == 0

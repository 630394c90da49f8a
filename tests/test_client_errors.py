"""Every documented error answer, and the undocumented ones a real network produces, maps into the
error tree with a message that names the URL and the problem (never the token)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from migrate.client import ClientOptions, DatabrainClient
from migrate.errors import (
    AuthError,
    BadResponseError,
    DashboardNotFoundError,
    RateLimitedError,
    RequestRejectedError,
    ServerError,
    TransportError,
    WorkspaceNotFoundError,
)
from migrate.retry import RetryPolicy, parse_retry_after

pytestmark = pytest.mark.anyio
TOKEN = "tok-SECRET-1234"


def error(status: int, code: str | None, message: str = "msg") -> httpx.Response:
    """A Databrain-style error response."""
    body: dict[str, Any] = {"error": {"code": code, "message": message}}
    return httpx.Response(status, json=body)


def make_client(
    handler: Callable[[httpx.Request], httpx.Response],
    *,
    retry: RetryPolicy | None = None,
    sleeps: list[float] | None = None,
) -> DatabrainClient:
    """A client over a MockTransport; sleeping is recorded, not done."""

    async def fake_sleep(seconds: float) -> None:
        if sleeps is not None:
            sleeps.append(seconds)

    return DatabrainClient(
        "https://db.example",
        TOKEN,
        token_source="env var DATABRAIN_TARGET_TOKEN",
        transport=httpx.MockTransport(handler),
        options=ClientOptions(retry=retry or RetryPolicy(attempts=3)),
        sleep=fake_sleep,
        rand=lambda: 0.5,
    )


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, "AUTH_ERROR"),
        (400, "AUTHENTICATION_ERROR"),
        (401, "INVALID_SERVICE_TOKEN"),
        (400, "INVALID_DATA_APP_API_KEY"),
        (401, None),
        (403, "FORBIDDEN"),
    ],
)
async def test_auth_errors_name_the_env_var_not_the_token(status: int, code: str | None) -> None:
    """Each documented bad-credential answer is an AuthError naming the env var, never the token."""
    async with make_client(lambda r: error(status, code, "Invalid Service Token")) as client:
        with pytest.raises(AuthError) as info:
            await client.list_dashboards("Sales")
    text = str(info.value)
    assert "DATABRAIN_TARGET_TOKEN" in text
    assert TOKEN not in text
    assert info.value.exit_code == 5


async def test_unknown_workspace_names_it_and_the_existing_ones() -> None:
    """WORKSPACE_ID_ERROR becomes WorkspaceNotFoundError listing the workspaces that exist."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json={"data": [{"name": "Sales Dev"}], "error": None})
        return error(400, "WORKSPACE_ID_ERROR", "invalid workspace name, workspace name not found")

    async with make_client(handler) as client:
        with pytest.raises(WorkspaceNotFoundError) as info:
            await client.list_dashboards("Sales Prd")
    assert "'Sales Prd'" in str(info.value)
    assert "Sales Dev" in str(info.value)
    assert info.value.exit_code == 5


async def test_unknown_workspace_when_listing_fails_still_names_it() -> None:
    """If the workspaces cannot be listed, the error still names the missing workspace."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(500, text="boom")
        return error(400, "WORKSPACE_ID_ERROR")

    async with make_client(handler, retry=RetryPolicy(attempts=1)) as client:
        with pytest.raises(WorkspaceNotFoundError, match="Nope"):
            await client.list_dashboards("Nope")


async def test_invalid_request_body_shows_validator_message() -> None:
    """INVALID_REQUEST_BODY carries the server's Joi message."""
    handler = lambda r: error(400, "INVALID_REQUEST_BODY", '"dashboardId" is required')  # noqa: E731
    async with make_client(handler) as client:
        with pytest.raises(RequestRejectedError, match=r'"dashboardId" is required'):
            await client.import_dashboard("W", "d", {})


@pytest.mark.parametrize("code", [None, "INVALID_DASHBOARD_ID", "DATA_APP_NOT_FOUND", "WHATEVER"])
async def test_export_of_missing_dashboard_is_not_found(code: str | None) -> None:
    """A 400 on export (whatever code, or none) reads as 'dashboard X not found in workspace W'."""
    async with make_client(lambda r: error(400, code, "nope")) as client:
        with pytest.raises(DashboardNotFoundError, match="dashboard kpi not found in workspace W"):
            await client.export_dashboard("W", "kpi")


async def test_unknown_error_code_is_clean_with_code_and_message() -> None:
    """An error code never seen before still becomes a clean error carrying code and message."""
    async with make_client(lambda r: error(400, "BRAND_NEW_CODE", "something new")) as client:
        with pytest.raises(RequestRejectedError) as info:
            await client.list_dashboards("W")
    assert info.value.code == "BRAND_NEW_CODE"
    assert "something new" in str(info.value)


async def test_5xx_names_url_and_status_after_retries() -> None:
    """A persistent 500 on a read is retried, then reported with URL and status."""
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return error(500, "INTERNAL_SERVER_ERROR", "oops")

    sleeps: list[float] = []
    async with make_client(handler, sleeps=sleeps) as client:
        with pytest.raises(ServerError) as info:
            await client.list_dashboards("W")
    assert len(calls) == 3
    assert len(sleeps) == 2
    assert "https://db.example/api/v2/workspace/dashboards" in str(info.value)
    assert "500" in str(info.value)


async def test_html_error_page_is_described() -> None:
    """A proxy's HTML 502 page is reported as such, with the URL."""
    html = "<html><body>Bad Gateway</body></html>"
    handler = lambda r: httpx.Response(502, text=html, headers={"Content-Type": "text/html"})  # noqa: E731
    async with make_client(handler, retry=RetryPolicy(attempts=1)) as client:
        with pytest.raises(ServerError, match="HTML page"):
            await client.list_workspaces()


async def test_html_with_200_is_a_bad_response() -> None:
    """A 200 with an HTML body is a BadResponseError, not a crash."""
    handler = lambda r: httpx.Response(200, text="<html>login</html>")  # noqa: E731
    async with make_client(handler) as client:
        with pytest.raises(BadResponseError, match="HTML page"):
            await client.list_workspaces()


async def test_non_json_and_truncated_bodies_are_bad_responses() -> None:
    """Truncated JSON on success is a clean BadResponseError naming the URL."""
    handler = lambda r: httpx.Response(200, content=b'{"data": [')  # noqa: E731
    async with make_client(handler) as client:
        with pytest.raises(BadResponseError, match="export-dashboard"):
            await client.export_dashboard("W", "d")


async def test_connection_refused_names_url() -> None:
    """A refused connection says which URL could not be reached."""

    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    async with make_client(handler) as client:
        with pytest.raises(TransportError, match=r"cannot connect to https://db\.example"):
            await client.list_workspaces()


async def test_timeout_is_clean() -> None:
    """A read timeout becomes TransportError naming the URL; an import's is marked uncertain."""

    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    async with make_client(handler) as client:
        with pytest.raises(TransportError, match="timed out") as info:
            await client.import_dashboard("W", "d", {"layout": []})
    assert info.value.uncertain
    assert info.value.attempts == 1  # an uncertain write is never blindly repeated


async def test_import_sends_dashboard_id_and_accepts_both_success_shapes() -> None:
    """Import always sends dashboardId, and both documented success bodies are accepted."""
    seen: list[dict[str, Any]] = []
    shapes = iter(
        [
            {
                "data": {
                    "response": {"message": "Imported", "dashboardId": "x", "dashboardName": "X"}
                }
            },
            {"data": []},
        ]
    )

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(200, json=next(shapes))

    async with make_client(handler) as client:
        first = await client.import_dashboard("W", "x", {"a": 1}, schema_pairs=(("dev", "prod"),))
        second = await client.import_dashboard("W", "y", {"a": 1})
    assert first.message == "Imported"
    assert second.dashboard_id == "y"
    assert all("dashboardId" in body for body in seen)
    assert seen[0]["schemaPairs"] == [{"replaceSchema": "dev", "targetSchema": "prod"}]
    assert request_has_bearer(seen)


def request_has_bearer(bodies: list[dict[str, Any]]) -> bool:
    """The token travels only in the header, never in a body."""
    return all(TOKEN not in json.dumps(body) for body in bodies)


async def test_pagination_walks_every_page_and_stops_on_short_page() -> None:
    """Against a server that paginates even when not asked, listing reads pages of 10 until a
    short page, sending JSON booleans and numbers."""
    ids = [f"d{i}" for i in range(23)]
    pages: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        pages.append((body.get("isPagination"), body.get("pageNumber")))
        start = (body.get("pageNumber", 1) - 1) * 10
        chunk = [{"name": i, "externalDashboardId": i} for i in ids[start : start + 10]]
        return httpx.Response(200, json={"data": chunk, "error": None})

    async with make_client(handler) as client:
        refs = await client.list_dashboards("W")
    assert [r.id for r in refs] == ids
    assert pages[0] == (None, None)  # everything at once first: 10 items may be a first page
    assert sorted(pages[1:])[:3] == [(True, 1), (True, 2), (True, 3)]
    assert len(pages) <= 5  # batching may ask for one page past the end, never more


async def test_large_listings_take_few_round_trips() -> None:
    """A 1,000-item listing is read whole, in far fewer sequential rounds than pages."""
    total = 1000
    in_flight = 0
    rounds = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, rounds
        if in_flight == 0:
            rounds += 1
        in_flight += 1
        await asyncio.sleep(0)
        in_flight -= 1
        body = json.loads(request.content)
        start = (body.get("pageNumber", 1) - 1) * 10
        chunk = [
            {"name": str(i), "externalDashboardId": str(i)}
            for i in range(start, min(start + 10, total))
        ]
        return httpx.Response(200, json={"data": chunk, "error": None})

    async with make_client(handler) as client:  # type: ignore[arg-type]
        refs = await client.list_dashboards("W")
    assert [r.id for r in refs] == [str(i) for i in range(total)]
    assert rounds < 20


async def test_pagination_survives_a_server_that_ignores_it() -> None:
    """A server returning everything on every page does not loop forever or duplicate."""
    everything = [{"name": str(i), "externalDashboardId": str(i)} for i in range(10)]
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(200, json={"data": everything, "error": None})

    async with make_client(handler) as client:
        refs = await client.list_dashboards("W")
    assert len(refs) == 10
    assert len(calls) == 3  # everything (10 items: maybe a page), page 1, page 2 == page 1


async def test_workspace_listing_uses_query_strings() -> None:
    """GET listings ask for everything without a query string, and paginate with query strings
    'true' and page numbers when that answer may be a first page."""
    seen: list[str] = []
    page = [{"name": f"W{i}"} for i in range(10)]

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url.query, "ascii"))
        data = page if "pageNumber=2" not in seen[-1] else [{"name": "last"}]
        return httpx.Response(200, json={"data": data, "error": None})

    async with make_client(handler) as client:
        assert len(await client.list_workspaces()) == 11
    assert seen == ["", "isPagination=true&pageNumber=1", "isPagination=true&pageNumber=2"]


async def test_listing_is_one_request_when_the_server_answers_everything() -> None:
    """A workspace of 23 dashboards is listed by one request without `isPagination`."""
    ids = [f"d{i}" for i in range(23)]
    bodies: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        chunk = [{"name": i, "externalDashboardId": i} for i in ids]
        return httpx.Response(200, json={"data": chunk, "error": None})

    async with make_client(handler) as client:
        refs = await client.list_dashboards("W")
    assert [r.id for r in refs] == ids
    assert bodies == [{"workspaceName": "W"}]


async def test_listing_too_large_for_one_answer_walks_pages() -> None:
    """An unpaginated answer over the body cap is dropped for pages, which fit."""
    ids = [f"dash-{i:04d}" for i in range(25)]

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if "pageNumber" in body:
            start = (body["pageNumber"] - 1) * 10
            chunk = ids[start : start + 10]
        else:
            chunk = ids
        data = [{"name": i, "externalDashboardId": i} for i in chunk]
        return httpx.Response(200, json={"data": data, "error": None})

    client = DatabrainClient(
        "https://db.example",
        TOKEN,
        transport=httpx.MockTransport(handler),
        options=ClientOptions(max_body_bytes=1200, retry=RetryPolicy(attempts=1)),
    )
    async with client:
        refs = await client.list_dashboards("W")
    assert [r.id for r in refs] == ids


async def test_rate_limit_retry_after_is_honoured_then_capped() -> None:
    """429 with Retry-After waits that long; a Retry-After beyond the cap fails clearly."""
    answers = iter(
        [httpx.Response(429, headers={"Retry-After": "3"}), httpx.Response(200, json={"data": []})]
    )
    sleeps: list[float] = []
    async with make_client(lambda r: next(answers), sleeps=sleeps) as client:
        await client.list_workspaces()
    assert sleeps == [3.0]

    long_wait = lambda r: httpx.Response(429, headers={"Retry-After": "86400"})  # noqa: E731
    async with make_client(long_wait, sleeps=[]) as client:
        with pytest.raises(RateLimitedError, match="more than"):
            await client.list_workspaces()


def test_retry_after_parses_seconds_and_http_dates() -> None:
    """Retry-After is read as delta-seconds or as an HTTP-date relative to now."""
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == pytest.approx(10)
    assert parse_retry_after("garbage") is None
    assert parse_retry_after(None) is None


async def test_import_is_not_retried_after_a_5xx() -> None:
    """A 5xx after an import was sent is uncertain: raised for the caller to confirm, not resent."""
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return error(503, None)

    async with make_client(handler) as client:
        with pytest.raises(ServerError) as info:
            await client.import_dashboard("W", "d", {})
    assert calls == [1]
    assert info.value.uncertain


async def test_redirect_is_not_followed() -> None:
    """A redirect is refused, so the Authorization header never reaches another host."""
    hosts: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        hosts.append(request.url.host)
        return httpx.Response(302, headers={"Location": "https://evil.example/steal"})

    async with make_client(handler) as client:
        with pytest.raises(BadResponseError, match="redirect"):
            await client.list_workspaces()
    assert hosts == ["db.example"]


async def test_oversized_body_is_refused() -> None:
    """A response over the size cap is aborted with a clear error."""
    big = b'{"data": [' + b'{"name": "x"},' * 1000 + b'{"name": "y"}]}'
    client = DatabrainClient(
        "https://db.example",
        TOKEN,
        transport=httpx.MockTransport(lambda r: httpx.Response(200, content=big)),
        options=ClientOptions(max_body_bytes=1000),
    )
    async with client:
        with pytest.raises(BadResponseError, match="cap"):
            await client.list_workspaces()

"""Async client for the documented Databrain API; with `transport`, the only code that imports
httpx.

Every httpx failure is translated here into the `migrate.errors` tree, `raise ... from exc`;
error bodies are translated by `apierrors`. Reads are retried on transient failures; writes
only where the request certainly did not take effect (see `DatabrainClient.import_dashboard`).
The transport is injectable: tests and `sandbox://` URLs pass an in-process ASGI transport.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from migrate.apierrors import ErrorAnswer, FailedRequest, error_fields, translate_error
from migrate.errors import (
    BadResponseError,
    EndpointError,
    RateLimitedError,
    TransportError,
    UntrustedJSONError,
)
from migrate.jsontext import JSONLimits, parse_json
from migrate.models import DashboardRef, ExportFile, ImportResult, JSONObject, MetricRef
from migrate.retry import (
    Operation,
    Pacer,
    RateSignal,
    RetryPolicy,
    announced_wait_error,
    is_retryable,
)
from migrate.transport import pooled_transport

PAGE_SIZE = 10
MAX_LIST_ITEMS = 50_000  # far above any real workspace; a listing that never ends stops here
MAX_PAGE_BATCH = 8

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class ClientOptions:
    """Connection settings shared by every request of one client."""

    timeout_s: float = 60.0  # per read: a server silent this long has failed
    connect_timeout_s: float = 10.0
    # The whole exchange, body included: a server trickling bytes is not waited on forever.
    request_deadline_s: float = 300.0
    max_list_items: int = MAX_LIST_ITEMS
    max_connections: int = 32
    max_body_bytes: int = JSONLimits().max_bytes
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    verify: str | bool = True  # CA bundle path or True; never False
    user_agent: str = "migrate/0.1"


class _Answer:
    """One HTTP exchange's outcome, parsed."""

    def __init__(self, status: int, body: Any, headers: httpx.Headers, raw: bytes) -> None:
        self.status = status
        self.body = body
        self.headers = headers
        self.raw = raw


class DatabrainClient:
    """One Databrain endpoint (base URL + token). Use as `async with`."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        token_source: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        options: ClientOptions | None = None,
        pacer: Pacer | None = None,
        sleep: Sleep | None = None,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.options = options or ClientOptions()
        self.base_url = base_url.rstrip("/")
        self.token_source = token_source or "the configured token"
        self._pacer = pacer or Pacer()
        # Retry waits go through the pacer by default, so an interrupt ends them at once.
        self._sleep = sleep or self._pacer.sleep
        self._clock = clock
        self._rand = rand
        opts = self.options
        limits = httpx.Limits(
            max_connections=opts.max_connections,
            max_keepalive_connections=opts.max_connections,
        )
        if transport is None:
            transport = pooled_transport(opts.verify, limits)
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers={
                "Authorization": f"Bearer {token}",
                "Accept": "application/json",
                "User-Agent": opts.user_agent,
            },
            timeout=httpx.Timeout(opts.timeout_s, connect=opts.connect_timeout_s, pool=None),
            transport=transport,
            # Never follow redirects: the Authorization header must not reach another host.
            follow_redirects=False,
            trust_env=False,
        )

    async def __aenter__(self) -> DatabrainClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    # ---- documented calls -------------------------------------------------------------------

    async def list_workspaces(self) -> list[str]:
        """Names of every workspace the token can see (all pages)."""
        items = await self._paginate("GET", "/api/v2/workspace", None, "list_workspaces")
        return [name for item in items if isinstance(name := item.get("name"), str)]

    async def list_dashboards(self, workspace: str) -> list[DashboardRef]:
        """The full dashboard inventory of `workspace` (all pages, ids deduplicated)."""
        items = await self._paginate(
            "POST", "/api/v2/workspace/dashboards", {"workspaceName": workspace}, "list_dashboards"
        )
        refs: dict[str, DashboardRef] = {}
        for item in items:
            dash_id = item.get("externalDashboardId")
            if not isinstance(dash_id, str) or not dash_id:
                continue  # a dashboard without an external id cannot be exported or planned
            name = item.get("name")
            refs.setdefault(dash_id, DashboardRef(dash_id, name if isinstance(name, str) else ""))
        return list(refs.values())

    async def list_metrics(self, workspace: str) -> list[MetricRef]:
        """The metrics of `workspace` (all pages)."""
        items = await self._paginate(
            "POST", "/api/v2/workspace/metrics", {"workspaceName": workspace}, "list_metrics"
        )
        return [
            MetricRef(str(item.get("metricId", "")), str(item.get("name", "")))
            for item in items
            if item.get("metricId") is not None
        ]

    async def export_dashboard(self, workspace: str, dashboard_id: str) -> ExportFile:
        """The export file of one dashboard, raw bytes and parsed."""
        answer = await self._call(
            "POST",
            "/api/v2/data-app/export-dashboard",
            {"dashboardId": dashboard_id, "workspaceName": workspace},
            op="export",
            workspace=workspace,
            dashboard_id=dashboard_id,
        )
        if not isinstance(answer.body, dict) or not isinstance(answer.body.get("data"), dict):
            raise BadResponseError(
                f"export of {dashboard_id!r} from {self._url('/api/v2/data-app/export-dashboard')}"
                " did not return an object with a `data` object",
                url=self._url("/api/v2/data-app/export-dashboard"),
                status=answer.status,
            )
        return ExportFile(raw=answer.raw, document=answer.body)

    async def import_dashboard(
        self,
        workspace: str,
        dashboard_id: str,
        data: JSONObject,
        *,
        name: str | None = None,
        schema_pairs: tuple[tuple[str, str], ...] = (),
        body: bytes | None = None,
    ) -> ImportResult:
        """Import `data` as `dashboard_id` into `workspace`; `dashboardId` is always sent.

        Retried only when the request certainly did not reach the server (connection refused,
        429). Any other failure propagates; `EndpointError.uncertain` tells the caller whether the
        import may have happened anyway, so it can confirm through the inventory before re-sending.
        `body` lets a caller pass the request already serialized (large payloads).
        """
        payload: JSONObject = {
            "workspaceName": workspace,
            "dashboardId": dashboard_id,
            "importDashboardData": data,
        }
        if name:
            payload["dashboardName"] = name
        if schema_pairs:
            payload["schemaPairs"] = [
                {"replaceSchema": old, "targetSchema": new} for old, new in schema_pairs
            ]
        answer = await self._call(
            "POST",
            "/api/v2/data-app/import-dashboard",
            payload,
            op="import",
            workspace=workspace,
            dashboard_id=dashboard_id,
            content=body,
        )
        response = answer.body.get("data") if isinstance(answer.body, dict) else None
        # Newer docs: {"data": {"response": {...}}}; older: {"data": []}. Accept both.
        if isinstance(response, dict) and isinstance(response.get("response"), dict):
            info = response["response"]
            message = info.get("message")
            new_name = info.get("dashboardName")
            return ImportResult(
                dashboard_id=str(info.get("dashboardId") or dashboard_id),
                message=message if isinstance(message, str) else None,
                name=new_name if isinstance(new_name, str) else None,
                attempts=answer.attempts,
            )
        return ImportResult(dashboard_id=dashboard_id, attempts=answer.attempts)

    # ---- plumbing ---------------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    async def _paginate(
        self, method: str, path: str, body: JSONObject | None, op: Operation
    ) -> list[JSONObject]:
        """Every item of a paginated list: request pages until a short or empty one.

        The API gives no total, so the walk is sequential by nature; after two full pages,
        later pages are asked for in growing batches (2, 4, 8 at once), read in order, so a
        large inventory costs a few round trips instead of one per page — at the price of at
        most a few requests for pages past the end, which the API answers with `[]`.
        A server that ignores pagination is tolerated (a page longer than PAGE_SIZE is taken as
        the whole list, and so is a page 2 equal to page 1). A listing that does not end — more
        than `max_list_items` items, or a later page repeating an earlier one — raises
        BadResponseError (exit 5): an inventory cut short is never used.
        """
        items: list[JSONObject] = []
        seen: dict[bytes, int] = {}  # page digest -> page number
        max_pages = self.options.max_list_items // PAGE_SIZE + 1
        page, batch = 1, 1
        while page <= max_pages:
            numbers = range(page, min(page + batch, max_pages + 1))
            pages = await asyncio.gather(
                *(self._page(method, path, body, op, number) for number in numbers)
            )
            for number, data in zip(numbers, pages, strict=True):
                fingerprint = hashlib.sha256(_dump({"page": data})).digest()
                if number == 2 and seen.get(fingerprint) == 1:
                    return items  # the server ignores pageNumber: page 1 was everything
                if fingerprint in seen:
                    raise self._endless(
                        path, f"page {number} repeats page {seen[fingerprint]}", number
                    )
                seen[fingerprint] = number
                items.extend(item for item in data if isinstance(item, dict))
                if len(data) != PAGE_SIZE:
                    return items
                if len(items) > self.options.max_list_items:
                    break
            # Pages 1 and 2 go one at a time, so a small workspace costs no extra request.
            batch = 1 if page == 1 else min(batch * 2, MAX_PAGE_BATCH)
            page += len(pages)
        raise self._endless(
            path,
            f"it returned more than {self.options.max_list_items:,} items without a last page",
            page - 1,
        )

    def _endless(self, path: str, why: str, pages: int) -> BadResponseError:
        url = self._url(path)
        return BadResponseError(
            f"the listing at {url} does not end: {why} (after {pages:,} pages); its inventory"
            " would be incomplete, so the run stops",
            url=url,
            hint="the server's pagination is broken; report it to the server's operator",
        )

    async def _page(
        self, method: str, path: str, body: JSONObject | None, op: Operation, number: int
    ) -> list[Any]:
        """The `data` list of one page."""
        if method == "GET":
            answer = await self._call(
                method,
                path,
                None,
                op=op,
                params={"isPagination": "true", "pageNumber": str(number)},
            )
        else:
            workspace = body.get("workspaceName") if body else None
            answer = await self._call(
                method,
                path,
                {**(body or {}), "isPagination": True, "pageNumber": number},
                op=op,
                workspace=workspace if isinstance(workspace, str) else None,
            )
        data = answer.body.get("data") if isinstance(answer.body, dict) else None
        if not isinstance(data, list):
            raise BadResponseError(
                f"{self._url(path)} returned no `data` list (page {number})",
                url=self._url(path),
                status=answer.status,
            )
        return data

    async def _call(
        self,
        method: str,
        path: str,
        json_body: JSONObject | None,
        *,
        op: Operation,
        workspace: str | None = None,
        dashboard_id: str | None = None,
        params: Mapping[str, str] | None = None,
        content: bytes | None = None,
    ) -> _AnsweredCall:
        """One logical call with retries; returns the parsed 2xx answer or raises EndpointError."""
        policy = self.options.retry
        started = self._clock()
        attempt = 0
        while True:
            attempt += 1
            try:
                answer = await self._exchange(
                    method=method,
                    path=path,
                    json_body=json_body,
                    params=params,
                    content=content,
                    op=op,
                )
                if 200 <= answer.status < 300:
                    return _AnsweredCall(answer, attempt)
                raise await self._translate(answer, path, op, workspace, dashboard_id)
            except EndpointError as exc:
                exc.attempts = attempt
                delay = self._retry_delay(exc, op, attempt, started, policy)
                if delay is None:
                    raise
                await self._sleep(delay)

    def _retry_delay(
        self, exc: EndpointError, op: Operation, attempt: int, started: float, policy: RetryPolicy
    ) -> float | None:
        """Seconds to wait before retrying, or None to give up now.

        Raises AnnouncedWaitError when the server asks for a wait beyond the policy's cap
        (--max-wait): the run stops rather than sleeping.
        """
        if not is_retryable(exc, op):
            return None
        announced = exc.retry_after if isinstance(exc, RateLimitedError) else None
        if announced is not None and announced > policy.retry_after_cap_s:
            raise announced_wait_error(
                f"HTTP 429 with Retry-After: {announced:g}", announced, policy.retry_after_cap_s
            ) from exc
        if attempt >= policy.attempts:
            return None
        delay = policy.backoff(attempt, self._rand)
        deadline = policy.deadline_s
        if announced is not None:
            delay = max(delay, announced)
            # A wait the server announced within --max-wait is honoured beyond our own deadline.
            deadline = max(deadline, policy.retry_after_cap_s + delay)
        if self._clock() - started + delay > deadline:
            return None
        return delay

    async def _exchange(
        self,
        *,
        method: str,
        path: str,
        json_body: JSONObject | None,
        params: Mapping[str, str] | None,
        content: bytes | None,
        op: Operation,
    ) -> _Answer:
        """Send one HTTP request; read the body under the size cap; parse JSON."""
        url = self._url(path)
        if content is None and json_body is not None:
            content = _dump(json_body)
        headers = {"Content-Type": "application/json"} if content is not None else None
        await self._pacer.acquire()
        signal = RateSignal()
        deadline = self.options.request_deadline_s
        sent = False
        try:
            request = self._http.build_request(
                method, path, content=content, headers=headers, params=params
            )
            async with asyncio.timeout(deadline):
                response = await self._http.send(request, stream=True)
                sent = True
                try:
                    raw = await self._read_capped(response, url)
                finally:
                    await response.aclose()
            signal = RateSignal.from_response(response.status_code, response.headers)
        except TimeoutError as exc:
            raise TransportError(
                f"{method} {url} did not finish within {deadline:g} s"
                + (" (the body arrived too slowly)" if sent else ""),
                url=url,
                hint="the server is too slow or trickling its answer; try again later",
                uncertain=True,
            ) from exc
        except httpx.TimeoutException as exc:
            sent = not isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout)
            raise TransportError(
                f"{method} {url} timed out ({type(exc).__name__})", url=url, uncertain=sent
            ) from exc
        except httpx.ConnectError as exc:
            raise TransportError(
                f"cannot connect to {url}: {exc or type(exc).__name__}",
                url=url,
                hint="check the URL and that the server is running and reachable",
                uncertain=False,
            ) from exc
        except (httpx.TransportError, httpx.StreamError) as exc:
            raise TransportError(
                f"{method} {url} failed: the connection was lost"
                f" ({type(exc).__name__}: {exc or 'no detail'})",
                url=url,
                uncertain=True,
            ) from exc
        finally:
            self._pacer.release(signal)
        body: Any = None
        if raw:
            try:
                body = parse_json(raw, source=f"the response of {method} {url}")
            except UntrustedJSONError as exc:
                if 200 <= response.status_code < 300:
                    kind = _describe_body(response, raw)
                    raise BadResponseError(
                        f"{method} {url} answered HTTP {response.status_code} with {kind}, not"
                        f" the documented JSON: {exc.message}",
                        url=url,
                        status=response.status_code,
                        uncertain=op == "import",
                    ) from exc
                body = None  # an error status with a non-JSON body is translated by status
        return _Answer(response.status_code, body, response.headers, raw)

    async def _read_capped(self, response: httpx.Response, url: str) -> bytes:
        limit = self.options.max_body_bytes
        declared = response.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise BadResponseError(
                f"the response of {url} is {int(declared):,} bytes, over the {limit:,}-byte cap",
                url=url,
                status=response.status_code,
            )
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():  # decoded: caps a gzip bomb too
            size += len(chunk)
            if size > limit:
                raise BadResponseError(
                    f"the response of {url} exceeds the {limit:,}-byte cap; reading stopped",
                    url=url,
                    status=response.status_code,
                )
            chunks.append(chunk)
        return b"".join(chunks)

    async def _translate(
        self,
        answer: _Answer,
        path: str,
        op: Operation,
        workspace: str | None,
        dashboard_id: str | None,
    ) -> EndpointError:
        """The EndpointError for a non-2xx answer (listing workspaces for a WORKSPACE_ID_ERROR)."""
        code, _ = error_fields(answer.body)
        unknown_workspace = code == "WORKSPACE_ID_ERROR" and workspace is not None
        return translate_error(
            ErrorAnswer(answer.status, answer.body, answer.headers, answer.raw),
            FailedRequest(
                self._url(path), self.base_url, op, workspace, dashboard_id, self.token_source
            ),
            available=await self._workspaces_if_possible() if unknown_workspace else (),
        )

    async def _workspaces_if_possible(self) -> list[str]:
        """The workspace names for an error message; empty when they cannot be listed."""
        try:
            return await self.list_workspaces()
        except EndpointError:
            return []


class _AnsweredCall(_Answer):
    """A successful answer plus the number of HTTP attempts it took."""

    def __init__(self, answer: _Answer, attempts: int) -> None:
        super().__init__(answer.status, answer.body, answer.headers, answer.raw)
        self.attempts = attempts


def _dump(value: JSONObject) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _describe_body(response: httpx.Response, raw: bytes) -> str:
    ctype = response.headers.get("Content-Type", "")
    if "html" in ctype or raw.lstrip()[:1] == b"<":
        return "an HTML page"
    return f"a {ctype or 'non-JSON'} body"

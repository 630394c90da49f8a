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
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

from migrate.apierrors import (
    DataAppRequest,
    ErrorAnswer,
    FailedRequest,
    error_fields,
    refine_data_app_error,
    translate_error,
)
from migrate.errors import (
    BadResponseError,
    CredentialEchoError,
    EndpointError,
    RateLimitedError,
    RequestRejectedError,
    TransportError,
    UntrustedJSONError,
    WorkspaceExistsError,
)
from migrate.jsontext import JSONLimits, dump_json, dump_spliced, export_holds_data, parse_json
from migrate.models import (
    DashboardRef,
    DataAppDashboard,
    Embed,
    EmbedExport,
    ExportFile,
    FilterRebinding,
    ImportResult,
    JSONObject,
    MetricRef,
    Operation,
    WorkspaceBinding,
)
from migrate.redaction import holds_secret
from migrate.retry import (
    WRITES,
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
        if transport is None:
            transport = pooled_transport(opts.verify, opts.max_connections)
        # Requests go straight to the transport: httpx.AsyncClient's layers (cookies, auth flows,
        # redirect handling, URL merging) are features this client refuses or does not need,
        # and cost ~0.3 ms of CPU per request. What it did that matters is done here: default
        # headers, timeouts, and never following a redirect (a 3xx is just an answer).
        self._transport = transport
        # As bytes once: every request sends them, and encoding them is httpx's per-request work.
        self._headers = httpx.Headers(
            {
                "Authorization": f"Bearer {token}",
                "Accept": "application/json",
                "Accept-Encoding": "gzip, deflate",
                "User-Agent": opts.user_agent,
            }
        ).raw
        # Each path's URL, parsed once (a client calls a dozen paths; parsing costs ~60 us).
        self._urls: dict[str, httpx.URL] = {}
        self._timeouts = httpx.Timeout(
            opts.timeout_s, connect=opts.connect_timeout_s, pool=None
        ).as_dict()

    async def pause(self, seconds: float) -> None:
        """Wait `seconds` the way retries wait: through the pacer, so an interrupt (or a stop
        for a wait the server announced beyond --max-wait) ends the wait at once."""
        await self._sleep(seconds)

    async def __aenter__(self) -> DatabrainClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._transport.aclose()

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
        export = await self.read_back(workspace, dashboard_id, None)
        assert isinstance(export, ExportFile)  # only an expected `data` text leaves it raw
        return export

    async def read_back(
        self, workspace: str, dashboard_id: str, expected_data: bytes | None
    ) -> ExportFile | bytes:
        """The export file of one dashboard, raw bytes and parsed; only its raw bytes, never
        parsed, when its `data` is exactly `expected_data` (compact JSON we wrote, e.g. what an
        import was expected to store): `jsontext.export_holds_data` proves that on the text.
        CredentialEchoError either way when the answer holds a credential this run sent."""
        url = self._url("/api/v2/data-app/export-dashboard")
        answer = await self._call(
            "POST",
            "/api/v2/data-app/export-dashboard",
            {"dashboardId": dashboard_id, "workspaceName": workspace},
            op="export",
            workspace=workspace,
            dashboard_id=dashboard_id,
            unparsed=True,
        )
        source = f"the response of POST {url}"
        self._refuse_echo(answer.raw, dashboard_id)
        if expected_data is not None and export_holds_data(
            answer.raw, expected_data, source=source
        ):
            return answer.raw
        answer.body = _parsed_body(
            answer.status, answer.headers, answer.raw, method="POST", url=url, op="export"
        )
        if not isinstance(answer.body, dict) or not isinstance(answer.body.get("data"), dict):
            raise BadResponseError(
                f"export of {dashboard_id!r} from {self._url('/api/v2/data-app/export-dashboard')}"
                " did not return an object with a `data` object",
                url=self._url("/api/v2/data-app/export-dashboard"),
                status=answer.status,
            )
        return ExportFile(raw=answer.raw, document=answer.body)

    def _refuse_echo(self, raw: bytes, dashboard_id: str) -> None:
        """CredentialEchoError when an export holds a credential this run sent: written to a
        bundle or a snapshot, or sent to a target, it would leak."""
        if holds_secret(raw):
            raise CredentialEchoError(
                f"the export of {dashboard_id!r} holds a credential this run sent (echoed back"
                " by the server); it is neither kept nor imported",
                url=self._url("/api/v2/data-app/export-dashboard"),
            )

    async def import_dashboard(
        self,
        workspace: str,
        dashboard_id: str,
        data: JSONObject | bytes,
        *,
        name: str | None = None,
        schema_pairs: tuple[tuple[str, str], ...] = (),
    ) -> ImportResult:
        """Import `data` as `dashboard_id` into `workspace`; `dashboardId` is always sent.

        Retried only when the request certainly did not reach the server (connection refused,
        429). Any other failure propagates; `EndpointError.uncertain` tells the caller whether the
        import may have happened anyway, so it can confirm through the inventory before re-sending.
        `data` may be given as its `dump_json` text: it is spliced into the request as is, which
        sends the same bytes as the parsed `data` would (`jsontext.dump_spliced`).
        """
        payload: JSONObject = {
            "workspaceName": workspace,
            "dashboardId": dashboard_id,
            "importDashboardData": None if isinstance(data, bytes) else data,
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
            content=dump_spliced(payload, "importDashboardData", data)
            if isinstance(data, bytes)
            else None,
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

    # ---- preparing a target workspace (docs/databrain-api.md "Preparing a target workspace")

    async def create_workspace(self, name: str, binding: WorkspaceBinding) -> str:
        """Create workspace `name` bound to an existing datasource or datamart; returns its name.

        Not retried after it may have reached the server. A refusal whose name the workspace
        listing then shows is `WorkspaceExistsError` (the API documents no code for it).
        """
        key = "datamartName" if binding.connection_type.uses_datamart else "datasourceName"
        body: JSONObject = {
            "name": name,
            "connectionType": binding.connection_type.value,
            key: binding.name,
        }
        try:
            answer = await self._call("POST", "/api/v2/workspace", body, op="create_workspace")
        except RequestRejectedError as exc:
            if exc.code == "INVALID_REQUEST_BODY" or name not in await self.list_workspaces():
                raise
            raise WorkspaceExistsError(
                f"workspace {name!r} already exists at {self.base_url}",
                workspace=name,
                url=exc.url,
                status=exc.status,
                code=exc.code,
                hint="workspace names are unique in a company; use it, or choose another name",
            ) from exc
        data = answer.body.get("data") if isinstance(answer.body, dict) else None
        created = data.get("name") if isinstance(data, dict) else None
        return created if isinstance(created, str) and created else name

    async def list_datasources(self) -> list[str]:
        """Names of the company's datasources (all pages)."""
        items = await self._paginate("GET", "/api/v2/datasource", None, "list_datasources")
        return [name for item in items if isinstance(name := item.get("name"), str)]

    async def rebind_filters(self, workspace: str, rebindings: Sequence[FilterRebinding]) -> None:
        """Point dashboard filters (matched by label) at other columns.

        The API silently ignores unknown dashboards and unmatched labels: read the dashboards
        back to know what changed. Idempotent, so retried like a read.
        """
        dashboards: dict[str, list[JSONObject]] = {}
        for item in rebindings:
            dashboards.setdefault(item.dashboard_id, []).append(
                {
                    "name": item.filter_name,
                    "applyOnTables": [
                        {
                            **({"dataType": c.data_type} if c.data_type else {}),
                            "schemaName": c.schema,
                            "tableName": c.table,
                            "columnName": c.column,
                        }
                        for c in item.apply_on
                    ],
                }
            )
        body: JSONObject = {
            "workspaceName": workspace,
            "dashboards": [
                {"dashboardId": dashboard_id, "filters": filters}
                for dashboard_id, filters in dashboards.items()
            ],
        }
        await self._call(
            "PUT", "/api/v2/workspace/dashboards", body, op="rebind_filters", workspace=workspace
        )

    # ---- plumbing ---------------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    async def _paginate(
        self, method: str, path: str, body: JSONObject | None, op: Operation
    ) -> list[JSONObject]:
        """Every item of a list: one request without pagination, else pages.

        The API answers a listing without `isPagination` with every item at once (one request
        for a whole workspace, where pages cost one per 10 items). That answer is taken unless
        it may be a first page after all (exactly PAGE_SIZE items, from a server that paginates
        anyway), is too large to read, or is refused: then the pages are walked.

        The page walk: the API gives no total, so it is sequential by nature; after two full
        pages, later pages are asked for in growing batches (2, 4, 8 at once), read in order, so
        a large inventory costs a few round trips instead of one per page — at the price of at
        most a few requests for pages past the end, which the API answers with `[]`.
        A server that ignores pagination is tolerated (a page longer than PAGE_SIZE is taken as
        the whole list, and so is a page 2 equal to page 1). A listing that does not end — more
        than `max_list_items` items, or a later page repeating an earlier one — raises
        BadResponseError (exit 5): an inventory cut short is never used.
        """
        whole = await self._unpaginated(method, path, body, op)
        if whole is not None:
            return whole
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

    async def _unpaginated(
        self, method: str, path: str, body: JSONObject | None, op: Operation
    ) -> list[JSONObject] | None:
        """Every item from one request without pagination; None when pages must be walked."""
        workspace = body.get("workspaceName") if body else None
        try:
            answer = await self._call(
                method,
                path,
                body if method != "GET" else None,
                op=op,
                workspace=workspace if isinstance(workspace, str) else None,
            )
        except BadResponseError as exc:
            if exc.status is not None and 200 <= exc.status < 300:
                return None  # a success too large to read (or not JSON): pages are smaller
            raise
        except RequestRejectedError as exc:
            if exc.code == "INVALID_REQUEST_BODY":
                return None  # a server that insists on pagination fields
            raise
        data = answer.body.get("data") if isinstance(answer.body, dict) else None
        if not isinstance(data, list) or len(data) == PAGE_SIZE:
            return None
        if len(data) > self.options.max_list_items:
            raise self._endless(
                path,
                f"it returned more than {self.options.max_list_items:,} items in one answer",
                1,
            )
        return [item for item in data if isinstance(item, dict)]

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
        unparsed: bool = False,
    ) -> _AnsweredCall:
        """One logical call with retries; returns the parsed 2xx answer (its raw bytes only,
        with `unparsed`) or raises EndpointError."""
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
                    unparsed=unparsed,
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
        # Only a call's first retry goes straight into the pacer's pause: that pause may end
        # before the server's window does (a tenth of it), and retries at that rate would spend
        # every attempt inside the window that refused them.
        paced = (
            self._pacer.retry_after_429()
            if isinstance(exc, RateLimitedError) and attempt == 1
            else None
        )
        if paced is not None:
            delay = paced
        elif announced is not None:
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
        unparsed: bool = False,
    ) -> _Answer:
        """Send one HTTP request; read the body under the size cap; parse JSON (a 2xx body is
        left as raw bytes with `unparsed`: the caller decides whether it needs parsing)."""
        url = self._url(path)
        if content is None and json_body is not None:
            content = _dump(json_body)
        await self._pacer.acquire()
        signal = RateSignal()
        deadline = self.options.request_deadline_s
        sent = False
        try:
            request = self._request(method, path, content=content, params=params)
            async with asyncio.timeout(deadline):
                response = await self._transport.handle_async_request(request)
                response.request = request
                sent = True
                try:
                    raw = await self._read_capped(response, url, uncertain=op in WRITES)
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
        if raw and not (unparsed and 200 <= response.status_code < 300):
            body = _parsed_body(
                response.status_code, response.headers, raw, method=method, url=url, op=op
            )
        return _Answer(response.status_code, body, response.headers, raw)

    def _request(
        self,
        method: str,
        path: str,
        *,
        content: bytes | None,
        params: Mapping[str, str] | None,
    ) -> httpx.Request:
        """One request with the client's headers and timeouts, the same as httpx.AsyncClient
        built it (headers in the same order), from the path's URL parsed once; `content` is
        sent as JSON."""
        url = self._urls.get(path)
        if url is None:
            url = self._urls[path] = httpx.URL(self._url(path))
        headers = [(b"Host", url.netloc)]
        if not content and method in ("POST", "PUT", "PATCH"):
            headers.append((b"Content-Length", b"0"))
        headers += self._headers
        if content is not None:
            headers.append((b"Content-Type", b"application/json"))
        if content:
            headers.append((b"Content-Length", str(len(content)).encode()))
        request = httpx.Request(
            method,
            url,
            params=params,
            headers=headers,
            stream=httpx.ByteStream(content or b""),
            extensions={"timeout": self._timeouts},
        )
        request.read()  # as for content=: `request.content` is then at hand (no copy)
        return request

    async def _read_capped(self, response: httpx.Response, url: str, *, uncertain: bool) -> bytes:
        """The decoded body, at most `max_body_bytes`; BadResponseError (`uncertain`: the
        request was received, so a write may have taken effect) when it is over the cap or
        cannot be decoded."""
        limit = self.options.max_body_bytes
        declared = response.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise BadResponseError(
                f"the response of {url} is {int(declared):,} bytes, over the {limit:,}-byte cap",
                url=url,
                status=response.status_code,
                uncertain=uncertain,
            )
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in response.aiter_bytes():  # decoded: caps a gzip bomb too
                size += len(chunk)
                if size > limit:
                    raise BadResponseError(
                        f"the response of {url} exceeds the {limit:,}-byte cap; reading stopped",
                        url=url,
                        status=response.status_code,
                        uncertain=uncertain,
                    )
                chunks.append(chunk)
        except httpx.DecodingError as exc:
            raise BadResponseError(
                f"the response of {url} does not decode as its Content-Encoding says: {exc}",
                url=url,
                status=response.status_code,
                uncertain=uncertain,
            ) from exc
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
    # Lone surrogates (valid JSON, as in an id a server sent) are written as their \uXXXX
    # escapes by `dump_json`, which is the same JSON string.
    return dump_json(value)


def _parsed_body(
    status: int, headers: httpx.Headers, raw: bytes, *, method: str, url: str, op: Operation
) -> Any:
    """The parsed JSON of an answer; a 2xx that is not JSON is BadResponseError, an error
    status with a non-JSON body is None (translated by its status)."""
    try:
        return parse_json(raw, source=f"the response of {method} {url}")
    except UntrustedJSONError as exc:
        if 200 <= status < 300:
            ctype = headers.get("Content-Type", "")
            kind = (
                "an HTML page"
                if "html" in ctype or raw.lstrip()[:1] == b"<"
                else f"a {ctype or 'non-JSON'} body"
            )
            raise BadResponseError(
                f"{method} {url} answered HTTP {status} with {kind}, not"
                f" the documented JSON: {exc.message}",
                url=url,
                status=status,
                uncertain=op in WRITES,
            ) from exc
        return None


# ---- data-app calls (docs/databrain-api.md "Changing what is already in a workspace") -------


_T = TypeVar("_T")


class DataAppClient:
    """The embed calls of one data app, authenticated by its API key (not the service token).

    Shares the request machinery of `DatabrainClient` (retries, size caps, pacing, error
    translation); answers are then made specific to embeds by `apierrors.refine_data_app_error`.
    Embed ids are minted by the server: every method that creates one returns the id the
    answer carries. Use as `async with`.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        data_app: str,
        key_source: str = "the configured API key",
        transport: httpx.AsyncBaseTransport | None = None,
        options: ClientOptions | None = None,
        pacer: Pacer | None = None,
        sleep: Sleep | None = None,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.data_app = data_app
        self.key_source = key_source
        # One DatabrainClient holding the key: its private request machinery is shared on
        # purpose (same module), so retries, caps and pacing stay in one place.
        self._http = DatabrainClient(
            base_url,
            api_key,
            token_source=f"{key_source} (data app {data_app!r})",
            transport=transport,
            options=options,
            pacer=pacer,
            sleep=sleep,
            clock=clock,
            rand=rand,
        )
        self.base_url = self._http.base_url

    async def __aenter__(self) -> DataAppClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def list_embeds(self) -> list[Embed]:
        """Every embed of the data app (all pages). `access_settings` is None: the listing does
        not carry them (`export_embed` does). The listing names no workspace."""
        items = await self._guarded(
            DataAppRequest(self.data_app, self.key_source, "list_embeds"),
            self._http._paginate("GET", "/api/v2/data-app/embeds", None, "list_embeds"),
        )
        embeds: dict[str, Embed] = {}
        for item in items:
            embed = _embed_of(item)
            if embed is not None:
                embeds.setdefault(embed.id, embed)
        return list(embeds.values())

    async def create_embed(
        self,
        workspace: str,
        dashboard_id: str,
        name: str,
        *,
        embed_type: str = "dashboard",
        access_settings: JSONObject | None = None,
        metric_id: str | None = None,
    ) -> str:
        """Create an embed of a dashboard (or of one of its metrics); returns the embed id the
        server minted. Not retried after it may have reached the server: confirm through
        `list_embeds` before creating again."""
        body: JSONObject = {
            "dashboardId": dashboard_id,
            "embedType": embed_type,
            "workspaceName": workspace,
            "name": name,
        }
        if access_settings is not None:
            body["accessSettings"] = access_settings
        if metric_id is not None:
            body["metricId"] = metric_id
        request = DataAppRequest(
            self.data_app,
            self.key_source,
            "create_embed",
            workspace=workspace,
            dashboard_id=dashboard_id,
        )
        answer = await self._guarded(
            request,
            self._http._call(
                "POST",
                "/api/v2/data-app/embeds",
                body,
                op="create_embed",
                workspace=workspace,
                dashboard_id=dashboard_id,
            ),
        )
        embed_id = answer.body.get("id") if isinstance(answer.body, dict) else None
        if not isinstance(embed_id, str) or not embed_id:
            url = self._http._url("/api/v2/data-app/embeds")
            raise BadResponseError(
                f"{url} created an embed of {dashboard_id!r} but its answer carries no `id`",
                url=url,
                status=answer.status,
                uncertain=True,
            )
        return embed_id

    async def export_embed(self, embed_id: str) -> EmbedExport:
        """The embed (with its access settings) and its dashboard's payload."""
        path = "/api/v2/data-app/embeds/export"
        answer = await self._guarded(
            DataAppRequest(self.data_app, self.key_source, "export_embed", embed_id=embed_id),
            self._http._call("GET", path, None, op="export_embed", params={"embedId": embed_id}),
        )
        document = answer.body if isinstance(answer.body, dict) else {}
        meta = document.get("_meta")
        if not isinstance(meta, dict) or not isinstance(document.get("data"), dict):
            raise BadResponseError(
                f"export of embed {embed_id!r} from {self._http._url(path)} did not return"
                " `_meta` and `data` objects",
                url=self._http._url(path),
                status=answer.status,
            )
        settings = meta.get("embedDataAppAccessSetting")
        metric_id = meta.get("metricId")
        embed = Embed(
            id=_text(meta.get("embedId")) or embed_id,
            name=_text(meta.get("name")),
            type=_text(meta.get("embedType")),
            dashboard_id=_text(meta.get("dashboardId")),
            access_settings=settings if isinstance(settings, dict) else {},
            metric_id=metric_id if isinstance(metric_id, str) else None,
        )
        return EmbedExport(embed=embed, raw=answer.raw, document=document)

    async def update_access_settings(self, embed_id: str, access_settings: JSONObject) -> None:
        """Set an embed's access settings (the embed keeps its dashboard). Retried like a read:
        setting the same values twice is harmless."""
        await self._guarded(
            DataAppRequest(self.data_app, self.key_source, "update_embed", embed_id=embed_id),
            self._http._call(
                "PUT",
                "/api/v2/data-app/embeds",
                {"embedId": embed_id, "accessSettings": access_settings},
                op="update_embed",
            ),
        )

    async def rename_embed(
        self, embed_id: str, name: str, *, rename_dashboard: bool = False
    ) -> None:
        """Rename an embed (and its dashboard, when asked)."""
        body: JSONObject = {"embedId": embed_id, "name": name}
        if rename_dashboard:
            body["isRenameDashboard"] = True
        await self._guarded(
            DataAppRequest(self.data_app, self.key_source, "rename_embed", embed_id=embed_id),
            self._http._call("PUT", "/api/v2/data-app/embeds/rename", body, op="rename_embed"),
        )

    async def delete_embed(self, embed_id: str, *, delete_dashboard: bool = False) -> None:
        """Delete an embed; with `delete_dashboard`, permanently delete its dashboard and every
        other embed of it. Not retried after it may have reached the server: a later
        `EmbedNotFoundError` may mean an earlier attempt succeeded — confirm by listing."""
        params = {"embedId": embed_id}
        if delete_dashboard:
            params["isDeleteDashboard"] = "true"
        await self._guarded(
            DataAppRequest(self.data_app, self.key_source, "delete_embed", embed_id=embed_id),
            self._http._call(
                "DELETE", "/api/v2/data-app/embeds", None, op="delete_embed", params=params
            ),
        )

    async def list_dashboards(self) -> list[DataAppDashboard]:
        """The dashboards the data app embeds, each with its embed id (all pages)."""
        items = await self._guarded(
            DataAppRequest(self.data_app, self.key_source, "list_app_dashboards"),
            self._http._paginate("GET", "/api/v2/data-app/dashboards", None, "list_app_dashboards"),
        )
        return [
            DataAppDashboard(dashboard_id, _text(item.get("name")), embed_id)
            for item in items
            if (dashboard_id := _text(item.get("externalDashboardId")))
            and (embed_id := _text(item.get("embedId")))
        ]

    async def _guarded(self, request: DataAppRequest, call: Awaitable[_T]) -> _T:
        """Await `call`, its errors made specific to this data app."""
        try:
            return await call
        except EndpointError as exc:
            raise refine_data_app_error(exc, request) from exc


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _embed_of(item: JSONObject) -> Embed | None:
    """An `Embed` from one listing item, or None when it carries no embed id."""
    meta = item.get("embedMetadata")
    meta = meta if isinstance(meta, dict) else {}
    dashboard = item.get("externalDashboard")
    dashboard = dashboard if isinstance(dashboard, dict) else {}
    embed_id = _text(item.get("embedId")) or _text(meta.get("embedId"))
    if not embed_id:
        return None
    metric_id = meta.get("metricId")
    return Embed(
        id=embed_id,
        name=_text(item.get("name")) or _text(meta.get("name")),
        type=_text(item.get("embedType")) or _text(meta.get("embedType")),
        dashboard_id=_text(dashboard.get("externalDashboardId")) or _text(meta.get("dashboardId")),
        metric_id=metric_id if isinstance(metric_id, str) else None,
        dashboard_name=_text(dashboard.get("name")),
    )

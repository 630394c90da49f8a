"""Per-request machinery around the sandbox's handlers: the body is buffered and parsed once,
faults are injected in the documented order (rate limit -> latency -> injected 5xx -> endless
listing pages; the body trickles out at `slow_body_bps`; `rate_header_override` headers go on
every answer; with `echo_credentials` the request's Authorization header is echoed into error
bodies, listed names and exports), and every request is logged on the `Sandbox` with its kind,
workspace, dashboard id, status and times.
"""

from __future__ import annotations

import time
from typing import Any

import anyio
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from migrate.sandbox import codec
from migrate.sandbox.faults import ConnectionDropped, Faults
from migrate.sandbox.state import RequestKind, RequestRecord, Sandbox

JSON_TYPE = "application/json; charset=utf-8"  # what Express sends
INFO = "migrate.sandbox"  # scope key: what the middleware learned about this request
INVALID_JSON = object()  # INFO["body"] when the body is not JSON

_KINDS: dict[tuple[str, str], RequestKind] = {
    ("GET", "/api/v2/workspace"): "list_workspaces",
    ("POST", "/api/v2/workspace/dashboards"): "list_dashboards",
    ("POST", "/api/v2/workspace/metrics"): "list_metrics",
    ("POST", "/api/v2/data-app/export-dashboard"): "export",
    ("POST", "/api/v2/data-app/import-dashboard"): "import",
    ("GET", "/api/v2/data-app/embeds"): "list_embeds",
    ("POST", "/api/v2/data-app/embeds"): "create_embed",
    ("GET", "/api/v2/data-app/embeds/export"): "export_embed",
    ("PUT", "/api/v2/data-app/embeds"): "update_embed",
    ("PUT", "/api/v2/data-app/embeds/rename"): "rename_embed",
    ("DELETE", "/api/v2/data-app/embeds"): "delete_embed",
    ("GET", "/api/v2/data-app/dashboards"): "list_app_dashboards",
    ("POST", "/api/v2/workspace"): "create_workspace",
    ("GET", "/api/v2/datasource"): "list_datasources",
    ("PUT", "/api/v2/workspace/dashboards"): "rebind_filters",
}
_FAIL_BODIES = {
    500: ("INTERNAL_SERVER_ERROR", "Internal Server Error"),
    502: ("BAD_GATEWAY", "Bad Gateway"),
    503: ("SERVICE_UNAVAILABLE", "Service Unavailable"),
}


def json_bytes(value: Any) -> bytes:
    """Compact UTF-8 JSON, as Express's `res.json` writes it."""
    return codec.dumps_bytes(value)


def error_response(status: int, code: str, message: str, **headers: str) -> Response:
    """The documented error shape `{"error": {"code", "message"}}`."""
    body = json_bytes({"error": {"code": code, "message": message}})
    return Response(body, status_code=status, media_type=JSON_TYPE, headers=headers or None)


class SandboxMiddleware:
    """Buffers the body, injects faults in the documented order, and logs every request."""

    def __init__(self, app: ASGIApp, sandbox: Sandbox) -> None:
        self.app = app
        self.sandbox = sandbox

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sandbox, faults = self.sandbox, self.sandbox.faults
        started = sandbox.request_started()
        method, path = scope["method"], scope["path"]
        info: dict[str, Any] = {"workspace": None, "dashboard_id": None, "status": 500}
        scope[INFO] = info
        rate_headers: dict[str, str] = {}

        kind = _KINDS.get((method, path), "unknown")
        echo = _bearer_of(scope) if faults.echo_credentials != "off" else None

        async def plain_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                info["status"] = message["status"]
                extra = _header_list({**rate_headers, **faults.rate_header_override})
                if extra:
                    message = {**message, "headers": [*message["headers"], *extra]}
            elif message["type"] == "http.response.body" and faults.slow_body_bps > 0:
                await _trickle(message, send, faults.slow_body_bps)
                return
            await send(message)

        send_wrapper: Send = (
            plain_send
            if echo is None
            else _echoing(plain_send, echo, kind, faults.echo_credentials == "all")
        )
        dropped = False
        try:
            body = await _read_body(receive)
            _peek(scope, info, body)
            replay = _replay(body, receive)
            limit = faults.rate_limit
            if limit is not None:
                client = scope.get("client")
                decision = sandbox.rate_limiter.check(
                    client[0] if client else "?",
                    limit[0],
                    limit[1],
                    http_date=faults.retry_after_http_date,
                    mode=faults.rate_mode,
                    headers=faults.rate_headers,
                    retry_after_s=faults.retry_after_s,
                )
                rate_headers = decision.headers
                if not decision.allowed:
                    response = error_response(
                        429, "RATE_LIMIT_EXCEEDED", "Too many requests, please try again later."
                    )
                    await response(scope, replay, send_wrapper)
                    return
            if faults.latency_ms > 0:
                await anyio.sleep(faults.latency_ms / 1000)
            status = faults.draw_failure()
            if status is not None:
                await _failure(status, echo)(scope, replay, send_wrapper)
                return
            if faults.endless_pages != "off" and kind.startswith("list_"):
                page = _endless_page(faults, kind, _page_number(scope, info["body"]))
                await page(scope, replay, send_wrapper)
                return
            await self.app(scope, replay, send_wrapper)
        except ConnectionDropped:
            dropped = True
            raise
        finally:
            sandbox.request_finished(
                RequestRecord(
                    method=method,
                    path=path,
                    kind=_KINDS.get((method, path), "unknown"),
                    workspace=info["workspace"],
                    dashboard_id=info["dashboard_id"],
                    status=info["status"],
                    started=started,
                    finished=time.monotonic(),
                    dropped=dropped,
                )
            )


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _peek(scope: Scope, info: dict[str, Any], body: bytes) -> None:
    """Parse the body once (handlers reuse it) and note workspace/dashboard for the log."""
    parsed: Any
    content_type = dict(scope["headers"]).get(b"content-type", b"").split(b";")[0].strip()
    if scope["method"] == "GET":
        parsed = None
    elif not body.strip() or not content_type.lower().endswith(b"json"):
        # Express's JSON parser leaves the body {} when it is empty or not labelled JSON, so
        # a client that forgets Content-Type hears '"workspaceName" is required'.
        parsed = {}
    else:
        try:
            parsed = codec.loads(body)
        except (ValueError, UnicodeDecodeError):
            parsed = INVALID_JSON
    info["body"] = parsed
    if isinstance(parsed, dict):
        for key, slot in (("workspaceName", "workspace"), ("dashboardId", "dashboard_id")):
            if isinstance(parsed.get(key), str):
                info[slot] = parsed[key]


def _failure(status: int, echo: str | None) -> Response:
    """An injected 5xx: the documented JSON error, or (echoing) a proxy's HTML error page."""
    code, message = _FAIL_BODIES.get(status, ("INTERNAL_SERVER_ERROR", "Error"))
    if echo is not None:
        return _html_page(status, message, echo)
    return error_response(status, code, message)


def _bearer_of(scope: Scope) -> str:
    """The request's Authorization header value, as sent."""
    value: bytes = dict(scope["headers"]).get(b"authorization", b"")
    return value.decode("latin-1")


def _html_page(status: int, reason: str, authorization: str) -> Response:
    page = (
        f"<html><head><title>{status} {reason}</title></head><body><h1>{reason}</h1>"
        f"<p>request headers: Authorization: {authorization}</p></body></html>"
    )
    return Response(page.encode(), status_code=status, media_type="text/html")


def _echoing(send: Send, authorization: str, kind: str, exports: bool) -> Send:
    """A `send` that holds a response until its body is complete, then sends it with
    `authorization` echoed in (see `_echoed`)."""
    held: list[Message] = []

    async def echoing_send(message: Message) -> None:
        held.append(message)
        if message["type"] != "http.response.body" or message.get("more_body"):
            return
        messages = _echoed(held.copy(), authorization, kind, exports)
        held.clear()
        for each in messages:
            await send(each)

    return echoing_send


def _echoed(messages: list[Message], authorization: str, kind: str, exports: bool) -> list[Message]:
    """The response in `messages` with `authorization` echoed into it: the message of a JSON
    error, the name of every listed item, and (`exports`) an export's `_meta`."""
    start, *bodies = messages
    body = b"".join(m.get("body", b"") for m in bodies)
    status = start["status"]
    try:
        document = codec.loads(body)
    except (ValueError, UnicodeDecodeError):
        document = None
    echo = f"bad request with header Authorization: {authorization}"
    if isinstance(document, dict):
        error = document.get("error")
        data = document.get("data")
        if status >= 400 and isinstance(error, dict):
            error["message"] = f"{error.get('message', '')} ({echo})"
        elif kind.startswith("list_") and isinstance(data, list):
            for item in data:
                if isinstance(item, dict) and isinstance(item.get("name"), str):
                    item["name"] = f"{item['name']} ({echo})"
        elif kind == "export" and exports and isinstance(document.get("_meta"), dict):
            document["_meta"]["requestedWith"] = authorization
        else:
            return messages
        body = json_bytes(document)
    else:
        return messages
    headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
    headers.append((b"content-length", str(len(body)).encode()))
    return [{**start, "headers": headers}, {"type": "http.response.body", "body": body}]


def _header_list(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    # Latin-1, as HTTP/1.1 headers are; overrides are printable by construction.
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]


async def _trickle(message: Message, send: Send, bytes_per_second: float) -> None:
    """Send one body message a few bytes at a time, `bytes_per_second` on average."""
    body: bytes = message.get("body", b"")
    more = message.get("more_body", False)
    step = max(1, int(bytes_per_second / 20))  # ~20 sends a second, at least one byte each
    for start in range(0, len(body), step):
        if start:
            await anyio.sleep(step / bytes_per_second)
        last = start + step >= len(body)
        await send(
            {"type": "http.response.body", "body": body[start : start + step],
             "more_body": more or not last}
        )  # fmt: skip
    if not body:
        await send(message)


def _page_number(scope: Scope, body: Any) -> int:
    """The requested page (1 when absent or unreadable)."""
    raw: Any = body.get("pageNumber") if isinstance(body, dict) else None
    if scope["method"] == "GET":
        for pair in scope.get("query_string", b"").decode("latin-1").split("&"):
            key, _, value = pair.partition("=")
            if key == "pageNumber":
                raw = value
    try:
        return max(1, int(raw))
    except (TypeError, ValueError):
        return 1


def _endless_page(faults: Faults, kind: str, page: int) -> Response:
    """A full page of a listing that never ends (`endless`) or alternates two sets (`cycle`)."""
    if faults.endless_pages == "cycle":
        prefix = "cycle-a" if page % 2 else "cycle-b"
    else:
        prefix = f"endless-{page}"
    key = {"list_dashboards": "externalDashboardId", "list_metrics": "metricId"}.get(kind)
    items: list[dict[str, str]] = []
    for i in range(10):  # the API's page size: a full page, so a client asks for the next
        item = {"name": f"{prefix}-{i}"}
        if key:
            item[key] = f"{prefix}-{i}"
        items.append(item)
    return Response(json_bytes({"data": items, "error": None}), media_type=JSON_TYPE)

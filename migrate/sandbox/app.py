"""The Starlette app that imitates Databrain's REST API (docs/databrain-api.md) over a `Sandbox`.

Per request, `SandboxMiddleware` buffers the body, applies rate limit -> latency -> injected
5xx, and logs the request; the route handlers then check the token, validate like Joi, and talk
to the store. Imports that commit may lose their response (`drop_rate`): the handler returns a
`_DroppedResponse`, which announces the whole body, sends half, and raises `ConnectionDropped`.
"""

from __future__ import annotations

import hmac
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from migrate.sandbox import validation
from migrate.sandbox.config import SandboxConfig
from migrate.sandbox.faults import ConnectionDropped
from migrate.sandbox.middleware import (
    INFO,
    INVALID_JSON,
    JSON_TYPE,
    SandboxMiddleware,
    error_response,
    json_bytes,
)
from migrate.sandbox.rewrite import apply_schema_pairs, remint_metric_ids
from migrate.sandbox.state import Sandbox

PAGE_SIZE = 10


def _ok(data: Any) -> Response:
    return Response(json_bytes({"data": data, "error": None}), media_type=JSON_TYPE)


class _DroppedResponse(Response):
    """Announces the full body, sends half of it, then cuts the exchange."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": self.body[: len(self.body) // 2],
                    "more_body": True})  # fmt: skip
        raise ConnectionDropped("sandbox dropped the connection after committing the import")


def _sandbox(request: Request) -> Sandbox:
    sandbox: Sandbox = request.app.state.sandbox
    return sandbox


def _checked(request: Request, fields: tuple[validation.Field, ...]) -> dict[str, Any] | Response:
    """Auth first, then Joi-style validation; a Response means: answer with it."""
    sandbox = _sandbox(request)
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        token.strip().encode(), sandbox.config.token.encode()
    ):
        return error_response(400, "AUTH_ERROR", "Invalid Service Token")
    if request.method == "GET":
        body: Any = dict(request.query_params)
    else:
        body = request.scope[INFO]["body"]
        if body is INVALID_JSON:
            return error_response(400, "INVALID_REQUEST_BODY", "Request body is not valid JSON")
    try:
        return validation.validate(body, fields, convert=request.method == "GET")
    except validation.ValidationFailed as exc:
        return error_response(400, "INVALID_REQUEST_BODY", str(exc))


def _page(args: dict[str, Any]) -> tuple[int, int]:
    """(limit, offset) for SQLite; -1 = everything when pagination is off."""
    if not args.get("isPagination", False):
        return -1, 0
    return PAGE_SIZE, (args.get("pageNumber", 1) - 1) * PAGE_SIZE


def _no_workspace() -> Response:
    return error_response(
        400, "WORKSPACE_ID_ERROR", "invalid workspace name, workspace name not found"
    )


async def list_workspaces(request: Request) -> Response:
    """GET /api/v2/workspace -> [{"name"}]."""
    args = _checked(request, validation.LIST_WORKSPACES)
    if isinstance(args, Response):
        return args
    limit, offset = _page(args)
    names = _sandbox(request).store.workspaces(limit=limit, offset=offset)
    return _ok([{"name": name} for name in names])


def _list_in_workspace(request: Request, what: str, id_key: str) -> Response:
    """A paginated listing of one workspace: `[{"name", id_key}]` of its dashboards/metrics."""
    args = _checked(request, validation.LIST_IN_WORKSPACE)
    if isinstance(args, Response):
        return args
    store = _sandbox(request).store
    if not store.has_workspace(args["workspaceName"]):
        return _no_workspace()
    limit, offset = _page(args)
    fetch = store.list_dashboards if what == "dashboards" else store.list_metrics
    rows = fetch(args["workspaceName"], limit=limit, offset=offset)
    return _ok([{"name": name, id_key: item_id} for item_id, name in rows])


async def list_dashboards(request: Request) -> Response:
    """POST /api/v2/workspace/dashboards -> [{"name", "externalDashboardId"}]."""
    return _list_in_workspace(request, "dashboards", "externalDashboardId")


async def list_metrics(request: Request) -> Response:
    """POST /api/v2/workspace/metrics -> [{"name", "metricId"}]."""
    return _list_in_workspace(request, "metrics", "metricId")


def content_disposition(filename: str) -> str:
    """`attachment; filename="..."`, plus an RFC 6266 `filename*` when the name is not plain ASCII.

    This is what Express's `res.attachment()` sends; a header must stay latin-1 and quote-free
    whatever characters a dashboard id holds.
    """
    fallback = "".join(c if " " <= c <= "~" and c not in '"\\' else "?" for c in filename)
    if fallback == filename:
        return f'attachment; filename="{filename}"'
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def export_dashboard(request: Request) -> Response:
    """POST /api/v2/data-app/export-dashboard -> the export file `{"_meta", "data"}`."""
    args = _checked(request, validation.EXPORT)
    if isinstance(args, Response):
        return args
    store = _sandbox(request).store
    workspace, dashboard_id = args["workspaceName"], args["dashboardId"]
    if not store.has_workspace(workspace):
        return _no_workspace()
    text = store.dashboard_text(workspace, dashboard_id)
    if text is None:
        return error_response(400, "INVALID_DASHBOARD_ID", "Dashboard not found")
    meta = {"exportedAt": _now_iso(), "workspaceName": workspace, "dashboardId": dashboard_id}
    # Splice the stored JSON text in: no parse/dump round trip for a payload of megabytes.
    body = b'{"_meta":' + json_bytes(meta) + b',"data":' + text.encode() + b"}"
    disposition = content_disposition(f"dashboard-{dashboard_id}.json")
    return Response(body, media_type=JSON_TYPE, headers={"Content-Disposition": disposition})


async def import_dashboard(request: Request) -> Response:
    """POST /api/v2/data-app/import-dashboard: create a dashboard, never overwrite."""
    args = _checked(request, validation.IMPORT)
    if isinstance(args, Response):
        return args
    sandbox = _sandbox(request)
    workspace: str = args["workspaceName"]
    if not sandbox.store.has_workspace(workspace):
        return _no_workspace()
    dashboard_id: str = args.get("dashboardId") or f"dashboard-{uuid.uuid4().hex[:12]}"
    request.scope[INFO]["dashboard_id"] = dashboard_id
    data: dict[str, Any] = args["importDashboardData"]
    if args.get("schemaPairs"):
        data = apply_schema_pairs(data, args["schemaPairs"])
    if sandbox.modes.remint_ids:
        data, _ = remint_metric_ids(data)
    payload_name = data.get("name")
    name = args.get("dashboardName") or (
        payload_name if isinstance(payload_name, str) and payload_name else dashboard_id
    )
    created = sandbox.store.insert_dashboard(
        workspace, dashboard_id, name, data, company_unique=sandbox.modes.company_unique_ids
    )
    if not created:
        return error_response(400, "INVALID_DASHBOARD_ID", "Dashboard already exists")
    sandbox.write_committed()
    metrics = data.get("metrics")
    count = len(metrics) if isinstance(metrics, list) else 0
    if sandbox.modes.legacy_import_response:
        body: dict[str, Any] = {"data": []}
    else:
        body = {
            "data": {
                "response": {
                    "message": f"Imported Dashboard with {count} metrics",
                    "dashboardId": dashboard_id,
                    "dashboardName": name,
                    "workspaceName": workspace,
                }
            },
            "error": None,
        }
    if sandbox.faults.draw_drop():
        return _DroppedResponse(json_bytes(body), media_type=JSON_TYPE)
    return Response(json_bytes(body), media_type=JSON_TYPE)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        allow = (exc.headers or {}).get("Allow", "")
        return error_response(
            405, "METHOD_NOT_ALLOWED", f"Cannot {request.method} {request.url.path}", Allow=allow
        )
    if exc.status_code == 404:
        return error_response(404, "NOT_FOUND", f"Cannot {request.method} {request.url.path}")
    return error_response(exc.status_code, "HTTP_ERROR", str(exc.detail))


async def _crash(request: Request, exc: Exception) -> Response:
    # Reached only for bugs: answer like the real API's 500, Starlette re-raises for the log.
    return error_response(500, "INTERNAL_SERVER_ERROR", "Internal Server Error")


def create_app(config: SandboxConfig) -> Starlette:
    """A Starlette app serving the sandbox API; `app.state.sandbox` is its `Sandbox`."""
    sandbox = Sandbox(config)
    routes = [
        Route("/api/v2/workspace", list_workspaces, methods=["GET"]),
        Route("/api/v2/workspace/dashboards", list_dashboards, methods=["POST"]),
        Route("/api/v2/workspace/metrics", list_metrics, methods=["POST"]),
        Route("/api/v2/data-app/export-dashboard", export_dashboard, methods=["POST"]),
        Route("/api/v2/data-app/import-dashboard", import_dashboard, methods=["POST"]),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(SandboxMiddleware, sandbox=sandbox)],
        exception_handlers={HTTPException: _http_error, Exception: _crash},
    )
    app.state.sandbox = sandbox
    return app

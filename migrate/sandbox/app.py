"""The Starlette app that imitates Databrain's REST API (docs/databrain-api.md) over a `Sandbox`.

Per request, `SandboxMiddleware` buffers the body, applies rate limit -> latency -> injected
5xx, and logs the request; the route handlers then check the credential (the service token, or
a data app's API key for the embed calls), validate like Joi, and talk to the store. Writes
that commit (imports, embed and workspace changes) may lose their response (`drop_rate`): the
handler returns a `_DroppedResponse`, which announces the whole body, sends half, and raises
`ConnectionDropped`.
"""

from __future__ import annotations

import hmac
import json
import uuid
from collections.abc import Awaitable, Callable
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
from migrate.sandbox.rewrite import (
    apply_schema_pairs,
    apply_schema_pairs_to_sql,
    remint_metric_ids,
    remint_other_ids,
)
from migrate.sandbox.state import Sandbox
from migrate.sandbox.store import EmbedRow, FilterBinding, metric_rows

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


def _bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def _checked(request: Request, fields: tuple[validation.Field, ...]) -> dict[str, Any] | Response:
    """Auth first, then Joi-style validation; a Response means: answer with it."""
    sandbox = _sandbox(request)
    token = _bearer(request)
    if token is None or not hmac.compare_digest(token.encode(), sandbox.config.token.encode()):
        return error_response(400, "AUTH_ERROR", "Invalid Service Token")
    return _validated(request, fields)


def _validated(request: Request, fields: tuple[validation.Field, ...]) -> dict[str, Any] | Response:
    """Joi-style validation of the query (GET, DELETE) or JSON body; a Response on failure."""
    if request.method in ("GET", "DELETE"):
        body: Any = dict(request.query_params)
    else:
        body = request.scope[INFO]["body"]
        if body is INVALID_JSON:
            return error_response(400, "INVALID_REQUEST_BODY", "Request body is not valid JSON")
    try:
        return validation.validate(body, fields, convert=request.method in ("GET", "DELETE"))
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
    hidden = frozenset[str]()
    if what == "dashboards":
        first = offset == 0
        hidden = _sandbox(request).faults.listing_hides(args["workspaceName"], first_page=first)
    if hidden:  # a lagging listing: page over what it shows, not over what is stored
        shown = [row for row in fetch(args["workspaceName"]) if row[0] not in hidden]
        rows = shown[offset : offset + limit] if limit >= 0 else shown[offset:]
    else:
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
    modes = sandbox.modes
    if modes.mint_dashboard_ids:  # a server that ignores the requested id
        dashboard_id = f"dashboard-{uuid.uuid4().hex[:12]}"
    request.scope[INFO]["dashboard_id"] = dashboard_id
    if sandbox.faults.refuse_import(dashboard_id):
        return error_response(400, "INVALID_REQUEST_BODY", '"importDashboardData" is not valid')
    data: dict[str, Any] = args["importDashboardData"]
    if args.get("schemaPairs"):
        rewrite = apply_schema_pairs_to_sql if modes.schema_pairs_sql_only else apply_schema_pairs
        data = rewrite(data, args["schemaPairs"])
    if modes.remint_ids:
        data, _ = remint_metric_ids(data)
    if modes.remint_other_ids:
        data = remint_other_ids(data)
    payload_name = data.get("name")
    name = args.get("dashboardName") or (
        payload_name if isinstance(payload_name, str) and payload_name else dashboard_id
    )
    created = sandbox.store.insert_dashboard(
        workspace,
        dashboard_id,
        name,
        data,
        company_unique=modes.company_unique_ids,
        duplicates=modes.no_duplicate_refusal,
    )
    if not created:
        return error_response(400, "INVALID_DASHBOARD_ID", "Dashboard already exists")
    sandbox.write_committed()
    sandbox.faults.note_write(workspace, dashboard_id)
    if sandbox.faults.draw_refusal():
        return error_response(400, "IMPORT_FAILED", "Import failed")
    metrics = data.get("metrics")
    count = len(metrics) if isinstance(metrics, list) else 0
    if modes.legacy_import_response:
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


# -- embeds: a data app's API key, not the service token ----------------------------------------


def _app_checked(
    request: Request, fields: tuple[validation.Field, ...]
) -> tuple[str, dict[str, Any]] | Response:
    """(data app name, validated args), or the Response to answer: 401 for a bad key first."""
    token = _bearer(request)
    data_app = _sandbox(request).data_app_for_key(token) if token else None
    if data_app is None:
        return error_response(401, "INVALID_DATA_APP_API_KEY", "Missing or invalid data app")
    args = _validated(request, fields)
    if isinstance(args, Response):
        return args
    return data_app, args


def _no_embed() -> Response:
    return error_response(400, "INVALID_EMBED_ID", "Embed not found")


def _committed(request: Request, body: Any) -> Response:
    """The answer to a committed write, or a cut one when `drop_rate` says so."""
    if _sandbox(request).faults.draw_drop():
        return _DroppedResponse(json_bytes(body), media_type=JSON_TYPE)
    return Response(json_bytes(body), media_type=JSON_TYPE)


def _embed_item(row: EmbedRow) -> dict[str, Any]:
    return {
        "embedId": row.id,
        "embedType": row.type,
        "name": row.name,
        "externalDashboard": {"externalDashboardId": row.dashboard_id, "name": row.dashboard_name},
        "embedMetadata": {
            "embedId": row.id,
            "name": row.name,
            "embedType": row.type,
            "dataAppName": row.data_app,
            "metricId": row.metric_id,
            "dashboardId": row.dashboard_id,
            "createdAt": row.created_at,
            "updatedAt": row.updated_at,
        },
    }


async def list_embeds(request: Request) -> Response:
    """GET /api/v2/data-app/embeds -> the data app's embeds (no workspace name, as documented)."""
    checked = _app_checked(request, validation.LIST_WORKSPACES)
    if isinstance(checked, Response):
        return checked
    data_app, args = checked
    limit, offset = _page(args)
    rows = _sandbox(request).store.list_embeds(data_app, limit=limit, offset=offset)
    return _ok([_embed_item(row) for row in rows])


async def create_embed(request: Request) -> Response:
    """POST /api/v2/data-app/embeds -> `{"id": <minted embed id>, "error": null}`."""
    checked = _app_checked(request, validation.CREATE_EMBED)
    if isinstance(checked, Response):
        return checked
    data_app, args = checked
    sandbox = _sandbox(request)
    workspace, dashboard_id = args["workspaceName"], args["dashboardId"]
    if not sandbox.store.has_workspace(workspace):
        return error_response(400, "INVALID_WORKSPACE_NAME", "Workspace not found")
    data = sandbox.store.get_dashboard(workspace, dashboard_id)
    if data is None:
        return error_response(400, "INVALID_DASHBOARD_ID", "Dashboard not found")
    metric_id = args.get("metricId")
    if args["embedType"] == "metric":
        metric_ids = {metric_id for metric_id, _ in metric_rows(data)}
        if metric_id is None:
            return error_response(400, "INVALID_REQUEST_BODY", '"metricId" is required')
        if metric_id not in metric_ids:
            return error_response(400, "INVALID_METRIC_ID", "Metric not found")
    now = _now_iso()
    row = EmbedRow(
        id=sandbox.mint_embed_id(dashboard_id),
        data_app=data_app,
        workspace=workspace,
        dashboard_id=dashboard_id,
        name=args["name"],
        type=args["embedType"],
        metric_id=metric_id if args["embedType"] == "metric" else None,
        access_settings=json.dumps(args.get("accessSettings", {}), ensure_ascii=False),
        created_at=now,
        updated_at=now,
    )
    if not sandbox.store.insert_embed(row):  # the dashboard went away in between
        return error_response(400, "INVALID_DASHBOARD_ID", "Dashboard not found")
    return _committed(request, {"id": row.id, "error": None})


async def export_embed(request: Request) -> Response:
    """GET /api/v2/data-app/embeds/export?embedId= -> `{"_meta": {...}, "data": {...}}`."""
    checked = _app_checked(request, validation.EMBED_ID)
    if isinstance(checked, Response):
        return checked
    data_app, args = checked
    store = _sandbox(request).store
    row = store.get_embed(data_app, args["embedId"])
    text = store.dashboard_text(row.workspace, row.dashboard_id) if row else None
    if row is None or text is None:
        return _no_embed()
    meta = {
        "exportedAt": _now_iso(),
        "embedId": row.id,
        "name": row.name,
        "embedType": row.type,
        "dashboardId": row.dashboard_id,
        "embedDataAppAccessSetting": json.loads(row.access_settings),
    }
    body = b'{"_meta":' + json_bytes(meta) + b',"data":' + text.encode() + b"}"
    return Response(body, media_type=JSON_TYPE)


async def update_embed(request: Request) -> Response:
    """PUT /api/v2/data-app/embeds: replace the access settings; the dashboard stays."""
    checked = _app_checked(request, validation.UPDATE_EMBED)
    if isinstance(checked, Response):
        return checked
    data_app, args = checked
    settings = json.dumps(args["accessSettings"], ensure_ascii=False)
    if not _sandbox(request).store.set_embed_access(
        data_app, args["embedId"], settings, _now_iso()
    ):
        return _no_embed()
    return _committed(request, {"id": args["embedId"], "error": None})


async def rename_embed(request: Request) -> Response:
    """PUT /api/v2/data-app/embeds/rename: rename the embed (and its dashboard when asked)."""
    checked = _app_checked(request, validation.RENAME_EMBED)
    if isinstance(checked, Response):
        return checked
    data_app, args = checked
    renamed = _sandbox(request).store.rename_embed(
        data_app,
        args["embedId"],
        args["name"],
        _now_iso(),
        rename_dashboard=args.get("isRenameDashboard", False),
    )
    if not renamed:
        return _no_embed()
    return _committed(request, {"id": args["embedId"], "error": None})


async def delete_embed(request: Request) -> Response:
    """DELETE /api/v2/data-app/embeds?embedId=&isDeleteDashboard=: the embed; with the flag,
    its dashboard and every other embed of it too, which frees the dashboard id."""
    checked = _app_checked(request, validation.DELETE_EMBED)
    if isinstance(checked, Response):
        return checked
    data_app, args = checked
    store = _sandbox(request).store
    row = store.get_embed(data_app, args["embedId"])
    if row is not None:
        request.scope[INFO].update(workspace=row.workspace, dashboard_id=row.dashboard_id)
    if row is None or not store.delete_embed(
        data_app, args["embedId"], delete_dashboard=args.get("isDeleteDashboard", False)
    ):
        return _no_embed()
    return _committed(request, {"id": args["embedId"], "error": None})


async def list_app_dashboards(request: Request) -> Response:
    """GET /api/v2/data-app/dashboards -> `[{"name", "externalDashboardId", "embedId"}]`."""
    checked = _app_checked(request, validation.LIST_WORKSPACES)
    if isinstance(checked, Response):
        return checked
    data_app, args = checked
    rows = [r for r in _sandbox(request).store.list_embeds(data_app) if r.type == "dashboard"]
    limit, offset = _page(args)
    page = rows[offset:] if limit < 0 else rows[offset : offset + limit]
    return _ok(
        [
            {"name": r.dashboard_name, "externalDashboardId": r.dashboard_id, "embedId": r.id}
            for r in page
        ]
    )


# -- preparing a target workspace: the service token ------------------------------------------

_CONNECTION_KEYS = {
    "DATASOURCE": ("datasource", "datasourceName"),
    "MULTI_DATASOURCE": ("datasource", "datasourceName"),
    "DATAMART": ("datamart", "datamartName"),
    "MULTI_DATAMART": ("datamart", "datamartName"),
}


async def create_workspace(request: Request) -> Response:
    """POST /api/v2/workspace: a workspace bound to an existing datasource or datamart."""
    args = _checked(request, validation.CREATE_WORKSPACE)
    if isinstance(args, Response):
        return args
    kind, key = _CONNECTION_KEYS[args["connectionType"]]
    other = "datamartName" if key == "datasourceName" else "datasourceName"
    if key not in args:
        return error_response(400, "INVALID_REQUEST_BODY", f'"{key}" is required')
    if other in args:
        return error_response(400, "INVALID_REQUEST_BODY", f'"{other}" is not allowed')
    store = _sandbox(request).store
    if not store.has_connection(kind, args[key]):
        return error_response(400, f"INVALID_{kind.upper()}_NAME", f"{kind.title()} not found")
    request.scope[INFO]["workspace"] = args["name"]
    if not store.create_workspace(args["name"], args["connectionType"], args[key]):
        return error_response(
            400, "WORKSPACE_ALREADY_EXISTS", "Workspace with this name already exists"
        )
    return _committed(request, {"data": {"name": args["name"]}, "error": None})


async def list_datasources(request: Request) -> Response:
    """GET /api/v2/datasource -> `[{"name"}]`, names only."""
    args = _checked(request, validation.LIST_WORKSPACES)
    if isinstance(args, Response):
        return args
    limit, offset = _page(args)
    names = _sandbox(request).store.connections("datasource", limit=limit, offset=offset)
    return _ok([{"name": name} for name in names])


async def rebind_filters(request: Request) -> Response:
    """PUT /api/v2/workspace/dashboards: filters matched by label get new `applyOnTables`;
    unknown dashboards and unmatched labels are silently ignored."""
    args = _checked(request, validation.REBIND_FILTERS)
    if isinstance(args, Response):
        return args
    store = _sandbox(request).store
    if not store.has_workspace(args["workspaceName"]):
        return _no_workspace()
    bindings = [
        FilterBinding(dashboard["dashboardId"], item["name"], tuple(item["applyOnTables"]))
        for dashboard in args["dashboards"]
        for item in dashboard["filters"]
    ]
    store.rebind_filters(args["workspaceName"], bindings)
    return _committed(request, {"data": {"success": True}, "error": None})


Handler = Callable[[Request], Awaitable[Response]]


def _dispatch(by_method: dict[str, Handler]) -> Handler:
    """One endpoint for a path served by several methods, so a 405 lists every allowed one."""

    if len(by_method) == 1:
        return next(iter(by_method.values()))

    async def endpoint(request: Request) -> Response:
        # HEAD is answered by the GET handler, as Starlette does for single-method routes.
        method = "GET" if request.method == "HEAD" else request.method
        return await by_method[method](request)

    return endpoint


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
    handlers: dict[str, dict[str, Handler]] = {
        "/api/v2/workspace": {"GET": list_workspaces, "POST": create_workspace},
        "/api/v2/workspace/dashboards": {"POST": list_dashboards, "PUT": rebind_filters},
        "/api/v2/workspace/metrics": {"POST": list_metrics},
        "/api/v2/datasource": {"GET": list_datasources},
        "/api/v2/data-app/export-dashboard": {"POST": export_dashboard},
        "/api/v2/data-app/import-dashboard": {"POST": import_dashboard},
        "/api/v2/data-app/embeds": {
            "GET": list_embeds,
            "POST": create_embed,
            "PUT": update_embed,
            "DELETE": delete_embed,
        },
        "/api/v2/data-app/embeds/export": {"GET": export_embed},
        "/api/v2/data-app/embeds/rename": {"PUT": rename_embed},
        "/api/v2/data-app/dashboards": {"GET": list_app_dashboards},
    }
    routes = [
        Route(path, _dispatch(by_method), methods=list(by_method))
        for path, by_method in handlers.items()
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(SandboxMiddleware, sandbox=sandbox)],
        exception_handlers={HTTPException: _http_error, Exception: _crash},
    )
    app.state.sandbox = sandbox
    return app

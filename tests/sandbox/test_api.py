"""The documented shapes, codes and pagination of every sandbox endpoint (in-process)."""

from __future__ import annotations

import re

import httpx
import pytest

from migrate.sandbox import Sandbox

pytestmark = pytest.mark.anyio

EXPORT = "/api/v2/data-app/export-dashboard"
IMPORT = "/api/v2/data-app/import-dashboard"
DASHBOARDS = "/api/v2/workspace/dashboards"
METRICS = "/api/v2/workspace/metrics"


def error_of(response: httpx.Response) -> tuple[int, str, str]:
    err = response.json()["error"]
    return response.status_code, err["code"], err["message"]


async def test_list_workspaces_shape(client: httpx.AsyncClient) -> None:
    """GET /workspace lists the demo workspaces as [{"name"}] with error null."""
    r = await client.get("/api/v2/workspace")
    assert r.status_code == 200
    assert r.json() == {
        "data": [
            {"name": "Sales Dev"},
            {"name": "Sales Staging"},
            {"name": "Sales Prod"},
            {"name": "Sales Dev Next"},
        ],
        "error": None,
    }


async def test_list_workspaces_paginates_with_query_strings(
    client: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    """GET pagination takes query strings: page 2 of 12 workspaces holds 2, page 3 is empty."""
    for i in range(8):
        sandbox.add_workspace(f"WS {i}")
    pages = [
        (
            await client.get("/api/v2/workspace", params={"isPagination": "true", "pageNumber": n})
        ).json()["data"]
        for n in (1, 2, 3)
    ]
    assert [len(p) for p in pages] == [10, 2, 0]
    assert pages[1] == [{"name": "WS 6"}, {"name": "WS 7"}]


async def test_list_dashboards_shape_and_order(client: httpx.AsyncClient) -> None:
    """POST /workspace/dashboards gives [{"name", "externalDashboardId"}] in insertion order."""
    r = await client.post(DASHBOARDS, json={"workspaceName": "Sales Dev"})
    body = r.json()
    assert r.status_code == 200 and body["error"] is None
    assert len(body["data"]) >= 12
    assert body["data"][0] == {"name": "Core KPIs", "externalDashboardId": "kpi-core"}
    assert all(set(item) == {"name", "externalDashboardId"} for item in body["data"])


async def test_dashboard_pages_of_twelve(client: httpx.AsyncClient, sandbox: Sandbox) -> None:
    """Ten a page, 1-based: page 2 of 12 dashboards holds 2, page 3 is [], no flag = all 12."""
    for i in range(12):
        sandbox.put_dashboard("Twelve", f"d{i:02d}", f"D {i}", {"metrics": []})

    async def page(**extra: object) -> list[str]:
        r = await client.post(DASHBOARDS, json={"workspaceName": "Twelve", **extra})
        return [d["externalDashboardId"] for d in r.json()["data"]]

    assert await page(isPagination=True) == [f"d{i:02d}" for i in range(10)]
    assert await page(isPagination=True, pageNumber=2) == ["d10", "d11"]
    assert await page(isPagination=True, pageNumber=3) == []
    assert len(await page()) == 12
    assert len(await page(isPagination=False, pageNumber=2)) == 12


async def test_list_metrics_shape(client: httpx.AsyncClient) -> None:
    """POST /workspace/metrics lists every metric of the workspace as [{"name", "metricId"}]."""
    r = await client.post(METRICS, json={"workspaceName": "Sales Dev"})
    data = r.json()["data"]
    assert r.status_code == 200 and len(data) > 12
    assert data[0]["name"] == "Revenue" and data[0]["metricId"].startswith("mtr_")
    paged = await client.post(
        METRICS, json={"workspaceName": "Sales Dev", "isPagination": True, "pageNumber": 2}
    )
    assert paged.json()["data"] == data[10:20]


async def test_export_file_shape(client: httpx.AsyncClient, sandbox: Sandbox) -> None:
    """Export answers the file: attachment header, _meta with ms-precision UTC time, stored data."""
    r = await client.post(EXPORT, json={"dashboardId": "kpi-core", "workspaceName": "Sales Dev"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    assert r.headers["content-disposition"] == 'attachment; filename="dashboard-kpi-core.json"'
    doc = r.json()
    assert set(doc) == {"_meta", "data"}
    meta = doc["_meta"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", meta["exportedAt"])
    assert meta["workspaceName"] == "Sales Dev" and meta["dashboardId"] == "kpi-core"
    assert doc["data"] == sandbox.get_dashboard("Sales Dev", "kpi-core")


async def test_export_unknown_dashboard(client: httpx.AsyncClient) -> None:
    """Exporting a dashboard that does not exist is 400 INVALID_DASHBOARD_ID."""
    r = await client.post(EXPORT, json={"dashboardId": "nope", "workspaceName": "Sales Dev"})
    assert error_of(r) == (400, "INVALID_DASHBOARD_ID", "Dashboard not found")


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (EXPORT, {"dashboardId": "kpi-core", "workspaceName": "sales dev"}),
        (IMPORT, {"workspaceName": "Nowhere", "importDashboardData": {}}),
        (DASHBOARDS, {"workspaceName": "Nowhere"}),
        (METRICS, {"workspaceName": "SALES DEV"}),
    ],
)
async def test_unknown_workspace(
    client: httpx.AsyncClient, path: str, body: dict[str, object]
) -> None:
    """An unknown (or differently cased) workspace name is 400 WORKSPACE_ID_ERROR everywhere."""
    r = await client.post(path, json=body)
    assert error_of(r) == (
        400,
        "WORKSPACE_ID_ERROR",
        "invalid workspace name, workspace name not found",
    )


@pytest.mark.parametrize("header", [None, "Bearer wrong", "sandbox-token", "Basic sandbox-token"])
async def test_bad_token_is_400_auth_error(client: httpx.AsyncClient, header: str | None) -> None:
    """A missing or wrong token is HTTP 400 AUTH_ERROR, checked before the body."""
    headers = {"Authorization": header} if header else {}
    client.headers.pop("Authorization")
    r = await client.post(EXPORT, json={"bogus": 1}, headers=headers)
    assert error_of(r) == (400, "AUTH_ERROR", "Invalid Service Token")
    r = await client.get("/api/v2/workspace", headers=headers)
    assert error_of(r)[1] == "AUTH_ERROR"


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        (EXPORT, {"workspaceName": "Sales Dev"}, '"dashboardId" is required'),
        (EXPORT, {}, '"dashboardId" is required'),
        (EXPORT, {"dashboardId": "a", "workspaceName": "Sales Dev", "x": 1}, '"x" is not allowed'),
        (EXPORT, {"dashboardId": 5, "workspaceName": "S"}, '"dashboardId" must be a string'),
        (EXPORT, [1], '"value" must be of type object'),
        (DASHBOARDS, {"workspaceName": "Sales Dev", "isPagination": "yes"},
         '"isPagination" must be a boolean'),
        (DASHBOARDS, {"workspaceName": "Sales Dev", "isPagination": True, "pageNumber": "2"},
         '"pageNumber" must be a number'),
        (IMPORT, {"workspaceName": "Sales Prod"}, '"importDashboardData" is required'),
        (IMPORT, {"workspaceName": "Sales Prod", "importDashboardData": None},
         '"importDashboardData" must be of type object'),
        (IMPORT, {"workspaceName": "Sales Prod", "importDashboardData": [1]},
         '"importDashboardData" must be of type object'),
        (IMPORT, {"workspaceName": "Sales Prod", "importDashboardData": {},
                  "schemaPairs": [{"replaceSchema": "a"}]},
         '"schemaPairs[0].targetSchema" is required'),
    ],
)  # fmt: skip
async def test_body_validation_messages(
    client: httpx.AsyncClient, path: str, body: object, message: str
) -> None:
    """Bad bodies are 400 INVALID_REQUEST_BODY with Joi's message text."""
    r = await client.post(path, json=body)
    assert error_of(r) == (400, "INVALID_REQUEST_BODY", message)


async def test_non_json_body(client: httpx.AsyncClient) -> None:
    """A body that is not JSON is 400 INVALID_REQUEST_BODY."""
    r = await client.post(
        EXPORT, content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert error_of(r)[:2] == (400, "INVALID_REQUEST_BODY")


async def test_unknown_path_and_wrong_method(client: httpx.AsyncClient) -> None:
    """Unknown paths are 404 and wrong methods 405, both as JSON errors."""
    r = await client.post("/api/v2/nothing-here", json={})
    assert r.status_code == 404 and r.json()["error"]["code"] == "NOT_FOUND"
    r = await client.get(EXPORT)
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    assert r.json()["error"]["code"] == "METHOD_NOT_ALLOWED"


async def test_request_log_and_write_count(client: httpx.AsyncClient, sandbox: Sandbox) -> None:
    """Every request is logged with kind, workspace, id, status and times; imports are counted."""
    sandbox.reset_stats()
    await client.post(EXPORT, json={"dashboardId": "kpi-core", "workspaceName": "Sales Dev"})
    data = sandbox.get_dashboard("Sales Dev", "kpi-core")
    await client.post(
        IMPORT,
        json={
            "workspaceName": "Sales Prod",
            "dashboardId": "kpi-core",
            "importDashboardData": data,
        },
    )
    await client.post(DASHBOARDS, json={"workspaceName": "Sales Prod"})
    assert sandbox.write_count == 1
    kinds = [(r.kind, r.workspace, r.dashboard_id, r.status) for r in sandbox.request_log]
    assert kinds == [
        ("export", "Sales Dev", "kpi-core", 200),
        ("import", "Sales Prod", "kpi-core", 200),
        ("list_dashboards", "Sales Prod", None, 200),
    ]
    assert all(r.finished >= r.started for r in sandbox.request_log)
    assert sandbox.requests("import", "kpi-core")[0].method == "POST"
    assert sandbox.in_flight == 0 and sandbox.max_in_flight == 1


async def test_export_of_non_ascii_id(client: httpx.AsyncClient, sandbox: Sandbox) -> None:
    """An id with non-ASCII or quote characters exports with a safe RFC 6266 header."""
    sandbox.put_dashboard("Sales Dev", 'région "1"', "R", {"metrics": []})
    r = await client.post(EXPORT, json={"dashboardId": 'région "1"', "workspaceName": "Sales Dev"})
    assert r.status_code == 200
    assert r.headers["content-disposition"] == (
        'attachment; filename="dashboard-r?gion ?1?.json"; '
        "filename*=UTF-8''dashboard-r%C3%A9gion%20%221%22.json"
    )
    assert r.json()["_meta"]["dashboardId"] == 'région "1"'


async def test_body_without_json_content_type_is_ignored(client: httpx.AsyncClient) -> None:
    """Like Express, a body not labelled application/json is read as {} (so fields are missing)."""
    body = b'{"dashboardId": "kpi-core", "workspaceName": "Sales Dev"}'
    r = await client.post(EXPORT, content=body, headers={"Content-Type": "text/plain"})
    assert error_of(r) == (400, "INVALID_REQUEST_BODY", '"dashboardId" is required')
    r = await client.post(
        EXPORT, content=body, headers={"Content-Type": "application/json; charset=utf-8"}
    )
    assert r.status_code == 200

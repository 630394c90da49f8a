"""The sandbox's embed, workspace-creation, datasource and filter-rebinding calls: documented
bodies, pagination, data-app keys, delete semantics, minted ids, seeds and faults."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from migrate.sandbox import (
    DEMO_DATA_APPS,
    ConnectionDropped,
    Sandbox,
    SandboxConfig,
    create_app,
)
from migrate.sandbox.seed import NEXT_CHANGED, demo_dashboards, demo_next_dashboards

from .conftest import AUTH, client_for

pytestmark = pytest.mark.anyio

EMBEDS = "/api/v2/data-app/embeds"
DEV_KEY = {"Authorization": "Bearer demo-dev-app-key"}
PROD_KEY = {"Authorization": "Bearer demo-prod-app-key"}
IMPORT = "/api/v2/data-app/import-dashboard"


def app_client(app: Starlette, headers: dict[str, str] = DEV_KEY) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://sandbox", headers=headers
    )


async def create(client: httpx.AsyncClient, **body: Any) -> httpx.Response:
    defaults = {"dashboardId": "kpi-core", "embedType": "dashboard", "workspaceName": "Sales Dev"}
    return await client.post(EMBEDS, json={**defaults, "name": "E", **body})


def error_of(r: httpx.Response) -> tuple[int, str, str]:
    err = r.json()["error"]
    return r.status_code, err["code"], err["message"]


async def test_demo_seed_holds_data_apps_embeds_bindings_and_next(sandbox: Sandbox) -> None:
    """The demo seeds one keyed data app per workspace, 2 embeds on one dashboard and none on
    most, datasources, bound workspaces, and a next version differing in 3 dashboards only."""
    assert [name for name, _, _ in DEMO_DATA_APPS] == [
        "Sales Dev App",
        "Sales Dev Next App",
        "Sales Staging App",
        "Sales Prod App",
    ]
    rows = sandbox.store.list_embeds("Sales Dev App")
    per_dashboard = {
        r.dashboard_id: sum(x.dashboard_id == r.dashboard_id for x in rows) for r in rows
    }
    assert per_dashboard["sales-overview"] == 2 and len(per_dashboard) < 14
    assert sandbox.embed_ids("Sales Prod App") == []
    assert sandbox.workspace_binding("Sales Prod") == ("DATASOURCE", "pg-prod")
    assert sandbox.workspace_binding("Sales Dev Next") == ("DATASOURCE", "pg-dev")
    assert len(sandbox.list_dashboards("Sales Dev")) == 14
    assert sandbox.list_dashboards("Sales Staging") == sandbox.list_dashboards("Sales Prod") == []
    now, nxt = dict((i, d) for i, _, d in demo_dashboards()), demo_next_dashboards()
    changed = {i for i, _, d in nxt if d != now[i]}
    assert changed == set(NEXT_CHANGED)
    assert all(sandbox.get_dashboard("Sales Dev Next", i) == d for i, _, d in nxt)


async def test_reseeding_keeps_embeds_once(tmp_path: Any) -> None:
    """Re-opening a seeded file neither duplicates nor re-creates the data apps and embeds."""
    db = tmp_path / "s.db"
    first: Sandbox = create_app(SandboxConfig(db, seed="demo")).state.sandbox
    ids = first.embed_ids("Sales Dev App")
    first.close()
    again: Sandbox = create_app(SandboxConfig(db, seed="demo")).state.sandbox
    assert again.embed_ids("Sales Dev App") == ids and len(ids) == 4


async def test_list_embeds_shape_and_pagination(app: Starlette, sandbox: Sandbox) -> None:
    """GET embeds: the documented item shape, no workspace name, 10 a page via query strings."""
    async with app_client(app) as client:
        whole = (await client.get(EMBEDS)).json()
        first = whole["data"][0]
        assert set(first) == {"embedId", "embedType", "name", "externalDashboard", "embedMetadata"}
        assert first["externalDashboard"] == {
            "externalDashboardId": "sales-overview",
            "name": "Sales Overview",
        }
        assert set(first["embedMetadata"]) == {
            "embedId", "name", "embedType", "dataAppName", "metricId", "dashboardId",
            "createdAt", "updatedAt",
        }  # fmt: skip
        assert first["embedMetadata"]["dataAppName"] == "Sales Dev App"
        assert "workspace" not in str(first).lower()
        for _ in range(8):
            assert (await create(client)).status_code == 200
        pages = [
            (await client.get(EMBEDS, params={"isPagination": "true", "pageNumber": n})).json()
            for n in (1, 2, 3)
        ]
    assert [len(p["data"]) for p in pages] == [10, 2, 0]
    assert [e["embedId"] for p in pages for e in p["data"]] == sandbox.embed_ids("Sales Dev App")


@pytest.mark.parametrize(
    "headers",
    [{}, AUTH, PROD_KEY | {"Authorization": "Bearer nope"}, {"Authorization": "demo-dev-app-key"}],
)
async def test_embed_calls_need_a_data_app_key(app: Starlette, headers: dict[str, str]) -> None:
    """No key, the service token, a wrong key or no Bearer scheme: 401 INVALID_DATA_APP_API_KEY."""
    async with app_client(app, headers) as client:
        for r in (
            await client.get(EMBEDS),
            await create(client),
            await client.get(f"{EMBEDS}/export", params={"embedId": "x"}),
            await client.put(EMBEDS, json={"embedId": "x", "accessSettings": {}}),
            await client.put(f"{EMBEDS}/rename", json={"embedId": "x", "name": "n"}),
            await client.delete(EMBEDS, params={"embedId": "x"}),
            await client.get("/api/v2/data-app/dashboards"),
        ):
            assert error_of(r) == (401, "INVALID_DATA_APP_API_KEY", "Missing or invalid data app")


async def test_each_data_app_sees_only_its_embeds(app: Starlette, sandbox: Sandbox) -> None:
    """Another data app's embed is 'Embed not found' for export and delete, and untouched."""
    dev_id = sandbox.embed_ids("Sales Dev App")[0]
    async with app_client(app, PROD_KEY) as client:
        assert (await client.get(EMBEDS)).json()["data"] == []
        r = await client.get(f"{EMBEDS}/export", params={"embedId": dev_id})
        assert error_of(r) == (400, "INVALID_EMBED_ID", "Embed not found")
        r = await client.delete(EMBEDS, params={"embedId": dev_id, "isDeleteDashboard": "true"})
        assert error_of(r)[2] == "Embed not found"
    assert dev_id in sandbox.embed_ids("Sales Dev App")


@pytest.mark.parametrize("scheme", ["suffix", "uuid"])
async def test_create_mints_unpredictable_ids(scheme: str) -> None:
    """POST embeds answers {"id", "error": null}; ids follow the scheme and never repeat."""
    app = create_app(SandboxConfig(":memory:", seed="demo", embed_ids=scheme))
    async with app_client(app) as client:
        answers = [(await create(client, name=f"E{i}")).json() for i in range(5)]
    ids = [a["id"] for a in answers]
    assert all(a == {"id": a["id"], "error": None} for a in answers)
    assert len(set(ids)) == 5 and "kpi-core" not in ids
    pattern = r"kpi-core__[A-Za-z0-9]{8}" if scheme == "suffix" else r"[0-9a-f-]{36}"
    assert all(re.fullmatch(pattern, i) for i in ids)
    assert app.state.sandbox.embed_ids("Sales Dev App")[-5:] == ids


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"dashboardId": "nope"}, (400, "INVALID_DASHBOARD_ID", "Dashboard not found")),
        ({"workspaceName": "Nope"}, (400, "INVALID_WORKSPACE_NAME", "Workspace not found")),
        ({"embedType": "chart"}, (400, "INVALID_REQUEST_BODY",
                                  '"embedType" must be one of [dashboard, metric]')),
        ({"accessSettings": {"isAllowX": True}}, (400, "INVALID_REQUEST_BODY",
                                                  '"accessSettings.isAllowX" is not allowed')),
        ({"accessSettings": {"isAllowEmailReports": "yes"}},
         (400, "INVALID_REQUEST_BODY", '"accessSettings.isAllowEmailReports" must be a boolean')),
        ({"embedType": "metric", "metricId": "mtr_nope"}, (400, "INVALID_METRIC_ID",
                                                            "Metric not found")),
    ],
)  # fmt: skip
async def test_create_refusals(
    app: Starlette, sandbox: Sandbox, body: dict[str, Any], expected: tuple[int, str, str]
) -> None:
    """Unknown dashboard, workspace or metric and invalid bodies are refused, nothing stored."""
    before = sandbox.embed_ids("Sales Dev App")
    async with app_client(app) as client:
        assert error_of(await create(client, **body)) == expected
    assert sandbox.embed_ids("Sales Dev App") == before


async def test_export_update_and_rename(app: Starlette, sandbox: Sandbox) -> None:
    """Export carries _meta (access settings included) and the dashboard's data; PUT replaces
    the access settings; rename renames the embed, and the dashboard only when asked."""
    async with app_client(app) as client:
        embed_id = (await create(client, accessSettings={"isAllowEmailReports": True})).json()["id"]
        doc = (await client.get(f"{EMBEDS}/export", params={"embedId": embed_id})).json()
        assert doc["data"] == sandbox.get_dashboard("Sales Dev", "kpi-core")
        meta = doc["_meta"]
        assert {k: meta[k] for k in ("embedId", "name", "embedType", "dashboardId")} == {
            "embedId": embed_id, "name": "E", "embedType": "dashboard", "dashboardId": "kpi-core",
        }  # fmt: skip
        assert meta["embedDataAppAccessSetting"] == {"isAllowEmailReports": True}
        settings = {"datamartName": "sales-mart", "isAllowUnderlyingData": True}
        r = await client.put(EMBEDS, json={"embedId": embed_id, "accessSettings": settings})
        assert r.json() == {"id": embed_id, "error": None}
        r = await client.get(f"{EMBEDS}/export", params={"embedId": embed_id})
        assert r.json()["_meta"]["embedDataAppAccessSetting"] == settings
        r = await client.put(f"{EMBEDS}/rename", json={"embedId": embed_id, "name": "KPIs"})
        assert r.status_code == 200
        assert ("kpi-core", "Core KPIs") in sandbox.list_dashboards("Sales Dev")
        r = await client.put(
            f"{EMBEDS}/rename",
            json={"embedId": embed_id, "name": "KPIs", "isRenameDashboard": True},
        )
        assert ("kpi-core", "KPIs") in sandbox.list_dashboards("Sales Dev")
        names = {e["embedId"]: e["name"] for e in (await client.get(EMBEDS)).json()["data"]}
        assert names[embed_id] == "KPIs"
        for r in (
            await client.put(EMBEDS, json={"embedId": "nope", "accessSettings": {}}),
            await client.put(f"{EMBEDS}/rename", json={"embedId": "nope", "name": "x"}),
            await client.get(f"{EMBEDS}/export", params={"embedId": "nope"}),
        ):
            assert error_of(r) == (400, "INVALID_EMBED_ID", "Embed not found")


async def test_delete_with_dashboard_removes_it_and_all_its_embeds(
    app: Starlette, sandbox: Sandbox
) -> None:
    """isDeleteDashboard deletes the dashboard, its metrics and every embed of it (other data
    apps' too); the id can be imported again; a second delete is 400 'Embed not found'."""
    data = sandbox.get_dashboard("Sales Dev", "sales-overview")
    ids = [r.id for r in sandbox.store.list_dashboard_embeds("Sales Dev", "sales-overview")]
    async with app_client(app, PROD_KEY) as prod:  # another data app's embed of the same one
        other = (await create(prod, dashboardId="sales-overview")).json()["id"]
    async with app_client(app) as client:
        r = await client.delete(EMBEDS, params={"embedId": ids[0], "isDeleteDashboard": "true"})
        assert r.status_code == 200
        assert sandbox.get_dashboard("Sales Dev", "sales-overview") is None
        assert sandbox.store.list_dashboard_embeds("Sales Dev", "sales-overview") == []
        assert other not in sandbox.embed_ids("Sales Prod App") and ids[1] not in sandbox.embed_ids(
            "Sales Dev App"
        )
        metrics = [m for m in sandbox.store.list_metrics("Sales Dev") if "Revenue by Month" in m]
        assert metrics == []
        again = await client.delete(EMBEDS, params={"embedId": ids[0], "isDeleteDashboard": "true"})
        assert error_of(again) == (400, "INVALID_EMBED_ID", "Embed not found")
        async with client_for(app) as service:
            body = {"workspaceName": "Sales Dev", "dashboardId": "sales-overview",
                    "importDashboardData": data}  # fmt: skip
            assert (await service.post(IMPORT, json=body)).status_code == 200
        assert sandbox.get_dashboard("Sales Dev", "sales-overview") == data


async def test_delete_without_flag_keeps_the_dashboard(app: Starlette, sandbox: Sandbox) -> None:
    """Without isDeleteDashboard only the embed goes; the dashboard and its other embed stay."""
    ids = [r.id for r in sandbox.store.list_dashboard_embeds("Sales Dev", "sales-overview")]
    async with app_client(app) as client:
        r = await client.delete(EMBEDS, params={"embedId": ids[0]})
    assert r.json() == {"id": ids[0], "error": None}
    assert sandbox.get_dashboard("Sales Dev", "sales-overview") is not None
    assert [r.id for r in sandbox.store.list_dashboard_embeds("Sales Dev", "sales-overview")] == [
        ids[1]
    ]


async def test_data_app_dashboards(app: Starlette) -> None:
    """GET data-app/dashboards lists the dashboard embeds as {name, externalDashboardId,
    embedId}, metric embeds left out."""
    async with app_client(app) as client:
        data = (await client.get("/api/v2/data-app/dashboards")).json()["data"]
    assert [d["externalDashboardId"] for d in data] == [
        "sales-overview",
        "sales-overview",
        "kpi-core",
    ]
    assert set(data[0]) == {"name", "externalDashboardId", "embedId"}
    assert data[0]["name"] == "Sales Overview"


async def test_create_workspace_bound_and_taken(
    client: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    """POST workspace creates a bound workspace ({"data": {"name"}}); a taken name, an unknown
    datasource or a missing connection name is a 400 and changes nothing."""
    body = {"name": "Sales EU", "connectionType": "DATASOURCE", "datasourceName": "pg-prod"}
    r = await client.post("/api/v2/workspace", json=body)
    assert r.json() == {"data": {"name": "Sales EU"}, "error": None}
    assert sandbox.workspace_binding("Sales EU") == ("DATASOURCE", "pg-prod")
    r = await client.post("/api/v2/workspace", json={**body, "datasourceName": "pg-dev"})
    assert r.status_code == 400
    assert sandbox.workspace_binding("Sales EU") == ("DATASOURCE", "pg-prod")
    r = await client.post("/api/v2/workspace", json={**body, "name": "X", "datasourceName": "pg-x"})
    assert error_of(r) == (400, "INVALID_DATASOURCE_NAME", "Datasource not found")
    mart = {"name": "Mart WS", "connectionType": "DATAMART", "datamartName": "sales-mart"}
    assert (await client.post("/api/v2/workspace", json=mart)).status_code == 200
    assert sandbox.workspace_binding("Mart WS") == ("DATAMART", "sales-mart")
    r = await client.post("/api/v2/workspace", json={"name": "Y", "connectionType": "DATAMART"})
    assert error_of(r) == (400, "INVALID_REQUEST_BODY", '"datamartName" is required')
    r = await client.post("/api/v2/workspace", json={**body, "connectionType": "CSV"})
    assert error_of(r)[1] == "INVALID_REQUEST_BODY"
    assert "X" not in sandbox.workspaces() and "Y" not in sandbox.workspaces()
    r = await client.post("/api/v2/workspace", json=body, headers={"Authorization": "Bearer x"})
    assert error_of(r) == (400, "AUTH_ERROR", "Invalid Service Token")


async def test_datasources_paginate(client: httpx.AsyncClient, sandbox: Sandbox) -> None:
    """GET datasource lists names; 10 a page with query strings; datamarts are not listed."""
    r = await client.get("/api/v2/datasource")
    assert r.json() == {"data": [{"name": n} for n in ("pg-dev", "pg-staging", "pg-prod")],
                        "error": None}  # fmt: skip
    for i in range(9):
        sandbox.store.add_connection("datasource", f"ds-{i}")
    pages = [
        (
            await client.get("/api/v2/datasource", params={"isPagination": "true", "pageNumber": n})
        ).json()["data"]
        for n in (1, 2)
    ]
    assert [len(p) for p in pages] == [10, 2]


async def test_rebind_filters_read_back_through_export(app: Starlette, sandbox: Sandbox) -> None:
    """PUT workspace/dashboards rebinds filters by label; unknown dashboards and labels are
    ignored; the change shows in the export (and in the embed export)."""
    column = {"dataType": "string", "schemaName": "analytics", "tableName": "orders",
              "columnName": "region_code"}  # fmt: skip
    body = {
        "workspaceName": "Sales Dev",
        "dashboards": [
            {"dashboardId": "kpi-core", "filters": [
                {"name": "Region", "applyOnTables": [column]},
                {"name": "No Such Filter", "applyOnTables": [column]}]},
            {"dashboardId": "no-such-dashboard", "filters": [
                {"name": "Region", "applyOnTables": [column]}]},
        ],
    }  # fmt: skip
    before = sandbox.get_dashboard("Sales Dev", "kpi-core")
    assert before is not None
    async with client_for(app) as client:
        r = await client.put("/api/v2/workspace/dashboards", json=body)
        assert r.json() == {"data": {"success": True}, "error": None}
        export = await client.post(
            "/api/v2/data-app/export-dashboard",
            json={"dashboardId": "kpi-core", "workspaceName": "Sales Dev"},
        )
        r = await client.put("/api/v2/workspace/dashboards", json={**body, "workspaceName": "X"})
        assert error_of(r)[:2] == (400, "WORKSPACE_ID_ERROR")
        r = await client.put(
            "/api/v2/workspace/dashboards",
            json={"workspaceName": "Sales Dev", "dashboards": [{"dashboardId": "kpi-core"}]},
        )
        assert error_of(r)[2] == '"dashboards[0].filters" is required'
    columns = {c["label"]: c for c in export.json()["data"]["filters"][0]["columns"]}
    assert columns["Region"]["applyOnTables"] == [column]
    assert columns["Order Date"] == before["filters"][0]["columns"][0]
    embed_id = sandbox.store.list_dashboard_embeds("Sales Dev", "kpi-core")[0].id
    async with app_client(app) as client:
        doc = (await client.get(f"{EMBEDS}/export", params={"embedId": embed_id})).json()
    assert doc["data"]["filters"] == export.json()["data"]["filters"]


async def test_faults_apply_to_embed_calls() -> None:
    """Injected 5xx and the rate limit hit embed calls; a committed delete can lose its answer
    (and is then done), which the request log shows."""
    app = create_app(SandboxConfig(":memory:", seed="demo", random_seed=1, fail_rate=1.0))
    sandbox: Sandbox = app.state.sandbox
    async with app_client(app) as client:
        assert (await client.get(EMBEDS)).status_code in (500, 502, 503)
        sandbox.faults.fail_rate = 0
        sandbox.faults.rate_limit = (1, 60)
        sandbox.rate_limiter.reset()
        assert (await client.get(EMBEDS)).status_code == 200
        assert (await client.get(EMBEDS)).status_code == 429
        sandbox.faults.rate_limit = None
        sandbox.faults.drop_rate = 1.0
        embed_id = sandbox.embed_ids("Sales Dev App")[0]
        with pytest.raises(ConnectionDropped):
            await client.delete(EMBEDS, params={"embedId": embed_id, "isDeleteDashboard": "true"})
    assert embed_id not in sandbox.embed_ids("Sales Dev App")
    assert sandbox.get_dashboard("Sales Dev", "sales-overview") is None
    kinds = [(r.kind, r.status, r.dropped) for r in sandbox.requests()]
    assert kinds[0][0] == "list_embeds" and kinds[0][1] >= 500
    assert kinds[-1] == ("delete_embed", 200, True)
    assert sandbox.requests("delete_embed")[0].dashboard_id == "sales-overview"


async def test_data_apps_from_config() -> None:
    """SandboxConfig.data_apps creates data apps (or re-keys them); keys stay out of repr."""
    config = SandboxConfig(":memory:", data_apps=(("Ops App", "ops-key-1"),))
    assert "ops-key-1" not in repr(config)
    app = create_app(config)
    async with app_client(app, {"Authorization": "Bearer ops-key-1"}) as client:
        assert (await client.get(EMBEDS)).json() == {"data": [], "error": None}
    with pytest.raises(ValueError, match="non-empty API key"):
        SandboxConfig(":memory:", data_apps=(("Ops App", ""),))
    with pytest.raises(ValueError, match="embed_ids"):
        SandboxConfig(":memory:", embed_ids="sequential")

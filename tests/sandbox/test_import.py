"""Import semantics: never overwrite, name/id rules, schemaPairs, re-minting, company-wide ids,
legacy response shape, and persistence across restarts."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import httpx
import pytest

from migrate.sandbox import Sandbox, SandboxConfig, create_app
from migrate.sandbox.seed import DEMO

from .conftest import client_for

pytestmark = pytest.mark.anyio

IMPORT = "/api/v2/data-app/import-dashboard"
DASHBOARDS = "/api/v2/workspace/dashboards"


def payload(sandbox: Sandbox, dashboard_id: str = "sales-overview") -> dict[str, Any]:
    data = sandbox.get_dashboard("Sales Dev", dashboard_id)
    assert data is not None
    return data


async def do_import(client: httpx.AsyncClient, **body: Any) -> httpx.Response:
    return await client.post(IMPORT, json={"workspaceName": "Sales Prod", **body})


async def test_import_round_trips_unknown_keys(client: httpx.AsyncClient, sandbox: Sandbox) -> None:
    """An import stores the payload unchanged, unknown keys included, and answers the new shape."""
    data = payload(sandbox) | {"someFutureKey": {"nested": [1, 2.5, None, "ü"]}}
    r = await do_import(client, dashboardId="sales-overview", importDashboardData=data)
    assert r.status_code == 200
    assert r.json() == {
        "data": {
            "response": {
                "message": "Imported Dashboard with 3 metrics",
                "dashboardId": "sales-overview",
                "dashboardName": "Sales Overview",
                "workspaceName": "Sales Prod",
            }
        },
        "error": None,
    }
    assert sandbox.get_dashboard("Sales Prod", "sales-overview") == data
    assert sandbox.write_count == 1


async def test_duplicate_import_refused_and_nothing_created(
    client: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    """A second import of the same id is 400 INVALID_DASHBOARD_ID and changes nothing."""
    first = payload(sandbox)
    await do_import(client, dashboardId="sales-overview", importDashboardData=first)
    other = copy.deepcopy(first) | {"name": "Changed"}
    r = await do_import(client, dashboardId="sales-overview", importDashboardData=other)
    assert r.status_code == 400
    assert r.json()["error"] == {
        "code": "INVALID_DASHBOARD_ID",
        "message": "Dashboard already exists",
    }
    assert sandbox.list_dashboards("Sales Prod") == [("sales-overview", "Sales Overview")]
    assert sandbox.get_dashboard("Sales Prod", "sales-overview") == first
    assert sandbox.write_count == 1


async def test_name_and_generated_id(client: httpx.AsyncClient, sandbox: Sandbox) -> None:
    """dashboardName wins over the payload name; an omitted id is generated and returned."""
    r = await do_import(
        client, dashboardId="x1", dashboardName="Given", importDashboardData=payload(sandbox)
    )
    assert r.json()["data"]["response"]["dashboardName"] == "Given"
    r = await do_import(client, importDashboardData={"metrics": []})
    generated = r.json()["data"]["response"]["dashboardId"]
    assert generated and generated != "x1"
    assert sandbox.list_dashboards("Sales Prod") == [("x1", "Given"), (generated, generated)]
    assert sandbox.requests("import")[-1].dashboard_id == generated


async def test_schema_pairs_rewrite_sql_and_schema_fields(
    client: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    """schemaPairs rewrite qualifying schema names in SQL and whole schemaName values only."""
    data = payload(sandbox)
    data["metrics"][0]["note"] = "analytics_devx.t and my_analytics_dev.t and analytics_dev stay"
    pairs = [
        {"replaceSchema": "analytics_dev", "targetSchema": "analytics"},
        {"replaceSchema": "sales_dev", "targetSchema": "sales"},
    ]
    r = await do_import(client, dashboardId="so", importDashboardData=data, schemaPairs=pairs)
    assert r.status_code == 200
    stored = sandbox.get_dashboard("Sales Prod", "so")
    assert stored is not None
    metric = stored["metrics"][0]
    assert metric.pop("note") == data["metrics"][0]["note"]  # no qualifying use: left alone
    text = str(stored)
    assert "analytics_dev" not in text and "sales_dev" not in text
    assert "FROM analytics.orders" in metric["query"]
    assert {f["schemaName"] for f in metric["inputFields"]} == {"analytics"}
    assert stored["metrics"][1]["inputFields"][0]["schemaName"] == "sales"
    assert stored["filters"][0]["tableName"] == "analytics.orders"


async def test_remint_keeps_layout_references(sandbox: Sandbox) -> None:
    """With remint_ids, every metric gets a new id and layout `i` follows it consistently."""
    app = create_app(SandboxConfig(":memory:", seed="demo", remint_ids=True))
    remint: Sandbox = app.state.sandbox
    source = payload(remint, "exec-summary")
    async with client_for(app) as client:
        r = await do_import(client, dashboardId="exec-summary", importDashboardData=source)
    assert r.status_code == 200
    stored = remint.get_dashboard("Sales Prod", "exec-summary")
    assert stored is not None
    old_ids = [m["id"] for m in source["metrics"]]
    new_ids = [m["id"] for m in stored["metrics"]]
    assert not set(old_ids) & set(new_ids) and len(set(new_ids)) == len(new_ids)
    assert [cell["i"] for cell in stored["layout"]] == new_ids
    assert [m["metricId"] for m in stored["metrics"]] == [m["metricId"] for m in source["metrics"]]
    assert not any(old in str(stored) for old in old_ids)


async def test_company_unique_ids(sandbox: Sandbox) -> None:
    """With company_unique_ids, an id held by another workspace is refused like a duplicate."""
    app = create_app(SandboxConfig(":memory:", seed="demo", company_unique_ids=True))
    unique: Sandbox = app.state.sandbox
    async with client_for(app) as client:
        r = await do_import(
            client, dashboardId="kpi-core", importDashboardData=payload(unique, "kpi-core")
        )
        assert r.status_code == 400
        assert r.json()["error"]["code"] == "INVALID_DASHBOARD_ID"
        listing = await client.post(DASHBOARDS, json={"workspaceName": "Sales Prod"})
        assert listing.json()["data"] == []
        r = await do_import(
            client, dashboardId="p-kpi-core", importDashboardData=payload(unique, "kpi-core")
        )
        assert r.status_code == 200
    assert unique.write_count == 1


async def test_per_workspace_ids_by_default(client: httpx.AsyncClient, sandbox: Sandbox) -> None:
    """By default the same id may exist in two workspaces."""
    r = await do_import(
        client, dashboardId="kpi-core", importDashboardData=payload(sandbox, "kpi-core")
    )
    assert r.status_code == 200


async def test_legacy_import_response(sandbox: Sandbox) -> None:
    """legacy_import_response answers a committed import with the older {"data": []}."""
    app = create_app(SandboxConfig(":memory:", seed="demo", legacy_import_response=True))
    async with client_for(app) as client:
        r = await do_import(client, dashboardId="k", importDashboardData={"name": "K"})
    assert r.status_code == 200 and r.json() == {"data": []}
    assert app.state.sandbox.list_dashboards("Sales Prod") == [("k", "K")]


async def test_modes_switch_at_runtime(client: httpx.AsyncClient, sandbox: Sandbox) -> None:
    """Modes can be flipped on a running sandbox."""
    sandbox.modes.legacy_import_response = True
    r = await do_import(client, dashboardId="k", importDashboardData={})
    assert r.json() == {"data": []}


async def test_state_survives_restart(tmp_path: Path) -> None:
    """A new app on the same db file sees earlier imports, and re-seeding does not duplicate."""
    db = tmp_path / "sandbox.db"
    first = create_app(SandboxConfig(db, seed="demo"))
    async with client_for(first) as client:
        data = payload(first.state.sandbox, "kpi-core")
        r = await do_import(client, dashboardId="kpi-core", importDashboardData=data)
        assert r.status_code == 200
    first.state.sandbox.close()
    second = create_app(SandboxConfig(db, seed="demo"))
    restarted: Sandbox = second.state.sandbox
    assert restarted.workspaces() == ["Sales Dev", "Sales Staging", "Sales Prod", "Sales Dev Next"]
    assert restarted.list_dashboards("Sales Prod") == [("kpi-core", "Core KPIs")]
    assert restarted.get_dashboard("Sales Prod", "kpi-core") == data
    assert len(restarted.list_dashboards("Sales Dev")) == len(DEMO)  # seeded once, not twice
    async with client_for(second) as client:
        r = await do_import(client, dashboardId="kpi-core", importDashboardData=data)
        assert r.status_code == 400


async def test_update_dashboard_is_visible_in_export(
    client: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    """update_dashboard (a user edit) changes what export returns and is not a write."""
    data = payload(sandbox, "kpi-core") | {"name": "Edited"}
    sandbox.update_dashboard("Sales Dev", "kpi-core", data)
    r = await client.post(
        "/api/v2/data-app/export-dashboard",
        json={"dashboardId": "kpi-core", "workspaceName": "Sales Dev"},
    )
    assert r.json()["data"]["name"] == "Edited"
    assert sandbox.write_count == 0
    with pytest.raises(KeyError):
        sandbox.update_dashboard("Sales Dev", "missing", data)

"""Deterministic data for the sandbox: the `demo` seed and `generate_workspace` for benchmarks.

Payloads follow docs/databrain-api.md "What is inside data": react-grid-layout cells whose `i` is a
metric's internal UUID, one filter group with `applyOnTables`, metric objects with SQL naming
schemas (`analytics_dev.orders`), `inputFields` with `schemaName`, chart options, drill-downs and
`clickActions` of type `navigate` that reference other dashboards by id, plus keys a client does
not know. Internal ids are uuid5 of stable names, so two seedings produce identical bytes.

Around the dashboards, the demo holds what the replace and many-target features need: one data
app per workspace with a fixed local API key (`DEMO_DATA_APPS`), embeds of some source
dashboards (two on `sales-overview`, none on most), datasources `pg-dev`, `pg-staging` and
`pg-prod` (and a datamart) with every workspace bound to one, and "Sales Dev Next": the same
dashboards, three of them (`NEXT_CHANGED`) in a changed next version.
"""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass
from typing import Any

from migrate.models import JSONObject
from migrate.sandbox.state import Sandbox
from migrate.sandbox.store import EmbedRow, Store

SOURCE_WORKSPACE = "Sales Dev"
TARGET_WORKSPACES = ("Sales Staging", "Sales Prod")
NEXT_WORKSPACE = "Sales Dev Next"
NEXT_CHANGED = ("kpi-core", "sales-overview", "customer-churn")
DEMO_DATASOURCES = ("pg-dev", "pg-staging", "pg-prod")
DEMO_DATAMARTS = ("sales-mart",)
# (data app, the workspace it is used with, its fixed local API key: public, not a secret)
DEMO_DATA_APPS = (
    ("Sales Dev App", SOURCE_WORKSPACE, "demo-dev-app-key"),
    ("Sales Dev Next App", NEXT_WORKSPACE, "demo-dev-next-app-key"),
    ("Sales Staging App", "Sales Staging", "demo-staging-app-key"),
    ("Sales Prod App", "Sales Prod", "demo-prod-app-key"),
)
_BINDINGS = {
    SOURCE_WORKSPACE: "pg-dev",
    NEXT_WORKSPACE: "pg-dev",
    "Sales Staging": "pg-staging",
    "Sales Prod": "pg-prod",
}
# (dashboard, embed name, embed type, metric slug for a metric embed, access settings)
_EMBEDS: tuple[tuple[str, str, str, str | None, JSONObject], ...] = (
    ("sales-overview", "Sales Overview", "dashboard", None,
     {"isAllowEmailReports": True, "isAllowUnderlyingData": False}),
    ("sales-overview", "Sales Overview (partners)", "dashboard", None,
     {"datamartName": "sales-mart", "isAllowUnderlyingData": False,
      "isAllowMetricCreation": False}),
    ("kpi-core", "Core KPIs", "dashboard", None, {"isAllowEmailReports": False}),
    ("exec-summary", "Revenue vs Plan tile", "metric", "exec-revenue",
     {"isAllowUnderlyingData": True}),
)  # fmt: skip
_NAMESPACE = uuid.UUID("0b5c3f6e-9a41-5d2e-8f6a-2d7c1e4b9a30")
_CREATED_AT = "2025-01-15T09:30:00.000Z"
_PALETTE = ["#2E5BFF", "#8C54FF", "#00C1D4", "#FAD050", "#F7643B", "#29CC97"]


def _uid(*parts: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, "/".join(parts)))


@dataclass(frozen=True)
class _Metric:
    slug: str
    name: str
    chart: str  # bar | line | kpi | table | pie | area
    table: str  # table in the dashboard's main schema
    schema: str | None = None  # overrides the dashboard's schema for this metric


@dataclass(frozen=True)
class _Dashboard:
    id: str
    name: str
    schema: str
    metrics: tuple[_Metric, ...]
    links: tuple[str, ...] = ()  # dashboards this one navigates to (its dependencies)


_M = _Metric
DEMO: tuple[_Dashboard, ...] = (
    _Dashboard("kpi-core", "Core KPIs", "analytics_dev", (
        _M("revenue", "Revenue", "kpi", "orders"), _M("orders", "Orders", "kpi", "orders"),
        _M("aov", "Average Order Value", "kpi", "orders"),
        _M("active-customers", "Active Customers", "kpi", "customers"))),
    _Dashboard("sales-overview", "Sales Overview", "analytics_dev", (
        _M("revenue-trend", "Revenue by Month", "line", "orders"),
        _M("top-reps", "Top Sales Reps", "table", "sales_reps", "sales_dev"),
        _M("quota", "Quota Attainment", "bar", "quotas", "sales_dev")), ("kpi-core",)),
    _Dashboard("sales-by-region", "Sales by Region", "analytics_dev", (
        _M("region-revenue", "Revenue by Region", "bar", "orders"),
        _M("region-share", "Regional Share", "pie", "orders")), ("sales-overview",)),
    _Dashboard("region-emea", "Région EMEA", "analytics_dev", (
        _M("emea-revenue", "EMEA Revenue (€)", "line", "orders"),
        _M("emea-countries", "EMEA by Country", "table", "orders")), ("sales-by-region",)),
    _Dashboard("region-amer", "Region AMER", "analytics_dev", (
        _M("amer-revenue", "AMER Revenue", "line", "orders"),
        _M("amer-states", "AMER by State", "table", "orders")), ("sales-by-region",)),
    _Dashboard("region-apac", "Region APAC", "analytics_dev", (
        _M("apac-revenue", "APAC Revenue", "area", "orders"),
        _M("apac-markets", "APAC by Market", "bar", "orders")), ("sales-by-region",)),
    _Dashboard("pipeline-health", "Pipeline Health", "analytics_dev", (
        _M("pipeline-stage", "Pipeline by Stage", "bar", "opportunities"),
        _M("win-rate", "Win Rate", "kpi", "opportunities"),
        _M("cycle-time", "Sales Cycle Length", "line", "opportunities")), ("sales-overview",)),
    _Dashboard("customer-churn", "Customer Churn", "analytics_dev", (
        _M("churn-rate", "Monthly Churn Rate", "line", "subscriptions"),
        _M("churn-reasons", "Churn Reasons", "pie", "churn_events")), ("kpi-core",)),
    _Dashboard("revenue-forecast", "Revenue Forecast", "analytics_dev", (
        _M("forecast", "Forecast vs Actual", "line", "forecasts"),
        _M("forecast-accuracy", "Forecast Accuracy", "kpi", "forecasts")),
        ("pipeline-health", "sales-overview")),
    _Dashboard("product-mix", "Product Mix", "analytics_dev", (
        _M("category-revenue", "Revenue by Category", "bar", "order_items"),
        _M("top-products", "Top Products", "table", "products")), ("sales-overview",)),
    _Dashboard("marketing-funnel", "Marketing Funnel", "analytics_dev", (
        _M("funnel", "Lead Funnel", "bar", "leads"),
        _M("cac", "Customer Acquisition Cost", "kpi", "campaigns")), ("pipeline-health",)),
    _Dashboard("support-sla", "Support SLA", "analytics_dev", (
        _M("sla-breaches", "SLA Breaches", "line", "tickets"),
        _M("first-response", "First Response Time", "kpi", "tickets")), ("customer-churn",)),
    _Dashboard("exec-summary", "Executive Summary", "analytics_dev", (
        _M("exec-revenue", "Revenue vs Plan", "line", "orders"),
        _M("exec-pipeline", "Pipeline Coverage", "kpi", "opportunities"),
        _M("exec-churn", "Net Revenue Retention", "kpi", "subscriptions"),
        _M("exec-regions", "Regions at a Glance", "table", "orders")),
        ("sales-overview", "revenue-forecast", "customer-churn", "region-emea", "support-sla")),
    _Dashboard("data-quality", "Data Quality Checks", "analytics_dev", (
        _M("freshness", "Table Freshness", "table", "load_audit"),
        _M("null-rates", "Null Rates", "bar", "load_audit"))),
)  # fmt: skip

_MEASURES = {
    "kpi": "COUNT(DISTINCT t.id) AS value",
    "table": "t.name AS name, SUM(t.amount) AS amount, COUNT(*) AS rows",
    "pie": "t.category AS category, SUM(t.amount) AS amount",
}


def _sql(schema: str, table: str, chart: str, dimension_schema: str) -> str:
    select = _MEASURES.get(
        chart, "date_trunc('month', t.created_at) AS month, SUM(t.amount) AS amount"
    )
    return (
        f"SELECT {select}\nFROM {schema}.{table} t\n"
        f"LEFT JOIN {dimension_schema}.regions r ON r.id = t.region_id\n"
        "WHERE t.created_at >= {{ date_from }} AND t.created_at < {{ date_to }}\n"
        "GROUP BY 1 ORDER BY 1"
    )


def _metric(
    dashboard: str, spec: _Metric, schema: str, links: tuple[str, ...], ordinal: int
) -> JSONObject:
    # A metric on another schema still joins the dashboard's dimension tables: cross-schema
    # SQL is what makes per-dashboard schema_pairs necessary.
    query = _sql(spec.schema or schema, spec.table, spec.chart, schema)
    schema = spec.schema or schema
    metric_id = _uid(dashboard, "metric", spec.slug)
    return {
        "id": metric_id,
        "metricId": "mtr_" + _uid("metricId", dashboard, spec.slug).replace("-", "")[:20],
        "name": spec.name,
        "description": f"{spec.name} for the {dashboard} dashboard.",
        "chartType": spec.chart,
        "datasetType": "SQL",
        "query": query,
        "metricQuery": query.replace("ORDER BY 1", "ORDER BY 1 LIMIT 5000"),
        "inputFields": [
            {
                "schemaName": schema,
                "tableName": spec.table,
                "columnName": column,
                "dataType": dtype,
                "alias": column,
                "aggregate": agg,
            }
            for column, dtype, agg in (
                ("created_at", "datetime", None),
                ("amount", "number", "SUM"),
                ("region_id", "string", None),
            )
        ],
        "outputColumns": [{"name": "amount", "dataType": "number", "format": "currency"}],
        "chartOptions": {
            "chartType": spec.chart,
            "colors": _PALETTE[ordinal % 3 :] + _PALETTE[: ordinal % 3],
            "axisSettings": {
                "xAxis": {"show": True, "label": "Month", "rotate": 0},
                "yAxis": {"show": True, "label": spec.name, "min": None},
            },
            "legendSettings": {"show": spec.chart != "kpi", "position": "bottom"},
            "labelSettings": {"show": spec.chart in ("bar", "pie"), "format": "0.0a"},
            "numberFormat": {"prefix": "€" if "€" in spec.name else "$", "decimals": 1},
        },
        "clickActions": [
            {
                "id": _uid(dashboard, spec.slug, "click", target),
                "type": "navigate",
                "dashboardId": target,
                "label": f"Open {target}",
                "openInNewTab": False,
                "passFilters": ["Order Date", "Region"],
            }
            for target in links
        ],
        "drillDownSettings": {
            "isEnabled": spec.chart in ("bar", "line", "area"),
            "hierarchy": [
                {"schemaName": schema, "tableName": "regions", "columnName": "name"},
                {"schemaName": schema, "tableName": spec.table, "columnName": "country"},
            ],
        },
        "isEnabled": True,
        "createdAt": _CREATED_AT,
        "updatedBy": {"name": "Dana Analyst", "email": "dana@example.com"},
    }


def build_dashboard(
    dashboard_id: str,
    name: str,
    schema: str,
    metrics: list[JSONObject],
    *,
    description: str = "",
) -> JSONObject:
    """A `data` object around ready metric objects: layout, filters, grid and extra keys."""
    layout: list[JSONObject] = []
    x = y = 0
    for metric in metrics:
        w = 3 if metric["chartType"] == "kpi" else (12 if metric["chartType"] == "table" else 6)
        h = 2 if w == 3 else 4
        if x + w > 12:
            x, y = 0, y + 4
        layout.append({"i": metric["id"], "x": x, "y": y, "w": w, "h": h, "minW": 2, "minH": 2,
                       "maxH": None if w != 3 else 3, "moved": False, "static": False})  # fmt: skip
        x += w
    orders = f"{schema}.orders"
    filters = [{
        "tableName": orders,
        "columns": [
            {"label": "Order Date", "dataType": "datetime", "filterType": "date-range",
             "applyOnTables": [{"tableName": orders, "columnName": "created_at",
                                "dataType": "datetime"}],
             "defaultValue": {"preset": "last_90_days"}, "isMandatory": False, "isHidden": False},
            {"label": "Region", "dataType": "string", "filterType": "multi-select",
             "applyOnTables": [{"tableName": orders, "columnName": "region_id",
                                "dataType": "string"},
                               {"tableName": f"{schema}.regions", "columnName": "id",
                                "dataType": "string"}],
             "options": {"sql": f"SELECT DISTINCT name FROM {schema}.regions ORDER BY 1"},  # noqa: S608  # sample SQL text, never executed
             "isMandatory": False, "isHidden": False},
        ],
    }]  # fmt: skip
    return {
        "name": name,
        "description": description or f"{name} — maintained by the analytics team.",
        "layout": layout,
        "filters": filters,
        "metrics": metrics,
        "gridMargin": {"x": 12, "y": 12},
        "theme": {
            "general": {"fontFamily": "Inter", "backgroundColor": "#FFFFFF"},
            "cardTitle": {"fontSize": "14px"},
        },
        "settings": {"autoRefreshSeconds": 0, "timezone": "UTC", "externalId": dashboard_id},
        "version": 3,
    }


def demo_dashboards() -> list[tuple[str, str, JSONObject]]:
    """`(id, name, data)` of the demo source workspace, dependencies before dependants."""
    result = []
    for spec in DEMO:
        metrics = [
            # The first metric carries the navigation links, as a KPI tile usually does.
            _metric(spec.id, m, spec.schema, spec.links if i == 0 else (), i)
            for i, m in enumerate(spec.metrics)
        ]
        result.append(
            (spec.id, spec.name, build_dashboard(spec.id, spec.name, spec.schema, metrics))
        )
    return result


def demo_next_dashboards() -> list[tuple[str, str, JSONObject]]:
    """The demo dashboards in their next version: those in `NEXT_CHANGED` differ (a metric
    renamed, a metric's SQL changed, a filter default and description changed), the rest are
    identical to `demo_dashboards()`."""
    result = demo_dashboards()
    for dashboard_id, _, data in result:
        if dashboard_id == "kpi-core":
            metric = data["metrics"][2]  # Average Order Value
            metric["name"] = "Avg. Order Value"
            metric["chartOptions"]["axisSettings"]["yAxis"]["label"] = "Avg. Order Value"
        elif dashboard_id == "sales-overview":
            metric = data["metrics"][0]  # Revenue by Month: completed orders only from now on
            for key in ("query", "metricQuery"):
                metric[key] = metric[key].replace(
                    "WHERE t.created_at", "WHERE t.status = 'complete' AND t.created_at"
                )
        elif dashboard_id == "customer-churn":
            data["description"] = "Customer Churn — now over the last 180 days."
            data["filters"][0]["columns"][0]["defaultValue"] = {"preset": "last_180_days"}
    return result


def seed_demo(store: Store) -> bool:
    """Load the demo data set unless the database has workspaces already; True if it did.

    "Sales Dev" gets the demo dashboards, "Sales Staging" and "Sales Prod" stay empty,
    "Sales Dev Next" holds the next version. A database seeded before data apps existed gets
    the data apps, embeds, datasources and "Sales Dev Next" added once, on its next start.
    """
    seeded = False
    if not store.workspaces(limit=1):
        store.add_workspace(SOURCE_WORKSPACE)
        for name in TARGET_WORKSPACES:
            store.add_workspace(name)
        for dashboard_id, name, data in demo_dashboards():
            store.insert_dashboard(SOURCE_WORKSPACE, dashboard_id, name, data)
        seeded = True
    if store.has_workspace(SOURCE_WORKSPACE) and not store.data_app_keys():
        _seed_embeds_and_connections(store)
    return seeded


def _seed_embeds_and_connections(store: Store) -> None:
    for name in DEMO_DATASOURCES:
        store.add_connection("datasource", name)
    for name in DEMO_DATAMARTS:
        store.add_connection("datamart", name)
    store.add_workspace(NEXT_WORKSPACE)
    for dashboard_id, name, data in demo_next_dashboards():
        store.insert_dashboard(NEXT_WORKSPACE, dashboard_id, name, data)
    for workspace, datasource in _BINDINGS.items():
        if store.has_workspace(workspace):
            store.bind_workspace(workspace, "DATASOURCE", datasource)
    for app_name, workspace, key in DEMO_DATA_APPS:
        store.put_data_app(app_name, key)
        if workspace not in (SOURCE_WORKSPACE, NEXT_WORKSPACE):
            continue  # the targets' data apps start without embeds
        for index, (dashboard_id, name, kind, metric, access) in enumerate(_EMBEDS):
            if store.dashboard_text(workspace, dashboard_id) is None:
                continue
            metric_id = (
                "mtr_" + _uid("metricId", dashboard_id, metric).replace("-", "")[:20]
                if metric
                else None
            )
            # Shaped like the ids the server mints, but fixed, so two seedings are identical.
            suffix = _uid("embed", workspace, str(index)).replace("-", "")[:8]
            store.insert_embed(
                EmbedRow(
                    id=f"{dashboard_id}__{suffix}",
                    data_app=app_name,
                    workspace=workspace,
                    dashboard_id=dashboard_id,
                    name=name,
                    type=kind,
                    metric_id=metric_id,
                    access_settings=json.dumps(access),
                    created_at=_CREATED_AT,
                    updated_at=_CREATED_AT,
                )
            )


_TABLES = ("orders", "order_items", "customers", "opportunities", "tickets", "subscriptions")
_CHARTS = ("bar", "line", "kpi", "table", "pie", "area")


def generate_workspace(
    sandbox_or_store: Sandbox | Store,
    workspace: str,
    n: int,
    *,
    payload_kb: int = 100,
    max_depth: int = 5,
    seed: int = 0,
    id_prefix: str = "gen-",
    schema: str = "analytics_dev",
) -> list[str]:
    """Add `n` synthetic dashboards of about `payload_kb` KB each to `workspace`; returns ids.

    Dashboard `i` sits at level `i % (max_depth + 1)`; above level 0 it navigates to dashboard
    `i - 1` and sometimes to another earlier one of a lower level, so every reference chain
    is at most `max_depth` edges long and the graph has no cycles. Same arguments, same bytes.
    Not counted as writes. ValueError if an id is taken.
    """
    store = sandbox_or_store.store if isinstance(sandbox_or_store, Sandbox) else sandbox_or_store
    store.add_workspace(workspace)
    rng = random.Random(seed)  # noqa: S311  # reproducible test data, not crypto
    ids = [f"{id_prefix}{i:05d}" for i in range(n)]
    levels = [i % (max_depth + 1) for i in range(n)]
    target = payload_kb * 1024
    for i, dashboard_id in enumerate(ids):
        links: list[str] = []
        if levels[i] > 0:
            links.append(ids[i - 1])
            # A second link to any earlier dashboard of a lower level keeps chains short.
            other = rng.randrange(i)
            if levels[other] < levels[i] and other != i - 1 and rng.random() < 0.3:
                links.append(ids[other])
        name = f"Generated {i:05d}"
        metrics: list[JSONObject] = []
        size = 2048  # the filters, grid and extra keys around the metrics
        while size < target or not metrics:
            k = len(metrics)
            spec = _Metric(
                f"m{k}", f"Metric {k} of {name}", rng.choice(_CHARTS), rng.choice(_TABLES)
            )
            metric = _metric(
                f"{seed}/{dashboard_id}", spec, schema, tuple(links) if k == 0 else (), k
            )
            metrics.append(metric)
            size += len(json.dumps(metric)) + 110  # plus its layout cell
        data: dict[str, Any] = build_dashboard(dashboard_id, name, schema, metrics)
        if not store.insert_dashboard(workspace, dashboard_id, name, data):
            raise ValueError(f"dashboard {dashboard_id!r} already exists in {workspace!r}")
    return ids

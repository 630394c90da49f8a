"""Seed data and the pure rewrites: the demo set is realistic, acyclic and deterministic;
generated workspaces honour size and depth; schemaPairs and re-minting behave as documented."""

from __future__ import annotations

import json
import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from migrate.sandbox import Sandbox, SandboxConfig, create_app, generate_workspace
from migrate.sandbox.rewrite import apply_schema_pairs, remint_metric_ids
from migrate.sandbox.seed import demo_dashboards


def references(data: dict[str, Any]) -> set[str]:
    return {
        action["dashboardId"]
        for metric in data["metrics"]
        for action in metric.get("clickActions", [])
        if action.get("type") == "navigate"
    }


def longest_chain(graph: dict[str, set[str]]) -> int:
    """Edges on the longest reference path; raises RecursionError-free on a DAG only."""
    memo: dict[str, int] = {}

    def depth(node: str, path: tuple[str, ...]) -> int:
        assert node not in path, f"cycle through {node}"
        if node not in memo:
            memo[node] = max((1 + depth(n, (*path, node)) for n in graph[node]), default=0)
        return memo[node]

    return max(depth(node, ()) for node in graph)


def test_demo_is_a_realistic_dag() -> None:
    """Demo: ≥12 dashboards, references resolve, no cycle, a chain ≥3 deep, layout→metric ids."""
    dashboards = demo_dashboards()
    ids = [d[0] for d in dashboards]
    assert len(ids) >= 12 and len(set(ids)) == len(ids)
    graph = {dashboard_id: references(data) for dashboard_id, _, data in dashboards}
    assert all(refs <= set(ids) for refs in graph.values())
    assert longest_chain(graph) >= 3
    assert len(graph["exec-summary"]) >= 3
    assert graph["region-emea"] == {"sales-by-region"}
    for _, _, data in dashboards:
        assert {"layout", "filters", "metrics", "gridMargin"} <= set(data)
        assert [c["i"] for c in data["layout"]] == [m["id"] for m in data["metrics"]]
        assert all("analytics_dev." in m["query"] for m in data["metrics"])
    metric_ids = [m["metricId"] for _, _, d in dashboards for m in d["metrics"]]
    assert len(set(metric_ids)) == len(metric_ids)


def test_demo_is_deterministic() -> None:
    """Two seedings produce byte-identical payloads (uuid5, no clock, no randomness)."""
    assert json.dumps(demo_dashboards()) == json.dumps(demo_dashboards())


def test_generate_workspace_size_depth_and_determinism() -> None:
    """Generated dashboards are about payload_kb each, chains stay within max_depth, same seed
    gives the same bytes."""
    sandbox: Sandbox = create_app(SandboxConfig(":memory:")).state.sandbox
    ids = generate_workspace(sandbox, "Bench", 13, payload_kb=20, max_depth=3, seed=1)
    assert [d for d, _ in sandbox.list_dashboards("Bench")] == ids
    payloads = {i: sandbox.get_dashboard("Bench", i) for i in ids}
    sizes = [len(json.dumps(p)) / 1024 for p in payloads.values()]
    assert all(18 <= s <= 26 for s in sizes), sizes
    graph = {i: references(p) for i, p in payloads.items() if p is not None}
    assert longest_chain(graph) == 3
    again: Sandbox = create_app(SandboxConfig(":memory:")).state.sandbox
    generate_workspace(again, "Bench", 13, payload_kb=20, max_depth=3, seed=1)
    assert all(again.get_dashboard("Bench", i) == payloads[i] for i in ids)
    assert sandbox.write_count == 0


def test_schema_pairs_rules() -> None:
    """Only qualifying uses (followed by `.`, at a word boundary, maybe quoted) and whole
    schemaName values are rewritten."""
    data = {
        "query": 'SELECT * FROM analytics_dev.orders JOIN "analytics_dev"."users" u ON true',
        "other": "analytics_devx.t xanalytics_dev.t analytics_dev",
        "schemaName": "analytics_dev",
        "nested": [{"schemaName": "analytics_dev_old"}, {"tableName": "db.analytics_dev.t"}],
    }
    out = apply_schema_pairs(data, [("analytics_dev", "analytics")])
    assert out["query"] == 'SELECT * FROM analytics.orders JOIN "analytics"."users" u ON true'
    assert out["other"] == data["other"]
    assert out["schemaName"] == "analytics"
    assert out["nested"] == [{"schemaName": "analytics_dev_old"}, {"tableName": "db.analytics.t"}]
    assert data["schemaName"] == "analytics_dev"  # input untouched


@given(st.text(alphabet=st.sampled_from(list('ab_." x')), max_size=40))
def test_schema_pairs_identity_pair_changes_nothing(text: str) -> None:
    """Rewriting a schema to itself never changes any string (the rewrite is targeted)."""
    assert apply_schema_pairs({"q": text, "schemaName": text}, [("ab", "ab")]) == {
        "q": text,
        "schemaName": text,
    }


def test_remint_rewrites_every_reference() -> None:
    """remint_metric_ids maps each metric id to a fresh one wherever it appears, keys included."""
    data = {
        "layout": [{"i": "m1"}, {"i": "m2"}],
        "metrics": [{"id": "m1", "metricId": "x"}, {"id": "m2", "drill": {"target": "m1"}}],
        "byMetric": {"m2": 1},
        "text": "m1 in prose stays",
    }
    counter = iter(["n1", "n2"])
    out, mapping = remint_metric_ids(data, lambda: next(counter))
    assert mapping == {"m1": "n1", "m2": "n2"}
    assert out["layout"] == [{"i": "n1"}, {"i": "n2"}]
    assert out["metrics"] == [
        {"id": "n1", "metricId": "x"},
        {"id": "n2", "drill": {"target": "n1"}},
    ]
    assert out["byMetric"] == {"n2": 1} and out["text"] == "m1 in prose stays"


def _reference_pairs(data: Any, pairs: list[tuple[str, str]]) -> Any:
    """The rule as first written: one walk, one regex per pair with the quote in the match."""
    compiled = [
        (r, t, re.compile(rf'(?<![\w$])(?P<q>["`]?){re.escape(r)}(?P=q)(?=\.)'))
        for r, t in pairs
        if r
    ]

    def requoted(target: str) -> Any:
        return lambda m: f"{m['q']}{target}{m['q']}"

    def text(value: str) -> str:
        for r, t, pattern in compiled:
            if r in value:
                value = pattern.sub(requoted(t), value)
        return value

    def walk(node: Any, key: str | None) -> Any:
        if isinstance(node, str):
            if key == "schemaName":
                for r, t, _ in compiled:
                    if node == r:
                        return t
            return text(node)
        if isinstance(node, dict):
            return {k: walk(v, k) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(item, None) for item in node]
        return node

    return walk(data, None) if compiled else data


_SQLISH = st.lists(
    st.sampled_from(
        ["a", "ab", "a_b", ".", '"', "`", " ", "x", "$", "\\", "a.", '"ab".', "`a_b`."]
    ),
    max_size=10,
).map("".join)
_TREES = st.recursive(
    _SQLISH | st.integers() | st.none(),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["schemaName", "query", "a"]), inner, max_size=3)
    ),
    max_leaves=20,
)


@settings(max_examples=100, deadline=None)
@given(
    _TREES,
    st.lists(
        st.tuples(st.sampled_from(["a", "ab", "a_b", '"a', ""]), st.sampled_from(["z", "q\\1"])),
        max_size=3,
    ),
)
def test_schema_pairs_fast_paths_match_reference(data: Any, pairs: list[tuple[str, str]]) -> None:
    """Name-first regexes and skipped strings change nothing: same result as the plain rule."""
    assert json.dumps(apply_schema_pairs(data, pairs)) == json.dumps(_reference_pairs(data, pairs))

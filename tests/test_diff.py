"""Tests for migrate.diff: normalization for "equal content" and field-level diffs."""

from __future__ import annotations

import copy
import json
import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from migrate.diff import (
    Change,
    diff_payloads,
    diff_summary,
    minted_ids,
    normalize_for_compare,
)
from migrate.errors import PlanError
from migrate.jsonpath import WILDCARD, PathPart, Wildcard, parse_path
from migrate.models import SchemaPair
from migrate.schemapairs import SchemaRewriter, canonical_schema_table

PAIRS = [SchemaPair("analytics_dev", "analytics")]


def dashboard(m1: str = "m-1", m2: str = "m-2", layout: tuple[str, str] = ("m-1", "m-2")) -> Any:
    """A small payload shaped as docs/databrain-api.md describes."""
    return {
        "layout": [
            {"i": layout[0], "x": 0, "y": 0, "w": 6, "h": 4, "maxH": None, "moved": False},
            {"i": layout[1], "x": 6, "y": 0, "w": 6, "h": 4, "maxH": None, "moved": False},
        ],
        "filters": [{"tableName": "analytics_dev.orders", "columns": [{"label": "Region"}]}],
        "metrics": [
            {
                "id": m1,
                "metricId": m1,
                "name": "Revenue",
                "query": "SELECT sum(x) FROM analytics_dev.orders",
                "inputFields": [{"schemaName": "analytics_dev", "tableName": "orders"}],
                "clickActions": [{"dashboardId": "sales-detail"}],
            },
            {"id": m2, "metricId": m2, "name": "Count", "query": "select 1"},
        ],
        "gridMargin": {"x": 10, "y": 10},
    }


def remint(data: Any, fresh: dict[str, str]) -> Any:
    """Replace every UUID-shaped or minted value consistently, as a re-creating server would."""
    if isinstance(data, dict):
        return {k: remint(v, fresh) for k, v in data.items()}
    if isinstance(data, list):
        return [remint(v, fresh) for v in data]
    if isinstance(data, str) and (data.startswith("m-") or _is_uuid(data)):
        return fresh.setdefault(data, str(uuid.UUID(int=len(fresh) + 7)))
    return data


def _is_uuid(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text.lower() and len(text) == 36
    except ValueError:
        return False


def norm(data: Any, **kw: Any) -> Any:
    """normalize_for_compare with the demo's schema pair."""
    return normalize_for_compare(data, schema_pairs=PAIRS, **kw)


def test_consistent_reminting_compares_equal() -> None:
    """Metric ids and layout cells re-minted consistently do not read as drift."""
    source = dashboard()
    target = remint(apply_target(source), {})
    assert norm(source, id_map={"sales-detail": "p-sales-detail"}) == norm(target)


def apply_target(source: Any) -> Any:
    """What a faithful import of `source` with id prefix `p-` and the pair would hold."""
    text = json.dumps(source).replace("analytics_dev", "analytics")
    return json.loads(text.replace('"sales-detail"', '"p-sales-detail"'))


def test_layout_cell_pointing_nowhere_differs() -> None:
    """A layout cell whose metric id exists nowhere is drift, even though all ids are aliased."""
    source = dashboard()
    target = dashboard(m1="new-1", m2="new-2", layout=("new-1", "ghost"))
    assert norm(source) != norm(target)
    swapped = dashboard(m1="new-1", m2="new-2", layout=("new-2", "new-1"))
    assert norm(source) != norm(swapped)


@pytest.mark.parametrize(
    "target_query",
    [
        "SELECT sum(x) FROM analytics.orders",  # server rewrote the SQL
        "SELECT sum(x) FROM analytics_dev.orders",  # server rewrote nothing here
    ],
)
def test_schema_pairs_any_rewrite_extent_compares_equal(target_query: str) -> None:
    """Whichever occurrences the server rewrote (all, none, some), both sides normalize equal."""
    source = dashboard()
    target = copy.deepcopy(source)
    target["metrics"][0]["query"] = target_query
    target["metrics"][0]["inputFields"][0]["schemaName"] = "analytics"  # partially rewritten
    assert norm(source) == norm(target)
    other = copy.deepcopy(source)
    other["metrics"][0]["query"] = "SELECT sum(x) FROM elsewhere.orders"
    assert norm(source) != norm(other)


def test_compare_ignore_drops_paths() -> None:
    """compare_ignore paths (with or without `data.`, with [*]) are left out of the comparison."""
    source, target = dashboard(), dashboard()
    target["gridMargin"] = {"x": 0}
    target["layout"][1]["moved"] = True
    target["metrics"][1]["name"] = "Renamed"
    assert norm(source) != norm(target)
    ignore = ["data.gridMargin", "layout[*].moved", "data.metrics[1].name"]
    pristine = copy.deepcopy(target)
    assert norm(source, ignore=ignore) == norm(target, ignore=ignore)
    assert target == pristine  # normalization copies, never mutates
    assert "gridMargin" not in norm(source, ignore=ignore)


def test_compare_ignore_list_index_drops_item() -> None:
    """An ignored list index removes that item, not just its value."""
    assert normalize_for_compare({"l": [1, 2, 3]}, ignore=["l[0]"]) == {"l": [2, 3]}


def test_bad_ignore_path_is_plan_error() -> None:
    """An unreadable compare_ignore path raises PlanError rather than being silently ignored."""
    with pytest.raises(PlanError):
        normalize_for_compare({}, ignore=["metrics[oops]"])


def test_keep_protects_dashboard_ids_under_id_keys() -> None:
    """A dashboard reference under an `id` key is compared; one equal to a metric id too when
    listed in `keep`."""
    source = {"nav": {"id": "sales"}}
    wrong = {"nav": {"id": "sales"}}  # reference not rewritten in the target
    id_map = {"sales": "p-sales"}
    assert normalize_for_compare(source, id_map=id_map) != normalize_for_compare(wrong)
    source = {"metrics": [{"id": "p-sales"}], "nav": {"id": "sales"}}
    wrong = {"metrics": [{"id": "p-sales"}], "nav": {"id": "p-sales"}}
    assert normalize_for_compare(source, id_map=id_map) == normalize_for_compare(wrong)
    keep = {"p-sales"}
    assert normalize_for_compare(source, id_map=id_map, keep=keep) == normalize_for_compare(
        {"metrics": [{"id": "p-sales"}], "nav": {"id": "p-sales"}}, keep=keep
    )
    assert normalize_for_compare(source, keep=keep) != normalize_for_compare(wrong, keep=keep)


def test_only_metric_ids_are_aliased() -> None:
    """A changed datasourceId, filter id or other UUID is drift; re-minted metric ids are not."""
    source = dashboard(m1=str(uuid.uuid4()), m2=str(uuid.uuid4()))
    source["layout"] = [
        dict(cell, i=m["id"]) for cell, m in zip(source["layout"], source["metrics"], strict=True)
    ]
    source["metrics"][0]["datasourceId"] = str(uuid.uuid4())
    source["filters"][0]["id"] = str(uuid.uuid4())
    source["metrics"][1]["clickActions"] = [{"id": str(uuid.uuid4()), "uuid": "u-1", "_id": 3}]
    fresh = {m["id"]: str(uuid.uuid4()) for m in source["metrics"]}
    text = json.dumps(source)
    for old, new in fresh.items():
        text = text.replace(old, new)
    reminted = json.loads(text)
    assert normalize_for_compare(source) == normalize_for_compare(reminted)
    for path in (
        ("metrics", 0, "datasourceId"),
        ("filters", 0, "id"),
        ("metrics", 1, "clickActions", 0, "id"),
        ("metrics", 1, "clickActions", 0, "uuid"),
        ("metrics", 1, "clickActions", 0, "_id"),
    ):
        changed = copy.deepcopy(reminted)
        node: Any = changed
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = str(uuid.uuid4())
        assert normalize_for_compare(source) != normalize_for_compare(changed), path


def test_normalize_reads_minted_ids_at_the_depth_parsing_allows() -> None:
    """A deep payload normalizes (a copy) and diffs down to the changed id's path."""

    def deep(leaf: Any) -> Any:
        data: Any = leaf
        for _ in range(100):
            data = {"n": [data]}
        return data

    data = {"metrics": [{"id": "x"}], **deep({"i": "x"})}
    out = normalize_for_compare(data)
    assert data == {"metrics": [{"id": "x"}], **deep({"i": "x"})}
    assert out == {"metrics": [{"id": "#id1"}], **deep({"i": "#id1"})}
    (change,) = diff_payloads(out, {"metrics": [{"id": "#id1"}], **deep({"i": "#id2"})})
    assert change.path == "data" + ".n[0]" * 100 + ".i" and change.kind == "changed"


uuids = st.uuids().map(str)
leaves = st.one_of(uuids, st.text(max_size=5), st.integers(-5, 5), st.none())
keys = st.sampled_from(["id", "metricId", "i", "uuid", "name", "query", "x", "dashboardId"])
payloads = st.recursive(
    leaves,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=5)),
    max_leaves=40,
)


@settings(max_examples=150, deadline=None)
@given(payloads, st.lists(uuids, min_size=1, max_size=5), st.randoms(use_true_random=False))
def test_normalize_is_invariant_under_reminting(data: Any, pool: list[str], rng: Any) -> None:
    """normalize(x) == normalize(remint(x)) when only metric ids, wherever they occur, are
    re-minted; re-minting one other UUID is drift."""

    def reuse(value: Any) -> Any:
        # Re-use a few uuids so that references between them exist.
        if isinstance(value, dict):
            return {k: reuse(v) for k, v in value.items()}
        if isinstance(value, list):
            return [reuse(v) for v in value]
        if isinstance(value, str) and _is_uuid(value):
            return rng.choice(pool)
        return value

    data = {"metrics": [{"id": ref} for ref in pool[: rng.randint(0, len(pool))]], "d": reuse(data)}
    metric_ids = minted_ids(data)

    def remint_metrics(value: Any, fresh: dict[Any, str]) -> Any:
        if isinstance(value, dict):
            return {k: remint_metrics(v, fresh) for k, v in value.items()}
        if isinstance(value, list):
            return [remint_metrics(v, fresh) for v in value]
        if isinstance(value, str) and value in metric_ids:
            return fresh.setdefault(value, str(uuid.UUID(int=len(fresh) + 7)))
        return value

    assert normalize_for_compare(data) == normalize_for_compare(remint_metrics(data, {}))
    others = [v for v in pool if v not in metric_ids and v in json.dumps(data["d"])]
    if others:
        changed = json.loads(json.dumps(data).replace(others[0], str(uuid.UUID(int=1))))
        assert normalize_for_compare(data) != normalize_for_compare(changed)


def test_diff_reports_changed_added_removed_in_path_order() -> None:
    """Leaves that differ, appear or vanish are reported at their paths, sorted by path."""
    before = {"a": 1, "m": [{"q": "x"}, 2, 3], "z": {"k": True}, "gone": [1]}
    after = {"a": 2, "m": [{"q": "y"}, 2], "z": {"k": 1, "new": None}, "b": "s"}
    assert diff_payloads(before, after) == [
        Change("data.a", "changed", 1, 2),
        Change("data.b", "added", None, "s"),
        Change("data.gone", "removed", [1], None),
        Change("data.m[0].q", "changed", "x", "y"),
        Change("data.m[2]", "removed", 3, None),
        Change("data.z.k", "changed", True, 1),
        Change("data.z.new", "added", None, None),
    ]


def test_diff_indices_sort_numerically_and_types_differ() -> None:
    """[2] sorts before [10]; a list replaced by a dict is one change."""
    before = {"l": list(range(12)), "t": [1]}
    after = {"l": [*range(2), 99, *range(3, 10), 98, 11], "t": {"0": 1}}
    paths = [c.path for c in diff_payloads(before, after)]
    assert paths == ["data.l[2]", "data.l[10]", "data.t"]


def test_diff_limit_and_total() -> None:
    """Only `limit` changes are returned; diff_summary reports the full count."""
    before = {f"k{n:03d}": n for n in range(200)}
    after = {k: -v - 1 for k, v in before.items()}
    changes, total = diff_summary(before, after, limit=5)
    assert [c.path for c in changes] == [f"data.k{n:03d}" for n in range(5)]
    assert total == 200
    assert len(diff_payloads(before, after, limit=7)) == 7
    assert diff_payloads(before, before) == []


def test_chained_schema_pairs_share_one_canonical_name() -> None:
    """With a→b and b→c, all three names normalize alike, so no server rewrite reads as drift."""
    pairs = [SchemaPair("a", "b"), SchemaPair("b", "c")]
    forms = [
        normalize_for_compare({"q": f"select * from {s}.t"}, schema_pairs=pairs) for s in "abc"
    ]
    assert forms[0] == forms[1] == forms[2] == {"q": "select * from b.t"}


# ----------------------------------------------------- the fast walk == the rule, stated plainly


def plain_normalize(
    data: Any,
    ignore: list[str],
    schema_pairs: list[SchemaPair],
    id_map: dict[str, str],
    keep: set[str],
) -> Any:
    """normalize_for_compare as its docstring states it, without any shortcut: the oracle."""
    schema = SchemaRewriter(canonical_schema_table(schema_pairs))
    aliases: dict[str, str] = {}
    metrics = data.get("metrics") if isinstance(data, dict) else None
    minted = {
        metric[key]
        for metric in (metrics if isinstance(metrics, list) else [])
        if isinstance(metric, dict)
        for key in ("id", "metricId")
        if isinstance(metric.get(key), str) or type(metric.get(key)) is int
    }

    def leaf(value: Any, key: PathPart) -> Any:
        named = key if isinstance(key, str) else None
        if isinstance(value, str):
            value = id_map.get(value, value)
            if value not in keep and value in minted:
                return aliases.setdefault(value, f"#id{len(aliases) + 1}")
            return schema.rewrite(value, named)
        if type(value) is int and value in minted:
            return aliases.setdefault(str(value), f"#id{len(aliases) + 1}")
        return value

    def visit(value: Any, live: list[tuple[PathPart | Wildcard, ...]]) -> Any:
        if isinstance(value, dict):
            items = sorted(value.items(), key=lambda item: str(item[0]))
        else:
            items = list(enumerate(value))
        kept: list[tuple[Any, Any, list[tuple[PathPart | Wildcard, ...]]]] = []
        for part, child in items:
            below = [
                rest
                for first, *rest in live
                if first is WILDCARD or (first == part and type(first) is type(part))
            ]
            if () in [tuple(rest) for rest in below]:
                continue  # an ignore path ends here
            kept.append((part, child, [tuple(rest) for rest in below]))
        out: dict[Any, Any] = {}
        for part, child, _ in kept:  # values first: they take aliases before deeper ones
            if not isinstance(child, dict | list):
                out[part] = leaf(child, part)
        for part, child, below in kept:
            if isinstance(child, dict | list):
                out[part] = visit(child, below)
        ordered = {part: out[part] for part, _, _ in kept}
        return ordered if isinstance(value, dict) else list(ordered.values())

    if not isinstance(data, dict | list):
        return leaf(data, "")
    return visit(data, [parse_path(text) for text in ignore])


_SCHEMAS = ["analytics_dev", "analytics", "sales", "sales_dev"]
_norm_leaves = st.one_of(
    uuids,
    st.sampled_from(["sales-detail", "p-sales-detail", "kpi", "x.y", "m-1", "m-2"]),
    st.builds(
        "{}{}{}.t {}".format,
        st.sampled_from(["", '"', "`", "from ", "x"]),
        st.sampled_from(_SCHEMAS),
        st.sampled_from(["", '"', "`"]),
        st.sampled_from(_SCHEMAS),
    ),
    st.sampled_from(_SCHEMAS),
    st.text(max_size=4),
    st.integers(-3, 3),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=False),
)
_norm_keys = st.sampled_from(
    ["id", "metricId", "i", "uuid", "_id", "schemaName", "schema", "query", "name", "x", "l"]
)
_norm_trees = st.recursive(
    _norm_leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(_norm_keys, inner, max_size=5)
    ),
    max_leaves=40,
)
_norm_payloads = st.one_of(
    _norm_trees,
    st.fixed_dictionaries(
        {
            "metrics": st.lists(
                st.fixed_dictionaries({"id": _norm_leaves, "metricId": _norm_leaves}), max_size=3
            ),
            "rest": _norm_trees,
        }
    ),
)


@settings(max_examples=100, deadline=None)
@given(
    _norm_payloads,
    st.lists(st.tuples(st.sampled_from(_SCHEMAS), st.sampled_from(_SCHEMAS)), max_size=3),
    st.booleans(),
    st.lists(st.sampled_from(["x", "l[0]", "l[*].id", "*.name", "x.l[1]", "schema"]), max_size=2),
)
def test_fast_normalization_equals_the_plain_rule(
    data: Any, pairs: list[tuple[str, str]], with_map: bool, ignore: list[str]
) -> None:
    """Same output (aliases, order, schema tokens, dropped paths) as the plain oracle."""
    schema_pairs = [SchemaPair(a, b) for a, b in pairs]
    id_map = {"sales-detail": "p-sales-detail", "m-1": "kpi"} if with_map else {}
    keep = {"p-sales-detail"}
    fast = normalize_for_compare(
        data, schema_pairs=schema_pairs, id_map=id_map, ignore=ignore, keep=keep
    )
    plain = plain_normalize(data, ignore, schema_pairs, id_map, keep)
    assert fast == plain
    assert json.dumps(fast) == json.dumps(plain)  # key order too


def test_fast_normalization_odd_keys_and_types() -> None:
    """Non-string keys sort as text, int ids under minted keys alias, tuples stay leaves."""
    data = {
        2: "b",
        10: "a",
        "id": 7,
        "t": (1, "x"),
        "l": [{"i": 7}, True, 7, 7.0],
        "metrics": [{"id": 7}],
    }
    assert normalize_for_compare(data) == plain_normalize(data, [], [], {}, set())
    assert list(normalize_for_compare(data)) == [10, 2, "id", "l", "metrics", "t"]
    assert normalize_for_compare(data)["l"] == [{"i": "#id1"}, True, "#id1", 7.0]

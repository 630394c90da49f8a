"""Tests for migrate.transform: target ids, reference rewriting, schema pairs, paths."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from migrate.diff import normalize_for_compare
from migrate.errors import PlanError
from migrate.graph import find_references
from migrate.models import SchemaPair
from migrate.transform import (
    WILDCARD,
    SchemaRewriter,
    _quoted_schema_regex,
    apply_schema_pairs,
    count_schema_occurrences,
    equals_after_schema_pairs,
    format_path,
    iter_strings,
    map_strings,
    merge_schema_pairs,
    parse_path,
    rewrite_references,
    target_id,
)

IDS = ["kpi-core", "sales", "region-east", "a b", "ü"]
json_leaf = st.one_of(
    st.sampled_from(IDS), st.text(max_size=6), st.integers(), st.booleans(), st.none()
)
json_values = st.recursive(
    json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(IDS), st.text(max_size=4)), inner, max_size=4),
    ),
    max_leaves=40,
)


def test_target_id_override_else_prefix_suffix() -> None:
    """An explicit target id wins; otherwise prefix + id + suffix."""
    assert target_id("a", override="z", prefix="p-", suffix="-s") == "z"
    assert target_id("a", override=None, prefix="p-", suffix="-s") == "p-a-s"
    assert target_id("a", override=None, prefix="", suffix="") == "a"


@settings(max_examples=150, deadline=None)
@given(json_values, st.sets(st.sampled_from(IDS), min_size=1))
def test_rewrite_moves_every_reference_to_its_new_id(data: Any, mapped: set[str]) -> None:
    """After a rewrite, no mapped old id remains and each new id sits exactly where the old was."""
    id_map = {old: f"new::{old}" for old in mapped}
    original = copy.deepcopy(data)
    before = find_references(data, mapped)
    after = rewrite_references(data, id_map)
    assert data == original  # input not mutated
    assert find_references(after, mapped) == []
    assert find_references(after, set(id_map.values())) == [(p, id_map[i]) for p, i in before]
    # Everything else is untouched: mapping back restores the input.
    assert rewrite_references(after, {v: k for k, v in id_map.items()}) == data


def test_rewrite_leaves_keys_substrings_and_identity() -> None:
    """Dict keys and substrings are not references; identity entries change nothing."""
    data = {"kpi": ["kpi-core", "x kpi", {"kpi": "kpi"}], "n": 1}
    assert rewrite_references(data, {"kpi": "K", "x": "x"}) == {
        "kpi": ["kpi-core", "x kpi", {"kpi": "K"}],
        "n": 1,
    }


def test_rewrite_survives_deep_nesting_and_keeps_key_order() -> None:
    """5000 levels deep rewrites without RecursionError; dict key order is kept."""
    data: Any = "old"
    for _ in range(5000):
        data = [{"z": 1, "a": data}]
    out = rewrite_references(data, {"old": "new"})
    for _ in range(5000):
        assert list(out[0]) == ["z", "a"]
        out = out[0]["a"]
    assert out == "new"


def test_merge_schema_pairs_dashboard_overrides_plan() -> None:
    """Dashboard pairs come first and override the plan's for the same replace; no-ops drop."""
    plan = [SchemaPair("a_dev", "a"), SchemaPair("b_dev", "b"), SchemaPair("c", "c")]
    dash = [SchemaPair("b_dev", "b_special"), SchemaPair("d_dev", "d")]
    assert merge_schema_pairs(plan, dash) == (
        SchemaPair("b_dev", "b_special"),
        SchemaPair("d_dev", "d"),
        SchemaPair("a_dev", "a"),
    )


SQL: dict[str, Any] = {
    "query": 'SELECT * FROM analytics_dev.orders o JOIN "analytics_dev"."items" i ON 1=1',
    "metricQuery": "select `analytics_dev`.x from my_analytics_dev.y, analytics_dev_old.z",
    "inputFields": [{"schemaName": "analytics_dev", "tableName": "analytics_dev.orders"}],
    "label": "analytics_dev",
    "note": "sales_dev.t and sales.t",
}
PAIRS = [SchemaPair("analytics_dev", "analytics"), SchemaPair("sales_dev", "sales")]


def test_count_schema_occurrences_finds_qualified_quoted_and_structured() -> None:
    """Counts qualified, quoted and backticked names plus schemaName values; not partial words."""
    counts = count_schema_occurrences(SQL, [*PAIRS, SchemaPair("typo_dev", "x")])
    assert counts == {"analytics_dev": 5, "sales_dev": 1, "typo_dev": 0}
    assert count_schema_occurrences("x.t", [SchemaPair("x", "x")]) == {"x": 1}


def test_apply_schema_pairs_rewrites_like_counts() -> None:
    """Applying rewrites exactly the counted places, keeps quotes, leaves other words alone."""
    out = apply_schema_pairs(SQL, PAIRS)
    assert out["query"] == 'SELECT * FROM analytics.orders o JOIN "analytics"."items" i ON 1=1'
    assert out["metricQuery"] == "select `analytics`.x from my_analytics_dev.y, analytics_dev_old.z"
    assert out["inputFields"] == [{"schemaName": "analytics", "tableName": "analytics.orders"}]
    assert out["label"] == "analytics_dev"
    assert out["note"] == "sales.t and sales.t"
    assert SQL["query"].startswith("SELECT * FROM analytics_dev")  # input untouched


def test_apply_schema_pairs_does_not_chain() -> None:
    """Pairs a→b and b→c apply in one pass: a becomes b, not c."""
    out = apply_schema_pairs("a.t, b.t", [SchemaPair("a", "b"), SchemaPair("b", "c")])
    assert out == "b.t, c.t"


def test_paths_round_trip() -> None:
    """parse_path reads what format_path writes, with or without the root, plus wildcards."""
    parts = ("metrics", 2, "odd key", 'q"', "clickActions", 0)
    text = format_path(parts)
    assert text == 'data.metrics[2]["odd key"]["q\\""].clickActions[0]'
    assert parse_path(text) == parts
    assert parse_path("metrics[*].chartOptions") == ("metrics", WILDCARD, "chartOptions")
    assert parse_path("data.*.x") == (WILDCARD, "x")


@pytest.mark.parametrize("bad", ["data", "", "metrics[x]", 'a["unclosed]'])
def test_parse_path_rejects_garbage(bad: str) -> None:
    """An unreadable or empty compare_ignore path is a PlanError."""
    with pytest.raises(PlanError):
        parse_path(bad)


# --------------------------------------------- name-first schema regex == the reference rule
_NAME_PARTS = ["a", "ab", "a_b", "$x", "é"]
_schema_text = st.lists(
    st.sampled_from(
        [
            *_NAME_PARTS,
            ".",
            '"',
            "`",
            " ",
            "x",
            "_",
            "$",
            "\\",
            "é.",
            "a.",
            '"ab".',
            "`a_b`.",
            '"a`.',
        ]
    ),
    max_size=14,
).map("".join)


def _reference_rewrite(table: dict[str, str], value: str) -> tuple[str, dict[str, int]]:
    """The rule as first written: one regex with the optional quote inside the match."""
    counts = dict.fromkeys(table, 0)
    names = sorted(table, key=lambda n: (-len(n), n))
    regex = _quoted_schema_regex(names)

    def sub(match: Any) -> str:
        counts[match.group("name")] += 1
        return f"{match.group('q')}{table[match.group('name')]}{match.group('q')}"

    return regex.sub(sub, value), counts


@settings(max_examples=100, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(_NAME_PARTS),
        st.sampled_from(["z", "a", "q\\1", "", "ab"]),
        min_size=1,
        max_size=3,
    ),
    _schema_text,
)
def test_schema_rewriter_matches_reference_rule(table: dict[str, str], value: str) -> None:
    """Same text and same counts as the reference regex, for one name or several."""
    rewriter = SchemaRewriter(table)
    assert (rewriter.rewrite(value, "query"), rewriter.counts) == _reference_rewrite(table, value)


@settings(max_examples=100, deadline=None)
@given(json_values, st.sets(st.sampled_from(IDS)), st.sampled_from([SchemaPair("sales", "s2")]))
def test_fast_walks_equal_iterative_walks(data: Any, mapped: set[str], pair: SchemaPair) -> None:
    """The recursive fast paths give what the iterative map/iter walks give."""
    id_map = {old: f"new::{old}" for old in mapped}
    expected = map_strings(data, lambda value, _key: id_map.get(value, value))
    got = rewrite_references(data, id_map)
    assert got == expected and repr(got) == repr(expected)  # key order too
    rewriter = SchemaRewriter({pair.replace: pair.target})
    for _link, key, value in iter_strings(data):
        rewriter.rewrite(value, key)
    assert count_schema_occurrences(data, [pair]) == {pair.replace: rewriter.counts["sales"]}


def test_fast_walks_survive_depth() -> None:
    """5000 levels: the recursive paths hand over to the iterative ones."""
    data: Any = "kpi-core"
    for _ in range(5000):
        data = {"n": [data, "sales.t"]}
    out = rewrite_references(data, {"kpi-core": "k"})
    assert find_references(out, {"k"})[0][1] == "k"
    assert count_schema_occurrences(data, [SchemaPair("sales", "s2")]) == {"sales": 5000}


_sql_values = st.recursive(
    st.one_of(_schema_text, st.integers(), st.none()),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(["query", "schemaName", "x", "a"]), inner, max_size=4),
    ),
    max_leaves=30,
)


@settings(max_examples=150, deadline=None)
@given(sent=_sql_values, other=_sql_values)
def test_equals_after_schema_pairs_is_a_sound_fast_path(sent: Any, other: Any) -> None:
    """The fast equality proof accepts the server's expected rewrite, and whenever it accepts,
    the full normalized comparison agrees."""
    pairs = [SchemaPair("ab", "a_b"), SchemaPair("a", "é")]
    assert equals_after_schema_pairs(sent, sent, pairs)
    assert equals_after_schema_pairs(sent, apply_schema_pairs(sent, pairs), pairs)
    for target in (other, apply_schema_pairs(other, pairs)):
        if equals_after_schema_pairs(sent, target, pairs):
            assert normalize_for_compare(sent, schema_pairs=pairs) == normalize_for_compare(
                target, schema_pairs=pairs
            )

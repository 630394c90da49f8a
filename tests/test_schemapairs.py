"""Tests for migrate.schemapairs: the matching rule, counts, merging and the equality proof."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from migrate.diff import normalize_for_compare
from migrate.jsontext import dump_json
from migrate.models import SchemaPair
from migrate.schemapairs import (
    _OUTSIDE_STRINGS,
    _UNSAFE_IN_NAME,
    SCHEMA_KEYS,
    SchemaRewriter,
    _quoted_schema_regex,
    _schema_value_regex,
    _unsafe_occurrence,
    count_schema_occurrences,
    equals_after_schema_pairs,
    merge_schema_pairs,
    rewritten_text,
)


def map_strings(data: Any, fn: Callable[[str, str | None], str]) -> Any:
    """A copy of `data` with each string `v` replaced by `fn(v, its dict key or None)`."""

    def visit(value: Any, key: str | None) -> Any:
        if isinstance(value, dict):
            return {k: visit(v, k if isinstance(k, str) else None) for k, v in value.items()}
        if isinstance(value, list):
            return [visit(v, None) for v in value]
        return fn(value, key) if isinstance(value, str) else value

    return visit(data, None)


def apply_schema_pairs(data: Any, pairs: list[SchemaPair]) -> Any:
    """`data` with the pairs applied in one pass, as the server is expected to apply them."""
    table: dict[str, str] = {}
    for pair in pairs:
        table.setdefault(pair.replace, pair.target)
    return map_strings(data, SchemaRewriter(table).rewrite)


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


@settings(max_examples=150, deadline=None)
@given(_sql_values)
def test_counts_equal_the_plain_walk(data: Any) -> None:
    """The counting walk counts what the rule counts when run on every string of the payload."""
    pairs = [SchemaPair("ab", "a_b"), SchemaPair("a", "é"), SchemaPair("ab", "ignored")]
    rewriter = SchemaRewriter({"ab": "a_b", "a": "é"})
    map_strings(data, rewriter.rewrite)
    assert count_schema_occurrences(data, pairs) == rewriter.counts


# -- the text form of the rewrite ---------------------------------------------------------------
_NAMES = ["dev", "sales_dev", "x", "a.b", "1e5", "é_dev"]
_CLEAN = [*_NAMES, ".", "`", " ", "FROM ", "é", "w", "$", ":", "prod", "dev.t", " sales_dev.o"]
_CLEAN += ["`x`.y", "é_dev.c", "a.b.c", "1e5.z", "xdev.q", "\u2028"]
_ESCAPED = ['"', "\\", "\n", "\x1f", '"dev".t']
_TEXTS = st.lists(st.sampled_from(_CLEAN), max_size=6).map("".join) | st.lists(
    st.sampled_from(_CLEAN + _ESCAPED), max_size=6
).map("".join)
_KEYS = st.sampled_from(["k", "sql", *sorted(SCHEMA_KEYS)]) | _TEXTS
_VALUES = st.recursive(
    _TEXTS | st.integers(-5, 5) | st.none() | st.booleans(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_KEYS, inner, max_size=3),
    max_leaves=12,
)
_PAIRS = st.sampled_from(
    [(SchemaPair("dev", "prod"),), (SchemaPair("sales_dev", "x"), SchemaPair("dev", "d"))]
) | st.lists(
    st.tuples(st.sampled_from(_NAMES), st.sampled_from([*_NAMES, "prod", "a\\b", "q.dev"])),
    min_size=1,
    max_size=3,
).map(lambda pairs: tuple(SchemaPair(a, b) for a, b in pairs if a != b))


def _rewrite_all(value: Any, rewriter: SchemaRewriter, key: str | None = None) -> Any:
    """The reference: every string value rewritten by SchemaRewriter, keys never."""
    if isinstance(value, dict):
        return {k: _rewrite_all(v, rewriter, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_rewrite_all(v, rewriter) for v in value]
    return rewriter.rewrite(value, key) if isinstance(value, str) else value


@settings(max_examples=300, deadline=None)
@given(_VALUES, _PAIRS)
def test_rewritten_text_agrees_with_the_parsed_rewrite(value: Any, pairs: Any) -> None:
    """Whenever the text form answers, it is exactly the parsed rewrite of every string."""
    sent = dump_json(value)
    text = rewritten_text(sent, pairs)
    if text is not None:
        table: dict[str, str] = {}
        for pair in pairs:
            table.setdefault(pair.replace, pair.target)
        assert json.loads(text) == _rewrite_all(value, SchemaRewriter(table))


def test_rewritten_text_handles_a_real_payload_and_refuses_keys() -> None:
    """SQL, filters and schemaName values are rewritten on the text; a name in a key is not
    attempted (None), and neither is one right after an escape."""
    pairs = (SchemaPair("analytics_dev", "analytics"),)
    value = {
        "sql": "SELECT 1 FROM analytics_dev.orders o JOIN `analytics_dev`.x",
        "filters": [{"tableName": "analytics_dev.orders", "schemaName": "analytics_dev"}],
        "note": "analytics_devx.y and xanalytics_dev.z stay",
    }
    expected = {
        "sql": "SELECT 1 FROM analytics.orders o JOIN `analytics`.x",
        "filters": [{"tableName": "analytics.orders", "schemaName": "analytics"}],
        "note": "analytics_devx.y and xanalytics_dev.z stay",
    }
    assert rewritten_text(dump_json(value), pairs) == dump_json(expected)
    assert rewritten_text(dump_json({"analytics_dev.t": 1}), pairs) is None
    assert rewritten_text(dump_json({"q": "\nanalytics_dev.t"}), pairs) is None


def _rewritten_text_before(sent: bytes, pairs: Any) -> bytes | None:
    """The oracle: the text rewrite as it was before it ran on bytes (decode, two passes)."""
    table: dict[str, str] = {}
    for pair in pairs:
        table.setdefault(pair.replace, pair.target)
    rewriter = SchemaRewriter(table)
    if rewriter._regex is None:
        return sent
    if not rewriter._name_only:
        return None
    table = rewriter.table
    for name, new in table.items():
        if _UNSAFE_IN_NAME.search(name) or _UNSAFE_IN_NAME.search(new):
            return None
        if set(name) <= _OUTSIDE_STRINGS or any(other in new for other in table):
            return None
    try:
        text = sent.decode("utf-8")
    except UnicodeDecodeError:
        return None
    text = text.replace("\\\\", "\x00").replace('\\"', "\x01")
    if _unsafe_occurrence(tuple(table)).search(text):
        return None
    out = _schema_value_regex(tuple(table)).sub(
        lambda m: f'"{m["key"]}":"{table[m["name"]]}"', text
    )
    out = rewriter._regex.sub(lambda m: table[m.group()], out)
    return out.replace("\x01", '\\"').replace("\x00", "\\\\").encode("utf-8")


_ODD_TEXTS = st.lists(
    st.sampled_from([*_CLEAN, *_ESCAPED, "é", "中", "\\u00e9", "/", "\\/", "\x7f", "ß.", '"']),
    max_size=6,
).map("".join)
_ODD_VALUES = st.recursive(
    _ODD_TEXTS | st.integers(-5, 5) | st.none(),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(sorted(SCHEMA_KEYS)) | _ODD_TEXTS, inner, max_size=3)
    ),
    max_leaves=12,
)
_ODD_PAIRS = st.lists(
    st.tuples(
        st.sampled_from([*_NAMES, "dév", "ß", "中_dev"]),
        st.sampled_from([*_NAMES, "prod", "a\\b", "q.dev", "中"]),
    ),
    min_size=1,
    max_size=3,
).map(lambda pairs: tuple(SchemaPair(a, b) for a, b in pairs if a != b))


@settings(max_examples=400, deadline=None)
@given(_ODD_VALUES | _VALUES, _ODD_PAIRS | _PAIRS)
def test_rewritten_text_on_bytes_agrees_with_the_decoded_two_passes(value: Any, pairs: Any) -> None:
    """The one-pass rewrite on bytes answers exactly as the decoded two-pass rewrite did,
    None included, for escapes, non-ASCII neighbours, schema-key values and odd names."""
    sent = dump_json(value)
    assert rewritten_text(sent, pairs) == _rewritten_text_before(sent, pairs)

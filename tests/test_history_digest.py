"""The content hash of deploy records (docs/contract.md A9): records written by earlier versions
stay comparable (the same digest for the same content)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from migrate.diff import normalize_for_compare, normalize_for_digest
from migrate.filters import canonical_filters
from migrate.history import content_sha256
from migrate.jsontext import dump_json_canonical


def oracle_sha256(data: Any) -> str:
    """The content hash as every earlier version computed it: kept here as the reference."""
    normalized = normalize_for_compare(canonical_filters(data))
    return hashlib.sha256(dump_json_canonical(normalized)).hexdigest()


# A dashboard whose digest an earlier version recorded: minted ids referenced from the layout
# and a click target, an integer metric id, a filter column in both forms, a non-ASCII name.
RECORDED = {
    "name": "Umsätze ✓",
    "layout": [{"i": "m-b", "x": 0, "w": 6}, {"i": "m-a", "x": 6, "w": 6}, {"i": 7, "x": 0}],
    "filters": [
        {
            "name": "Region",
            "applyOnTables": [
                {"schemaName": "analytics", "tableName": "orders", "columnName": "region"},
                {"tableName": "analytics.users", "columnName": "region"},
            ],
        }
    ],
    "metrics": [
        {"id": "m-a", "metricId": "mtr-a", "clickActions": [{"metricId": "m-b"}], "v": 1.5},
        {"id": "m-b", "metricId": "mtr-b", "chartOptions": {"z": None, "a": [True, "m-a"]}},
        {"id": 7, "name": "seven", "ref": "7"},
    ],
    "datasourceId": "ds-1",
}
RECORDED_SHA256 = "4c165d42dbc4e1b1b701665856b57be37939168cb2d79a752729f3e0d58059b3"


def test_the_digest_of_a_recorded_dashboard_has_not_changed() -> None:
    """A dashboard hashed by an earlier version hashes to the digest its record holds."""
    assert oracle_sha256(RECORDED) == RECORDED_SHA256
    assert content_sha256(RECORDED) == RECORDED_SHA256


ids = st.sampled_from(["m-1", "m-2", "m-3", "mtr-9", "x", "7", "#id1"]) | st.integers(0, 9)
leaves = st.one_of(
    ids,
    st.text(max_size=4),
    st.integers(-3, 12),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.booleans(),
    st.none(),
)
keys = st.sampled_from(["id", "metricId", "i", "a", "b", "B", "é", "tableName", "schemaName"])
trees = st.recursive(
    leaves,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=5)),
    max_leaves=30,
)
metric = st.fixed_dictionaries(
    {},
    optional={"id": ids, "metricId": ids, "more": trees, "a": ids, "z": ids},
)
column = st.fixed_dictionaries(
    {"tableName": st.sampled_from(["s.t", "t", "s.u"]), "columnName": st.sampled_from(["c", "d"])},
    optional={"schemaName": st.sampled_from(["s", "", "r"]), "dataType": st.just("string")},
)
filters = st.lists(
    st.fixed_dictionaries(
        {}, optional={"applyOnTables": st.lists(column | trees, max_size=3), "name": ids}
    ),
    max_size=3,
)
dashboards = st.fixed_dictionaries(
    {},
    optional={
        "metrics": st.lists(metric | trees, max_size=5),
        "layout": st.lists(st.dictionaries(keys, ids | trees, max_size=4), max_size=5),
        "filters": filters,
        "i": ids,
        "z": trees,
        "a": trees,
    },
)


@settings(max_examples=300, deadline=None)
@given(dashboards | trees)
def test_the_digest_is_the_one_earlier_versions_recorded(data: Any) -> None:
    """For any payload (ids reused across metrics, layout and elsewhere; integer ids; keys of
    every order), the hash is byte-identical to the reference, and the cheaper walk yields the
    same normalized value as the comparison's."""
    assert content_sha256(data) == oracle_sha256(data)
    assert normalize_for_digest(data) == normalize_for_compare(data)


def test_the_walk_leaves_its_input_alone_and_shares_what_it_does_not_change() -> None:
    """The digest's walk never mutates its input; a subtree without a minted id is not copied."""
    data = json.loads(json.dumps(RECORDED))
    before = json.dumps(data)
    out = normalize_for_digest(data)
    assert json.dumps(data) == before
    assert out["filters"] is data["filters"]
    assert out["metrics"][1]["chartOptions"] is not data["metrics"][1]["chartOptions"]
    assert [cell["i"] for cell in out["layout"]] == ["#id1", "#id2", "#id3"]  # layout < metrics

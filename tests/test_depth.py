"""The one depth rule: every payload walk takes exactly the nesting that parsing lets through."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from migrate.diff import normalize_for_compare
from migrate.errors import UntrustedJSONError
from migrate.jsonpath import parse_path
from migrate.jsontext import MAX_DEPTH, parse_json
from migrate.models import SchemaPair
from migrate.references import find_references, rewrite_references
from migrate.schemapairs import count_schema_occurrences

PAIRS = [SchemaPair("sales", "s2")]
WALKS: dict[str, Callable[[Any], object]] = {
    "normalize": lambda data: normalize_for_compare(data, schema_pairs=PAIRS, id_map={"k": "n"}),
    "normalize, ignoring": lambda data: normalize_for_compare(data, ignore=["[0][1]"]),
    "rewrite_references": lambda data: rewrite_references(data, {"kpi-core": "k"}),
    "find_references": lambda data: find_references(data, {"kpi-core"}),
    "count_schema_occurrences": lambda data: count_schema_occurrences(data, PAIRS),
}


def nested(levels: int) -> Any:
    """`levels` containers, alternately lists and objects, around a reference and a schema name."""
    data: Any = ["kpi-core", "sales.t", {"id": "x"}]
    for level in range(levels - 2):
        data = [data, "sales.t"] if level % 2 else {"n": data, "i": 7}
    return data


def test_parsing_and_walks_share_the_cap() -> None:
    """parse_json takes MAX_DEPTH levels and refuses one more, with the same test payload."""
    assert parse_json(json.dumps(nested(MAX_DEPTH)), source="x") == nested(MAX_DEPTH)
    with pytest.raises(UntrustedJSONError):
        parse_json(json.dumps(nested(MAX_DEPTH + 1)), source="x")


@pytest.mark.parametrize("walk", WALKS.values(), ids=list(WALKS))
def test_walks_take_max_depth_and_refuse_more(walk: Callable[[Any], object]) -> None:
    """At MAX_DEPTH levels each walk works; one level more is one clear UntrustedJSONError."""
    assert walk(nested(MAX_DEPTH)) is not None
    with pytest.raises(UntrustedJSONError, match=f"deeper than {MAX_DEPTH} levels"):
        walk(nested(MAX_DEPTH + 1))


def test_deep_walk_results_are_exact() -> None:
    """At the cap the walks still find, rewrite and count every occurrence."""
    data = nested(MAX_DEPTH)
    ((path, _),) = find_references(data, {"kpi-core"})
    assert len(parse_path(path)) == MAX_DEPTH - 1  # inside the innermost list
    assert find_references(rewrite_references(data, {"kpi-core": "k"}), {"k"})[0][0] == path
    assert count_schema_occurrences(data, PAIRS) == {"sales": 1 + (MAX_DEPTH - 2) // 2}

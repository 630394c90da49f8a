"""Hypothesis: mutated payloads never crash the validator; they pass or fail with located paths."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from migrate.schema import PayloadValidator, _compiled_export

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=20,
)

BASE: dict[str, Any] = {
    "_meta": {"dashboardId": "d", "workspaceName": "W", "exportedAt": "2025-01-01T00:00:00Z"},
    "data": {
        "layout": [{"i": "m1", "x": 0, "y": 0, "w": 4, "h": 3}],
        "filters": [{"tableName": "public.orders", "columns": [{"label": "Region"}]}],
        "metrics": [{"id": "m1", "query": "SELECT 1 FROM analytics_dev.t"}],
        "gridMargin": {"x": 8},
    },
}

VALIDATOR = PayloadValidator()


def paths_in(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside `value`."""
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += paths_in(child, (*prefix, key))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            found += paths_in(child, (*prefix, i))
    return found


@settings(max_examples=100, deadline=None)
@given(data=st.data(), replacement=json_values, extra_key=st.text(max_size=6))
def test_mutated_payloads_never_crash(
    data: st.DataObject, replacement: Any, extra_key: str
) -> None:
    """Replacing any value, or adding a key anywhere, yields [] or violations with paths."""
    document = copy.deepcopy(BASE)
    path = data.draw(st.sampled_from(paths_in(document)))
    if not path:
        document = replacement
    else:
        parent = document
        for part in path[:-1]:
            parent = parent[part]
        if data.draw(st.booleans()) and isinstance(parent, dict):
            parent[extra_key] = replacement  # unknown keys must stay valid
        else:
            parent[path[-1]] = replacement
    violations = VALIDATOR.validate_export(document)
    for violation in violations:
        assert violation.path
        assert violation.message
    if isinstance(document, dict) and isinstance(document.get("data"), dict):
        assert VALIDATOR.validate_export({"data": document["data"]}) == [
            v for v in violations if v.path.startswith("data")
        ]


@settings(max_examples=50, deadline=None)
@given(extra=st.dictionaries(st.text(max_size=8), json_values, max_size=5))
def test_unknown_keys_are_always_valid(extra: dict[str, Any]) -> None:
    """Keys the docs do not mention never make a payload invalid, at any documented level."""
    document = copy.deepcopy(BASE)
    document["data"]["metrics"][0].update(extra)
    document["data"]["gridMargin"].update(extra)
    for key, value in extra.items():
        document["data"].setdefault(f"x-{key}", value)
        document["_meta"].setdefault(f"x-{key}", value)
    assert VALIDATOR.validate_export(document) == []


@settings(max_examples=100, deadline=None)
@given(data=st.data(), replacement=json_values)
def test_fast_path_agrees_with_jsonschema(data: st.DataObject, replacement: Any) -> None:
    """The compiled fast predicate says valid exactly when jsonschema finds no error."""
    document = copy.deepcopy(BASE)
    path = data.draw(st.sampled_from(paths_in(document)))
    if path:
        parent = document
        for part in path[:-1]:
            parent = parent[part]
        parent[path[-1]] = replacement
    else:
        document = replacement
    compiled = _compiled_export()
    assert compiled.fast is not None
    for instance in (document, {"data": replacement}):
        assert compiled.fast(instance) == compiled.validator.is_valid(instance)

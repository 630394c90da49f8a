"""Hypothesis: mutated payloads never crash the validator; they pass or fail with located paths."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from jsonschema.validators import validator_for

from migrate.schema import PayloadValidator, _Compiled, _compiled_export, _fast_check

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


# Small schemas of every keyword the fast path compiles, and instances that often match them.
_KEYS = st.sampled_from(["a", "b", "c"])
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-1, 2)
    | st.sampled_from([0.0, 1.0, 1.5])
    | st.sampled_from(["", "a", "ab", "ba"])
)
_TYPE_NAMES = ["object", "array", "string", "boolean", "null", "number", "integer"]


def _object_schema(properties: dict[str, Any], required: list[str], rest: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties, "required": required}
    if rest is not None:
        schema["additionalProperties"] = rest
    return schema


_fast_schemas = st.recursive(
    st.booleans()
    | st.builds(
        lambda names: {"type": names},
        st.sampled_from(_TYPE_NAMES)
        | st.lists(st.sampled_from(_TYPE_NAMES), min_size=1, max_size=2, unique=True),
    )
    | st.builds(lambda values: {"enum": values}, st.lists(_SCALARS, max_size=3))
    | st.builds(lambda value: {"const": value}, _SCALARS)
    | st.builds(
        lambda p: {"type": ["string", "null"], "pattern": p},
        st.sampled_from(["^a", "b$", "^$", "^[ab]{2}$"]),
    ),
    lambda children: (
        st.builds(
            _object_schema,
            st.dictionaries(_KEYS, children, max_size=3),
            st.lists(_KEYS, max_size=2, unique=True),
            st.none() | st.booleans() | children,
        )
        | st.builds(lambda item: {"type": "array", "items": item}, children)
        | st.builds(
            lambda a, b: {**a, **b},
            children.filter(lambda c: isinstance(c, dict)),
            children.filter(lambda c: isinstance(c, dict)),
        )
    ),
    max_leaves=8,
)
_instances = st.recursive(
    _SCALARS,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(_KEYS | st.text(max_size=2), children, max_size=3)
    ),
    max_leaves=12,
)


def _near(schema: Any) -> st.SearchStrategy[Any]:
    """Instances that mostly follow `schema` (so deep members get checked), sometimes not."""
    if not isinstance(schema, dict):
        return _instances
    options: list[st.SearchStrategy[Any]] = [_instances]
    if "properties" in schema:
        members = st.fixed_dictionaries(
            {},
            optional={key: _near(sub) for key, sub in schema["properties"].items()},
        )
        extra = st.dictionaries(
            st.just("d"), _near(schema.get("additionalProperties", True)), max_size=1
        )
        following = st.builds(lambda m, e: {**e, **m}, members, extra)
        options += [following, following]  # weighted: most instances reach the members
    if "items" in schema:
        options += [st.lists(_near(schema["items"]), max_size=3)] * 2
    for values in (schema.get("enum"), [schema["const"]] if "const" in schema else None):
        if values:
            options.append(st.sampled_from(values))
    if "pattern" in schema:
        options.append(st.sampled_from(["a", "ab", "b", "", "ba"]))
    return st.one_of(options)


def _number_constants(schema: Any) -> bool:
    """True when an `enum` or `const` in `schema` holds a number (not a boolean)."""
    if isinstance(schema, dict):
        values = [*schema.get("enum", []), *([schema["const"]] if "const" in schema else [])]
        if any(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            return True
        return any(_number_constants(v) for v in schema.values())
    if isinstance(schema, list):
        return any(_number_constants(v) for v in schema)
    return False


@settings(max_examples=300, deadline=None)
@given(schema=_fast_schemas, data=st.data())
def test_fast_keywords_never_pass_what_jsonschema_refuses(schema: Any, data: st.DataObject) -> None:
    """A compiled schema's "valid" is jsonschema's; its "invalid" too, numbers in enums aside."""
    instance = data.draw(_near(schema))
    fast = _fast_check(schema)
    assert fast is not None
    valid = Draft202012Validator(schema).is_valid(instance)
    if fast(instance):
        assert valid
    elif not _number_constants(schema):
        assert not valid


@pytest.mark.parametrize(
    ("schema", "instance"),
    [
        ({"additionalProperties": False, "properties": {"a": True}}, {"a": 1, "b": 2}),
        ({"additionalProperties": {"type": "string"}, "properties": {"a": True}}, {"a": 1, "b": 2}),
        ({"enum": [1, "x"]}, True),
        ({"enum": [True]}, 1),
        ({"const": None}, 0),
        ({"const": "a"}, "b"),
        ({"pattern": "^a"}, "ba"),
        ({"type": "array", "items": {"enum": ["a"]}}, ["a", "b"]),
    ],
)
def test_fast_keywords_refuse_what_jsonschema_refuses(schema: Any, instance: Any) -> None:
    """Each compiled keyword refuses its textbook violation, as jsonschema does."""
    fast = _fast_check(schema)
    assert fast is not None
    assert not Draft202012Validator(schema).is_valid(instance)
    assert not fast(instance)


_DRAFT4 = "http://json-schema.org/draft-04/schema#"


@pytest.mark.parametrize(
    ("schema", "instance"),
    [
        # Drafts 3 and 4 call 1.0 a number, not an integer (the user's schema picks its draft).
        ({"$schema": _DRAFT4, "type": "integer"}, 1.0),
        ({"$schema": "http://json-schema.org/draft-03/schema#", "type": "integer"}, 1.0),
        # A nested `$schema` switches jsonschema to that draft for the subschema.
        ({"properties": {"a": {"$schema": _DRAFT4, "type": "integer"}}}, {"a": 1.0}),
        # A nested `$id` is a new base: its "#/..." references point inside it, not at the root.
        (
            {
                "$defs": {"y": True},
                "properties": {
                    "a": {"$id": "sub", "$defs": {"y": {"type": "string"}}, "$ref": "#/$defs/y"}
                },
            },
            {"a": 5},
        ),
        (
            {
                "$defs": {
                    "y": True,
                    "x": {
                        "$id": "https://example.com/x",
                        "$defs": {"y": {"type": "string"}},
                        "properties": {"p": {"$ref": "#/$defs/y"}},
                    },
                },
                "$ref": "#/$defs/x/properties/p",
            },
            5,
        ),
        # A `$ref` fragment is percent-decoded before it is read as a JSON pointer.
        ({"$defs": {"a b": {"type": "string"}, "a%20b": True}, "$ref": "#/$defs/a%20b"}, 5),
    ],
)
def test_fast_path_never_passes_what_the_users_draft_refuses(schema: Any, instance: Any) -> None:
    """Dialects, nested `$id`/`$schema` and encoded pointers never make the fast path say valid."""
    cls = validator_for(schema, default=Draft202012Validator)
    cls.check_schema(schema)
    assert not cls(schema).is_valid(instance)
    fast = _fast_check(schema)
    assert fast is None or not fast(instance)


def test_fast_path_is_no_shallower_than_jsonschema() -> None:
    """A recursive user schema on a deep (but parseable) payload is answered, not a crash."""
    schema = {
        "$defs": {"n": {"type": "array", "items": {"$ref": "#/$defs/n"}}},
        "$ref": "#/$defs/n",
    }
    compiled = _Compiled.of(Draft202012Validator(schema))
    deep: list[Any] = []
    for _ in range(200):  # within the parser's depth cap; jsonschema itself answers this
        deep = [deep]
    assert compiled.validator.is_valid(deep)
    assert compiled.violations(deep) == []


@pytest.mark.parametrize(
    "schema",
    [
        {"pattern": "a{4294967296}"},
        {"properties": [1]},
        {"additionalProperties": False, "properties": "ab"},
        {"$schema": ["x"], "type": "string"},
    ],
)
def test_fast_check_of_an_odd_schema_is_none_not_an_error(schema: Any) -> None:
    """Building the predicate for a schema it cannot compile gives None; nothing escapes."""
    assert _fast_check(schema) is None

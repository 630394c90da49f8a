"""JSON Schemas shipped with `migrate`, compiled once, and the violations they find.

The only module that imports `jsonschema`: plan checks come out as neutral `SchemaProblem`s (the
plan loader turns them into located `PlanError`s), payload and file-format (bundle manifest,
saved plan) checks as `Violation`s with JSON paths like `data.metrics[3].query`. Every function
here is pure apart from reading package data and the optional user schema file.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal, get_args

import jsonschema
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, ValidationError
from jsonschema.validators import validator_for

from migrate.errors import PlanError, Violation
from migrate.jsonpath import PathPart, format_path
from migrate.jsontext import parse_json
from migrate.storage import read_input

SchemaName = Literal["plan", "dashboard", "bundle", "saved-plan", "deploy"]
FileFormat = Literal["bundle", "saved-plan", "deploy"]  # files `migrate` writes and reads back

_MESSAGE_CAP = 200


@functools.cache
def _schema(name: SchemaName) -> dict[str, Any]:
    if name not in get_args(SchemaName):
        raise ValueError(f"no schema named {name!r}")
    raw = resources.files("migrate.schemas").joinpath(f"{name}.schema.json").read_bytes()
    value = parse_json(raw, source=f"{name}.schema.json")
    assert isinstance(value, dict)
    return value


def load_schema(name: SchemaName) -> dict[str, Any]:
    """The package-data JSON Schema `name` (a copy: callers may change it freely)."""
    return copy.deepcopy(_schema(name))


@functools.cache
def _validator(name: SchemaName) -> Draft202012Validator:
    """Compiled validators, built on first use and then shared by every caller."""
    return Draft202012Validator(_schema(name))


# --- fast path --------------------------------------------------------------------------------
#
# jsonschema spends ~7 µs per array item even on `{"type": "object"}`; a dashboard with hundreds
# of layout cells and metrics would cost milliseconds. Schemas that use only the keywords below
# are also compiled into plain predicates: when one says "valid", that is the answer; when it says
# "invalid" (rare), jsonschema runs to produce the exact, located violations.

Check = Callable[[Any], bool]
_ANNOTATIONS = frozenset(
    {"$schema", "$id", "$comment", "$defs", "title", "description", "default", "examples"}
)
_FAST_KEYWORDS = _ANNOTATIONS | {
    "type",
    "properties",
    "items",
    "required",
    "$ref",
    "additionalProperties",
    "enum",
    "const",
    "pattern",
}
# `enum` and `const` values the fast path compares by type and value together. jsonschema's
# equality tells 1 from true but not 1 from 1.0: a value of another number type than the
# schema's is called invalid here, and jsonschema then gives the answer.
_FAST_CONSTANTS = (str, bool, type(None), int, float)
_TYPES: dict[str, Check] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "integer": lambda v: (
        (isinstance(v, int) and not isinstance(v, bool))
        or (isinstance(v, float) and v.is_integer())
    ),
}


class _Unsupported(Exception):
    """The schema uses a keyword the fast path does not implement."""


def _extra_keys_check(schema: dict[str, Any], other: Check | None) -> Check:
    """`additionalProperties`: the keys outside `properties` (there is no `patternProperties`:
    it is not fast) are refused (`other` None, for `false`) or each value must pass `other`."""
    known = frozenset(schema.get("properties", ()))
    if other is None:
        return lambda v: not isinstance(v, dict) or known.issuperset(v)
    return lambda v: (
        not isinstance(v, dict) or all(other(value) for key, value in v.items() if key not in known)
    )


def _constants_check(allowed: Any) -> Check:
    """`enum` (or `const` as a one-item list), for scalar values only."""
    if not isinstance(allowed, list) or not all(
        type(value) in _FAST_CONSTANTS for value in allowed
    ):
        raise _Unsupported(allowed)
    pairs = frozenset((type(value), value) for value in allowed)
    return lambda v: type(v) in _FAST_CONSTANTS and (type(v), v) in pairs


def _pattern_check(pattern: Any) -> Check:
    """`pattern`, searched as jsonschema does (`re.search`), on strings only."""
    try:
        search = re.compile(pattern).search
    except (re.error, TypeError, OverflowError):  # `a{4294967296}` overflows, not re.error
        raise _Unsupported(pattern) from None
    return lambda v: not isinstance(v, str) or search(v) is not None


def _pointed(root: Any, pointer: str) -> Any:
    """The subschema of `root` that a `#/...` reference names, where jsonschema finds it too."""
    # A fragment is percent-decoded before it is a JSON pointer: `%` is left to jsonschema.
    if not pointer.startswith("#/") or "%" in pointer:
        raise _Unsupported(pointer)
    node = root
    for token in pointer[2:].split("/"):
        part = token.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            raise _Unsupported(pointer)
        node = node[part]
        if isinstance(node, dict) and "$id" in node:
            raise _Unsupported(pointer)  # a new base: its `#/...` are not the root's
    return node


def _fast_check(root: Any) -> Check | None:
    """A predicate equivalent to `root` for valid-or-not, or None if `root` is beyond it.

    Only for the 2020-12 dialect, in one resource: an older `$schema` changes what `integer`
    means, and a nested `$id` or `$schema` changes what `#/...` points at or the dialect below it.
    """
    compiled: dict[str, Check] = {}

    def ref(pointer: str) -> Check:
        if pointer not in compiled:
            node = _pointed(root, pointer)
            compiled[pointer] = lambda v: True  # a recursive reference sees the final check
            check = build(node)
            compiled[pointer] = check
        # Looked up at call time, so a recursive reference reaches the finished check.
        return lambda v: compiled[pointer](v)  # noqa: PLW0108  # late binding is the point

    def build(schema: Any) -> Check:
        if schema is True:
            return lambda v: True
        if schema is False:
            return lambda v: False
        if not isinstance(schema, dict) or not set(schema) <= _FAST_KEYWORDS:
            raise _Unsupported(schema)
        if schema is not root and ("$id" in schema or "$schema" in schema):
            raise _Unsupported(schema)  # another resource, maybe another dialect
        checks: list[Check] = []
        if "$ref" in schema:
            checks.append(ref(str(schema["$ref"])))
        if "type" in schema:
            names = [schema["type"]] if isinstance(schema["type"], str) else schema["type"]
            tests = [_TYPES[name] for name in names]
            if len(tests) == 1:
                checks.append(tests[0])
            else:
                checks.append(lambda v: any(test(v) for test in tests))
        if "required" in schema:
            keys = list(schema["required"])
            checks.append(lambda v: not isinstance(v, dict) or all(k in v for k in keys))
        if "properties" in schema:
            props = [(key, build(sub)) for key, sub in schema["properties"].items()]
            checks.append(
                lambda v: (
                    not isinstance(v, dict)
                    or all(check(v[key]) for key, check in props if key in v)
                )
            )
        if "items" in schema:
            item = build(schema["items"])
            checks.append(lambda v: not isinstance(v, list) or all(map(item, v)))
        if "additionalProperties" in schema:
            rest = schema["additionalProperties"]
            checks.append(_extra_keys_check(schema, None if rest is False else build(rest)))
        if "enum" in schema:
            checks.append(_constants_check(schema["enum"]))
        if "const" in schema:
            checks.append(_constants_check([schema["const"]]))
        if "pattern" in schema:
            checks.append(_pattern_check(schema["pattern"]))
        if len(checks) == 1:
            return checks[0]
        return lambda v: all(check(v) for check in checks)

    try:
        if validator_for(root, default=Draft202012Validator) is not Draft202012Validator:
            return None
        return build(root)
    except (_Unsupported, KeyError, TypeError, AttributeError):  # AttributeError: a list for a dict
        return None


def _fast_valid(fast: Check | None, instance: Any) -> bool:
    """True when `fast` says `instance` is valid; False when there is none or it cannot tell.

    The predicate recurses with the instance, using more stack per level than jsonschema: a deep
    instance jsonschema can still answer is left to it rather than crashing here.
    """
    if fast is None:
        return False
    try:
        return fast(instance)
    except RecursionError:
        return False


# --- JSON types -------------------------------------------------------------------------------


def json_type(value: Any) -> str:
    """The JSON type name of a parsed value (`object`, `array`, `string`, ...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _expected_types(value: Any) -> str:
    names = [value] if isinstance(value, str) else list(value)
    return " or ".join(f"{'an' if n[0] in 'aeiou' else 'a'} {n}" for n in names)


def _listed(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else []


def _natural_key(path: str) -> tuple[tuple[int, int, str], ...]:
    return tuple(
        (0, int(token), "") if token.isdigit() else (1, 0, token)
        for token in re.split(r"(\d+)", path)
        if token
    )


def _sorted(violations: Iterable[Violation]) -> list[Violation]:
    return sorted(set(violations), key=lambda v: (_natural_key(v.path), v.message))


def format_violations(violations: Sequence[Violation], limit: int = 20) -> list[str]:
    """Lines for a report: violations sorted by path, at most `limit`, then `... and N more`."""
    ordered = _sorted(violations)
    lines = [str(v) for v in ordered[:limit]]
    if len(ordered) > limit:
        lines.append(f"... and {len(ordered) - limit} more")
    return lines


# --- payloads ---------------------------------------------------------------------------------


def _violation(error: ValidationError, prefix: Sequence[PathPart]) -> Violation:
    parts = [*prefix, *error.absolute_path]
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = [k for k in _listed(error.validator_value) if k not in error.instance]
        if missing:
            return Violation(_where([*parts, missing[0]]), "is required but missing")
    if error.validator == "type":
        message = (
            f"must be {_expected_types(error.validator_value)}, "
            f"not {'an' if json_type(error.instance)[0] in 'aeiou' else 'a'} "
            f"{json_type(error.instance)}"
        )
    else:
        # jsonschema's own text echoes the instance, which may be megabytes: keep it short.
        message = error.message
        if len(message) > _MESSAGE_CAP:
            message = message[: _MESSAGE_CAP - 1] + "…"
    return Violation(_where(parts), message)


def _where(parts: Sequence[PathPart]) -> str:
    """A violation's path: `parts` (which start at the document's top key) or `(root)`."""
    return format_path(parts, root="") or "(root)"


@dataclass(frozen=True)
class _Compiled:
    """A compiled jsonschema validator and, when the schema allows one, its fast predicate."""

    validator: Any
    fast: Check | None

    @classmethod
    def of(cls, validator: Any) -> _Compiled:
        return cls(validator, _fast_check(validator.schema))

    def violations(self, instance: Any, prefix: Sequence[PathPart] = ()) -> list[Violation]:
        if _fast_valid(self.fast, instance):
            return []
        return [_violation(error, prefix) for error in self.validator.iter_errors(instance)]


@functools.cache
def _compiled_export() -> _Compiled:
    return _Compiled.of(_validator("dashboard"))


class PayloadValidator:
    """The dashboard schema (plus an optional stricter user schema), compiled once, reused."""

    def __init__(self, extra_schema_path: Path | None = None) -> None:
        self._export = _compiled_export()
        self._extra: _Compiled | None = None
        self.extra_schema_path = extra_schema_path
        if extra_schema_path is not None:
            self._extra = _Compiled.of(_compile_user_schema(extra_schema_path))

    def validate_export(self, document: Any) -> list[Violation]:
        """Every violation of a whole export file `{_meta, data}`, sorted by path."""
        found = self._export.violations(document)
        if self._extra is not None and isinstance(document, dict) and "data" in document:
            found += self._extra.violations(document["data"], ("data",))
        return _sorted(found)


def _compile_user_schema(path: Path) -> Any:
    """Read and compile the user's `payload_schema`; anything wrong with it is a PlanError."""
    source = str(path)
    raw = read_input(
        path,
        what="payload_schema",
        hint="fix settings.payload_schema: it must name a readable JSON Schema file",
    )
    schema = parse_json(raw, source=source)
    if not isinstance(schema, (dict, bool)):
        raise PlanError(
            f"payload_schema is a JSON {json_type(schema)}, not a JSON Schema",
            file=source,
            hint='a JSON Schema is an object such as {"type": "object"}',
        )
    cls: Any = validator_for(schema, default=Draft202012Validator)
    try:
        cls.check_schema(schema)
    except OverflowError as exc:  # the regex format check of a `pattern` like `a{4294967296}`
        raise PlanError(
            f"payload_schema is not a valid JSON Schema: {exc}",
            file=source,
            hint="check its patterns: a repetition count is too large",
        ) from exc
    except SchemaError as exc:
        where = _where(list(exc.absolute_path))
        raise PlanError(
            f"payload_schema is not a valid JSON Schema at {where}: {exc.message[:_MESSAGE_CAP]}",
            file=source,
            hint="check the schema against the JSON Schema 2020-12 metaschema",
        ) from exc
    try:
        return cls(schema)
    except jsonschema.exceptions.UnknownType as exc:  # pragma: no cover - check_schema catches
        raise PlanError(f"payload_schema cannot be compiled: {exc}", file=source) from exc


def check_export_meta(
    document: Mapping[str, Any], *, dashboard_id: str, workspace: str
) -> list[Violation]:
    """Violations where `_meta` names another dashboard or workspace than the one asked for.

    A missing `_meta` (or a missing field) is not a violation: the docs show it, but the payload
    itself is what gets imported, and we do not reject what the API does not promise.
    """
    meta = document.get("_meta") if isinstance(document, Mapping) else None
    if not isinstance(meta, Mapping):
        return []
    found: list[Violation] = []
    for key, wanted in (("dashboardId", dashboard_id), ("workspaceName", workspace)):
        value = meta.get(key)
        if value is not None and value != wanted:
            found.append(
                Violation(
                    f"_meta.{key}",
                    f"names {str(value)[:_MESSAGE_CAP]!r}, but {wanted!r} was asked for",
                )
            )
    return found


# --- plans ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SchemaProblem:
    """One plan-schema failure, in terms the plan loader can locate and explain."""

    path: tuple[PathPart, ...]
    kind: str  # the JSON Schema keyword that failed: type, required, additionalProperties, ...
    expected: str = ""  # what would be valid, in words
    keys: tuple[str, ...] = ()  # unexpected keys (additionalProperties) or missing (required)
    allowed: tuple[str, ...] = ()  # the valid keys or values at this place
    description: str = ""  # the schema's description of the failing place
    got: str = ""  # the JSON type of the value found (never the value: it may be a secret)


def _plan_problem(error: ValidationError) -> SchemaProblem:
    path = tuple(error.absolute_path)
    schema = error.schema if isinstance(error.schema, dict) else {}
    description = str(schema.get("description", ""))
    instance = error.instance
    kind = str(error.validator)
    if kind == "additionalProperties" and isinstance(instance, dict):
        properties = tuple(schema.get("properties", {}))
        extra = tuple(k for k in instance if k not in properties)
        return SchemaProblem(path, kind, keys=extra, allowed=properties, description=description)
    if kind == "required" and isinstance(instance, dict):
        missing = tuple(k for k in _listed(error.validator_value) if k not in instance)
        props = schema.get("properties", {})
        return SchemaProblem(
            path,
            kind,
            keys=missing,
            allowed=tuple(props),
            description=" ".join(str(props.get(k, {}).get("description", "")) for k in missing),
        )
    if kind == "type":
        return SchemaProblem(
            path,
            kind,
            expected=_expected_types(error.validator_value),
            description=description,
            got=json_type(instance),
        )
    if kind == "enum":
        allowed = tuple(str(v) for v in _listed(error.validator_value))
        return SchemaProblem(path, kind, expected="one of " + ", ".join(allowed), allowed=allowed)
    if kind == "const":
        return SchemaProblem(path, kind, expected=f"exactly {error.validator_value!r}")
    if kind in ("minimum", "exclusiveMinimum"):
        sign = "≥" if kind == "minimum" else ">"
        return SchemaProblem(
            path, kind, expected=f"a number {sign} {error.validator_value}", description=description
        )
    if kind == "minLength":
        return SchemaProblem(path, kind, expected="a non-empty string", description=description)
    if kind == "pattern":
        return SchemaProblem(path, kind, expected=description or "a different form")
    return SchemaProblem(path, kind, expected=error.message[:_MESSAGE_CAP], description=description)


def plan_problems(document: Any) -> list[SchemaProblem]:
    """Every way `document` fails the plan schema, outermost first (none: it is valid)."""
    errors = sorted(_validator("plan").iter_errors(document), key=lambda e: len(e.absolute_path))
    return [_plan_problem(e) for e in errors]


# --- file formats -----------------------------------------------------------------------------


@functools.cache
def _compiled_format(name: FileFormat) -> _Compiled:
    return _Compiled.of(_validator(name))


def format_problems(name: FileFormat, document: Any) -> list[Violation]:
    """Every way `document` fails the file-format schema `name`, located by JSON path and sorted
    (none: it is valid). Messages name types and keys, never echo a value."""
    compiled = _compiled_format(name)
    if _fast_valid(compiled.fast, document):
        return []  # the fast path's "valid" is the answer; only failures need jsonschema's detail
    found: list[Violation] = []
    for error in compiled.validator.iter_errors(document):
        found.extend(_format_violations(error))
    return _sorted(found)


def _format_violations(error: ValidationError) -> list[Violation]:
    path = list(error.absolute_path)
    schema = error.schema if isinstance(error.schema, dict) else {}
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = list(schema.get("properties", {}))
        return [
            Violation(
                format_path([*path, key], ""), f"is not allowed here (keys: {', '.join(allowed)})"
            )
            for key in error.instance
            if key not in allowed
        ]
    if error.validator == "const":
        return [Violation(format_path(path, ""), f"must be {json.dumps(error.validator_value)}")]
    if error.validator == "enum":
        values = ", ".join(str(v) for v in _listed(error.validator_value))
        return [Violation(format_path(path, ""), f"must be one of {values}")]
    if error.validator == "pattern":
        return [Violation(format_path(path, ""), f"is not valid: {schema.get('description', '')}")]
    return [_violation(error, ())]

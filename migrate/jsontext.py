"""Untrusted JSON text (files and API bodies) parsed with caps, refused cleanly when hostile.

Refused, each as `UntrustedJSONError` naming the source: bodies over the size cap, nesting deeper
than the depth cap, duplicate object keys, `NaN`/`Infinity`, invalid UTF-8, and truncated or
otherwise malformed text (with line and column).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, NoReturn

from migrate.errors import UntrustedJSONError


@dataclass(frozen=True)
class JSONLimits:
    """Caps for untrusted JSON. Real dashboards reach several MB, so the defaults are generous."""

    max_bytes: int = 64 * 1024 * 1024
    max_depth: int = 256


DEFAULT_LIMITS = JSONLimits()


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate key {key!r}")
            seen.add(key)
    return obj


def _depth(value: Any, limit: int) -> int:
    """Nesting depth of `value`, computed without recursion; stops counting past `limit`."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, level = stack.pop()
        if level > deepest:
            deepest = level
            if deepest > limit:
                return deepest
        if isinstance(node, dict):
            stack.extend((child, level + 1) for child in node.values() if isinstance(child, (dict, list)))
        elif isinstance(node, list):
            stack.extend((child, level + 1) for child in node if isinstance(child, (dict, list)))
    return deepest


def parse_json(raw: bytes | str, *, source: str, limits: JSONLimits = DEFAULT_LIMITS) -> Any:
    """Parse `raw` or raise `UntrustedJSONError` naming `source` and the problem."""
    size = len(raw)
    if size > limits.max_bytes:
        raise UntrustedJSONError(
            f"{source} is {size:,} bytes, over the {limits.max_bytes:,}-byte limit",
            hint="raise the limit only if this input is trusted",
        )
    if isinstance(raw, bytes):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UntrustedJSONError(
                f"{source} is not valid UTF-8 (byte {exc.start})",
                hint="JSON must be UTF-8 encoded",
            ) from exc
    else:
        text = raw
    text = text.removeprefix("\ufeff")
    try:
        value = json.loads(
            text, object_pairs_hook=_refuse_duplicates, parse_constant=_refuse_constant
        )
    except RecursionError as exc:
        raise UntrustedJSONError(
            f"{source} nests deeper than {limits.max_depth} levels"
        ) from exc
    except json.JSONDecodeError as exc:
        what = "ends before the JSON is complete" if exc.pos >= len(text) else exc.msg
        raise UntrustedJSONError(
            f"{source} is not valid JSON: {what}", line=exc.lineno, column=exc.colno
        ) from exc
    except ValueError as exc:
        raise UntrustedJSONError(f"{source} is not valid JSON: {exc}") from exc
    # Only a document with more brackets than the cap can be nested past it.
    if text.count("[") + text.count("{") > limits.max_depth and (
        _depth(value, limits.max_depth) > limits.max_depth
    ):
        raise UntrustedJSONError(f"{source} nests deeper than {limits.max_depth} levels")
    return value

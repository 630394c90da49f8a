"""Untrusted JSON text (files and API bodies) parsed with caps, refused cleanly when hostile.

Refused, each as `UntrustedJSONError` naming the source: bodies over the size cap, nesting deeper
than the depth cap, duplicate object keys, `NaN`/`Infinity`, invalid UTF-8, and truncated or
otherwise malformed text (with line and column).
"""

from __future__ import annotations

import itertools
import json
import re
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


def parse_json(raw: bytes | str, *, source: str, limits: JSONLimits = DEFAULT_LIMITS) -> Any:
    """Parse `raw` or raise `UntrustedJSONError` whose `file` is `source`, saying what is wrong."""
    size = len(raw)
    if size > limits.max_bytes:
        raise UntrustedJSONError(
            f"{size:,} bytes of JSON, over the {limits.max_bytes:,}-byte limit",
            file=source,
            hint="raise the limit only if this input is trusted",
        )
    if isinstance(raw, bytes):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UntrustedJSONError(
                f"not valid UTF-8 (byte {exc.start})",
                file=source,
                hint="JSON must be UTF-8 encoded",
            ) from exc
    else:
        text = raw
    text = text.removeprefix("\ufeff")
    # Only a document with more brackets than the cap can be nested past it; checking before
    # parsing keeps a hostile `[[[[...` from costing a parse (or a RecursionError) at all.
    if text.count("[") + text.count("{") > limits.max_depth and (_too_deep(text, limits.max_depth)):
        raise UntrustedJSONError(f"nests deeper than {limits.max_depth} levels", file=source)
    try:
        value = json.loads(
            text, object_pairs_hook=_refuse_duplicates, parse_constant=_refuse_constant
        )
    except RecursionError as exc:
        raise UntrustedJSONError(
            f"nests deeper than {limits.max_depth} levels", file=source
        ) from exc
    except json.JSONDecodeError as exc:
        what = "ends before the JSON is complete" if exc.pos >= len(text) else exc.msg
        raise UntrustedJSONError(
            f"not valid JSON: {what}",
            file=source,
            line=exc.lineno,
            column=exc.colno,
            hint="the file is truncated or is not JSON" if exc.pos >= len(text) else None,
        ) from exc
    except ValueError as exc:
        raise UntrustedJSONError(f"not valid JSON: {exc}", file=source) from exc
    return value


_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def _too_deep(text: str, limit: int) -> bool:
    """True when brackets outside strings nest deeper than `limit`.

    Strings and scalars are dropped by regex and the running depth is a C-level accumulate, so a
    megabyte payload costs tens of milliseconds and `[[[[...` never reaches a recursive parser.
    """
    skeleton = _NOT_BRACKET.sub("", _STRING.sub("", text))
    return max(itertools.accumulate(map(_STEP.__getitem__, skeleton)), default=0) > limit

"""Dashboard ids inside payloads: the target-id rule, and references found and rewritten.

A reference is a string value exactly equal to a dashboard id, at any depth in dicts and lists;
never a dict key, never a substring. Finding and rewriting share that rule. Both walks recurse,
one frame per level: payloads nest at most `jsontext.MAX_DEPTH` levels (parsing refuses more),
and a deeper value built in code is refused with `jsontext.nesting_error`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from migrate.jsonpath import PathLink, format_path, link_parts
from migrate.jsontext import MAX_DEPTH, dump_json_fast, nesting_error


def target_id(source_id: str, *, override: str | None, prefix: str, suffix: str) -> str:
    """The target dashboard id: `override` when given, else prefix + source id + suffix."""
    if override is not None:
        return override
    return f"{prefix}{source_id}{suffix}"


def find_references(
    data: Any, ids: Collection[str], *, root: str = "data", ignore: str | None = None
) -> list[tuple[str, str]]:
    """Every string value in `data` exactly equal to one of `ids` but `ignore` (a dashboard's
    own id, say), as (JSON path, id).

    Sorted by path, list indices numerically (`[2]` before `[10]`). Raises UntrustedJSONError
    for a value nested deeper than `MAX_DEPTH`.
    """
    wanted = ids if isinstance(ids, set | frozenset | dict) else set(ids)
    links: list[tuple[PathLink, str]] = []
    if wanted and _may_hold(data, wanted, ignore):
        _collect(data, wanted, None, links, 1)
    if ignore is not None:
        links = [(link, value) for link, value in links if value != ignore]
    found = [(link_parts(link), value) for link, value in links]
    # Parts compare pairwise; two paths first differ under one container, so both parts there
    # are keys or both are indices, and the comparison never mixes str with int.
    found.sort(key=lambda item: item[0])
    return [(format_path(parts, root), value) for parts, value in found]


def _may_hold(data: Any, ids: Collection[str], ignore: str | None) -> bool:
    """False only when no string in `data` (key or value) equals one of `ids` but `ignore`, so
    no walk is
    needed; decided in C on `data`'s compact text. With escaped backslashes and quotes taken
    out, every remaining `"` delimits a string, so splitting on it yields every string's text;
    an id with nothing JSON escapes is written as itself, and a string written with an escape
    holds a character such an id never has."""
    if not isinstance(ids, frozenset) or not _written_as_themselves(ids):
        return True
    raw = dump_json_fast(data)
    if raw is None:
        return True  # deep, or not plain JSON: the walk decides (and refuses what is too deep)
    text = raw.decode("utf-8")
    text = text.replace("\\\\", "\x00").replace('\\"', "\x01")
    hits = ids.intersection(text.split('"')[1::2])
    return bool(hits) and hits != {ignore}


_ESCAPED_IN_JSON = re.compile(r'["\\\x00-\x1f]')


@functools.lru_cache(maxsize=8)
def _written_as_themselves(ids: frozenset[str]) -> bool:
    """True when no id holds a character JSON writes as an escape (the planner asks once per
    plan: the same frozenset for every dashboard, its hash cached)."""
    return not any(_ESCAPED_IN_JSON.search(one) for one in ids)


def _collect(
    value: Any,
    wanted: Collection[str],
    link: PathLink,
    out: list[tuple[PathLink, str]],
    depth: int,
) -> None:
    """Append (path, value) for each string in `value` that is in `wanted`; `depth` counts
    the levels of `value` itself (1 for a top-level container)."""
    if isinstance(value, dict):
        pairs: Iterable[tuple[Any, Any]] = value.items()
    elif isinstance(value, list):
        pairs = enumerate(value)
    else:
        if isinstance(value, str) and value in wanted:
            out.append((link, value))
        return
    if depth > MAX_DEPTH:
        raise nesting_error()
    for part, child in pairs:
        if type(child) is str:
            if child in wanted:
                out.append(((link, part), child))
        elif isinstance(child, dict | list | str):
            _collect(child, wanted, (link, part), out, depth + 1)


def rewrite_references(data: Any, id_map: Mapping[str, str]) -> Any:
    """A copy of `data` with every reference to a key of `id_map` replaced by its value.

    Containers are copied (key order kept, subclasses as plain dict/list), other values shared;
    identity entries are skipped; the input is not mutated. Raises UntrustedJSONError for a
    value nested deeper than `MAX_DEPTH`.
    """
    mapping = {old: new for old, new in id_map.items() if old != new}
    return _replace(data, mapping, 1)


def _replace(value: Any, mapping: dict[str, str], depth: int) -> Any:
    """`value` with strings mapped, without a call per string; `depth` as in `_collect`."""
    if isinstance(value, dict):
        out: Any = dict(value)
        pairs: Iterable[tuple[Any, Any]] = value.items()
    elif isinstance(value, list):
        out = list(value)
        pairs = enumerate(value)
    else:
        return mapping.get(value, value) if isinstance(value, str) else value
    if depth > MAX_DEPTH:
        raise nesting_error()
    for part, child in pairs:
        kind = type(child)
        if kind is str:
            if child in mapping:
                out[part] = mapping[child]
        elif kind is dict or kind is list or isinstance(child, dict | list | str):
            out[part] = _replace(child, mapping, depth + 1)
    return out

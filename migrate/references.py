"""Dashboard ids inside payloads: the target-id rule, and references found and rewritten.

A reference is a string value exactly equal to a dashboard id, at any depth in dicts and lists;
never a dict key, never a substring. Finding and rewriting share that rule. Both walks recurse,
one frame per level: payloads nest at most `jsontext.MAX_DEPTH` levels (parsing refuses more),
and a deeper value built in code is refused with `jsontext.nesting_error`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any

from migrate.jsonpath import PathLink, format_path, link_parts
from migrate.jsontext import MAX_DEPTH, nesting_error


def target_id(source_id: str, *, override: str | None, prefix: str, suffix: str) -> str:
    """The target dashboard id: `override` when given, else prefix + source id + suffix."""
    if override is not None:
        return override
    return f"{prefix}{source_id}{suffix}"


def find_references(
    data: Any, ids: Collection[str], *, root: str = "data"
) -> list[tuple[str, str]]:
    """Every string value in `data` exactly equal to one of `ids`, as (JSON path, id).

    Sorted by path, list indices numerically (`[2]` before `[10]`). Raises UntrustedJSONError
    for a value nested deeper than `MAX_DEPTH`.
    """
    wanted = ids if isinstance(ids, set | frozenset | dict) else set(ids)
    links: list[tuple[PathLink, str]] = []
    _collect(data, wanted, None, links, 1)
    found = [(link_parts(link), value) for link, value in links]
    # Parts compare pairwise; two paths first differ under one container, so both parts there
    # are keys or both are indices, and the comparison never mixes str with int.
    found.sort(key=lambda item: item[0])
    return [(format_path(parts, root), value) for parts, value in found]


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

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
from migrate.jsontext import MAX_DEPTH, dump_json, dump_json_fast, nesting_error


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
    if wanted:
        found = _found_on_text(data, wanted, ignore)
        if found is None:
            _collect(data, wanted, None, links, 1)
        else:
            links = found
    if ignore is not None:
        links = [(link, value) for link, value in links if value != ignore]
    parts = [(link_parts(link), value) for link, value in links]
    # Parts compare pairwise; two paths first differ under one container, so both parts there
    # are keys or both are indices, and the comparison never mixes str with int.
    parts.sort(key=lambda item: item[0])
    return [(format_path(path, root), value) for path, value in parts]


def _found_on_text(
    data: Any, ids: Collection[str], ignore: str | None
) -> list[tuple[PathLink, str]] | None:
    """The references in `data`, found on its compact text; None when the walk must decide.

    An id with nothing JSON escapes is written as itself between two quotes, so every
    string equal to it shows in the text as `"ID"`, and splitting the text on `"` yields it
    as a piece (escaped quotes only add pieces). Only the ids found so get looked for, each
    occurrence located by descending from the root to the value whose text spans it, the
    spans measured by writing each value alone (compact JSON is the same alone as inside its
    container). Costs about one writing of the text per occurrence, not a Python step per
    value.
    An occurrence that is no string value (a key, text in another string) reaches no value
    that starts there and is dropped.
    """
    if not isinstance(ids, frozenset):
        return None
    encoded = _written_as_themselves(ids)
    if encoded is None:
        return None
    text = dump_json_fast(data)
    if text is None:
        return None  # deep, or not plain JSON: the walk decides (and refuses what is too deep)
    pieces = text.split(b'"')
    if _ESCAPED_QUOTE.search(text) is None:
        pieces = pieces[1::2]  # every `"` delimits a string: the odd pieces are the strings
    hits = encoded.intersection(pieces)
    if ignore is not None:
        hits -= {ignore.encode("utf-8", "surrogatepass")}
    links: list[tuple[PathLink, str]] = []
    spans: dict[int, list[tuple[int, int, Any, Any]]] = {}
    for hit in hits:
        needle = b'"' + hit + b'"'
        at = text.find(needle)
        while at >= 0:
            found = _value_at(data, at, spans)
            if found is not None and isinstance(found[1], str) and found[1] in ids:
                links.append(found)
            at = text.find(needle, at + 1)
    return links


_ESCAPED_QUOTE = re.compile(rb'\\"')


def _value_at(
    data: Any, offset: int, spans: dict[int, list[tuple[int, int, Any, Any]]]
) -> tuple[PathLink, Any] | None:
    """(path, value) of the value of `data` whose compact text starts at `offset`, or None.

    `spans` keeps, per container met (by `id`: `data` is alive and unchanged meanwhile), the
    offsets where each child's text starts and ends, its part and value, measured once."""
    node, start = data, 0
    link: PathLink = None
    while start != offset:
        if not isinstance(node, dict | list):
            return None  # inside a string (or other scalar) that starts earlier
        children = spans.get(id(node))
        if children is None:
            children = spans[id(node)] = _children(node, start)
        for first, end, part, child in children:
            if offset < end:
                if offset < first:
                    return None  # in a key
                node, start, link = child, first, (link, part)
                break
        else:
            return None
    return link, node


def _children(node: dict[Any, Any] | list[Any], start: int) -> list[tuple[int, int, Any, Any]]:
    """(start offset, end offset, key or index, value) of each child of `node`, whose text
    starts at `start`."""
    out: list[tuple[int, int, Any, Any]] = []
    pos = start + 1  # past `{` or `[`
    keyed = isinstance(node, dict)
    pairs: Iterable[tuple[Any, Any]] = node.items() if isinstance(node, dict) else enumerate(node)
    for part, child in pairs:
        if keyed:
            pos += len(dump_json(part)) + 1  # the key and `:`
        end = pos + len(dump_json(child))
        out.append((pos, end, part, child))
        pos = end + 1  # past `,`
    return out


_ESCAPED_IN_JSON = re.compile(r'["\\\x00-\x1f]')


@functools.lru_cache(maxsize=8)
def _written_as_themselves(ids: frozenset[str]) -> frozenset[bytes] | None:
    """The ids as UTF-8, or None when one holds a character JSON writes as an escape (the
    planner asks once per plan: the same frozenset for every dashboard, its hash cached)."""
    if any(_ESCAPED_IN_JSON.search(one) for one in ids):
        return None
    try:
        return frozenset(one.encode("utf-8") for one in ids)
    except UnicodeEncodeError:  # a lone surrogate: written as an escape
        return None


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

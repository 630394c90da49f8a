"""Dashboard ids inside payloads: the target-id rule, and references found and rewritten.

A reference is a string value exactly equal to a dashboard id, at any depth in dicts and lists;
never a dict key, never a substring. Finding and rewriting share that rule. Both walks recurse,
one frame per level: payloads nest at most `jsontext.MAX_DEPTH` levels (parsing refuses more),
and a deeper value built in code is refused with `jsontext.nesting_error`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Collection, Iterable, Iterator, Mapping, Set
from typing import Any

from migrate.jsonpath import PathLink, format_path, link_parts
from migrate.jsontext import MAX_DEPTH, dump_json, dump_json_fast, nesting_error


def target_id(source_id: str, *, override: str | None, prefix: str, suffix: str) -> str:
    """The target dashboard id: `override` when given, else prefix + source id + suffix."""
    if override is not None:
        return override
    return f"{prefix}{source_id}{suffix}"


def find_references(
    data: Any,
    ids: Collection[str],
    *,
    root: str = "data",
    ignore: str | None = None,
    text: bytes | None = None,
) -> list[tuple[str, str]]:
    """Every string value in `data` exactly equal to one of `ids` but `ignore` (a dashboard's
    own id, say), as (JSON path, id). `text`, when given, is `jsontext.dump_json_fast(data)`
    already written by the caller (it is not written again).

    Sorted by path, list indices numerically (`[2]` before `[10]`). Raises UntrustedJSONError
    for a value nested deeper than `MAX_DEPTH`.
    """
    wanted = ids if isinstance(ids, set | frozenset | dict) else set(ids)
    links: list[tuple[PathLink, str]] = []
    if wanted:
        found = _found_on_text(data, wanted, ignore, text)
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
    data: Any, ids: Collection[str], ignore: str | None, text: bytes | None = None
) -> list[tuple[PathLink, str]] | None:
    """The references in `data`, found on its compact text; None when the walk must decide.

    An id with nothing JSON escapes is written as itself between two quotes, so every
    string equal to it shows in the text as `"ID"` (`_candidates` finds those ids). Only
    the ids found so get looked for, each occurrence located by descending from the root to
    the value whose text spans it, the spans measured by writing each value alone (compact
    JSON is the same alone as inside its container). Costs at most about one writing of the
    text per occurrence, not a Python step per value.
    An occurrence that is no string value (a key, text in another string) reaches no value
    that starts there and is dropped.
    """
    if not isinstance(ids, frozenset):
        return None
    encoded = _written_as_themselves(ids)
    if encoded is None:
        return None
    if text is None:
        text = dump_json_fast(data)
    if text is None:
        return None  # deep, or not plain JSON: the walk decides (and refuses what is too deep)
    hits = _candidates(text, encoded)
    if ignore is not None:
        hits -= {ignore.encode("utf-8", "surrogatepass")}
    links: list[tuple[PathLink, str]] = []
    spans: dict[int, _Spans] = {}
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
# Past this many distinct id prefixes, one split of the text is cheaper than a scan per prefix.
_MAX_PREFIXES = 8


def _candidates(text: bytes, encoded: frozenset[bytes]) -> Set[bytes]:
    """The ids (as UTF-8) that show in `text` between two quotes, `"ID"`, and maybe a few that
    show so only where no string value is (the caller's descent drops those).

    When the ids start with few distinct prefixes (generated ids share one), each prefix is
    looked for after a quote with `bytes.find`, which skips the text at C speed; else the text
    is split on `"` and its pieces intersected with the ids.
    """
    prefixes, lengths = _prefixes(encoded)
    if prefixes is None:
        pieces = text.split(b'"')
        if _ESCAPED_QUOTE.search(text) is None:
            pieces = pieces[1::2]  # every `"` delimits a string: the odd pieces are the strings
        return encoded.intersection(pieces)
    hits: set[bytes] = set()
    quote = ord('"')
    size = len(text)
    for prefix in prefixes:
        needle = b'"' + prefix
        at = text.find(needle)
        while at >= 0:
            first = at + 1
            for length in lengths:
                end = first + length
                if end < size and text[end] == quote and text[first:end] in encoded:
                    hits.add(text[first:end])
            at = text.find(needle, first)
    return hits


@functools.lru_cache(maxsize=8)
def _prefixes(encoded: frozenset[bytes]) -> tuple[tuple[bytes, ...] | None, tuple[int, ...]]:
    """The distinct first bytes (up to 4, as many as the shortest id has) of `encoded`, or None
    when there are more than `_MAX_PREFIXES` of them or an id is empty; and the ids' lengths."""
    lengths = tuple(sorted({len(one) for one in encoded}))
    if not lengths or lengths[0] == 0:
        return None, lengths
    width = min(4, lengths[0])
    prefixes = {one[:width] for one in encoded}
    if len(prefixes) > _MAX_PREFIXES:
        return None, lengths
    return tuple(sorted(prefixes)), lengths


class _Spans:
    """The children of one container, their text spans measured only as far as asked."""

    __slots__ = ("found", "keyed", "pairs", "pos")

    def __init__(self, node: dict[Any, Any] | list[Any], start: int) -> None:
        self.found: list[tuple[int, int, Any, Any]] = []
        self.keyed = isinstance(node, dict)
        self.pairs: Iterator[tuple[Any, Any]] = (
            iter(node.items()) if isinstance(node, dict) else enumerate(node)
        )
        self.pos = start + 1  # past `{` or `[`

    def child_at(self, offset: int) -> tuple[int, int, Any, Any] | None:
        """(start, end, key or index, value) of the child whose text spans `offset`, or None
        when `offset` is past every child."""
        for child in self.found:
            if offset < child[1]:
                return child
        for part, value in self.pairs:
            pos = self.pos
            if self.keyed:
                pos += len(dump_json(part)) + 1  # the key and `:`
            end = pos + len(dump_json(value))
            child = (pos, end, part, value)
            self.found.append(child)
            self.pos = end + 1  # past `,`
            if offset < end:
                return child
        return None


def _value_at(data: Any, offset: int, spans: dict[int, _Spans]) -> tuple[PathLink, Any] | None:
    """(path, value) of the value of `data` whose compact text starts at `offset`, or None.

    `spans` keeps, per container met (by `id`: `data` is alive and unchanged meanwhile), the
    offsets where its children's texts start and end, measured once and only up to the
    furthest offset asked for: a reference early in a large container costs the writing of
    the children before it, not of the whole container."""
    node, start = data, 0
    link: PathLink = None
    while start != offset:
        if not isinstance(node, dict | list):
            return None  # inside a string (or other scalar) that starts earlier
        children = spans.get(id(node))
        if children is None:
            children = spans[id(node)] = _Spans(node, start)
        child = children.child_at(offset)
        if child is None:
            return None
        first, _end, part, value = child
        if offset < first:
            return None  # in a key
        node, start, link = value, first, (link, part)
    return link, node


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

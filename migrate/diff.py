"""Comparing a source dashboard with its target copy: normalization and field-level diffs.

Equal content (docs/contract.md A3) is `normalize_for_compare(source, ...) == normalize_for_compare(
target, ...)`. Normalization removes what a faithful import may legitimately change: dashboard-id
references (rewritten to target ids), schema names (whichever occurrences the server rewrote),
ids the server re-mints, and the user's `compare_ignore` paths. It keeps what must survive: every
other value, and which minted ids are the same id (a layout cell → its metric).
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from migrate.models import SchemaPair
from migrate.transform import (
    SCHEMA_KEYS,
    WILDCARD,
    PathLink,
    PathPart,
    SchemaRewriter,
    Wildcard,
    canonical_schema_table,
    format_path,
    link_parts,
    parse_path,
)

# Keys whose values Databrain (or another implementation) may mint afresh on import.
MINTED_KEYS: Final = frozenset({"id", "metricId", "i", "uuid", "_id"})
_UUID: Final = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z"
)
_EMPTY: Final[Mapping[str, str]] = {}

Pattern = tuple[PathPart | Wildcard, ...]


def _advance(
    patterns: Sequence[Pattern], states: tuple[int, ...], depth: int, part: PathPart
) -> tuple[tuple[int, ...], bool]:
    """Pattern indices still alive below `part`, and whether one of them ends exactly there."""
    alive: list[int] = []
    ends = False
    for index in states:
        pattern = patterns[index]
        want = pattern[depth]
        if want is WILDCARD or (want == part and type(want) is type(part)):
            if len(pattern) == depth + 1:
                ends = True
            else:
                alive.append(index)
    return tuple(alive), ends


def normalize_for_compare(
    data: Any,
    *,
    schema_pairs: Sequence[SchemaPair] = (),
    id_map: Mapping[str, str] = _EMPTY,
    ignore: Sequence[str] = (),
    keep: Collection[str] = (),
) -> Any:
    """`data` reduced to what an import must preserve; compare two results with `==`.

    Apply to both sides: the source with `id_map` (source → target dashboard ids) and the target
    copy with none. In one pass, never mutating `data`:
    1. string values equal to an `id_map` key become its value (dashboard references);
    2. every occurrence of a pair's `replace` or `target` schema name becomes one canonical name;
    3. minted ids — string (or integer) values of keys `id`, `metricId`, `i`, `uuid`, `_id`, and
       UUID-shaped strings anywhere — become `#id1`, `#id2`, ... in traversal order (sorted keys,
       list order), one alias per distinct original, so consistently re-minted ids compare equal
       and a reference to a different or missing id does not. Values in `keep` (pass the planned
       dashboards' target ids, on both sides) stay literal, so a dashboard reference under an
       `id` key is still compared;
    4. values at `ignore` paths (`data.gridMargin`, `metrics[*].chartOptions`) are dropped.
    Dict keys are never rewritten. Raises PlanError for an unreadable `ignore` path.
    """
    patterns = [parse_path(text) for text in ignore]
    keep_set = keep if isinstance(keep, set | frozenset) else set(keep)
    try:
        return _normalize_recursive(data, patterns, schema_pairs, id_map, keep_set)
    except (_TooDeep, RecursionError):
        # Nested past the recursive walk's budget (or a caller's low recursion limit).
        return _normalize_general(data, patterns, schema_pairs, id_map, keep_set)


class _TooDeep(Exception):
    """The recursive walk stops here; the iterative one takes any depth."""


# Nesting the recursive walk accepts before handing over to the iterative one; real dashboards
# are a dozen levels deep, and the Python stack must keep room for the caller's frames.
_RECURSION_BUDGET: Final = 150
_UUID_LENGTH: Final = 36
_MINTED_OR_SCHEMA: Final = MINTED_KEYS | SCHEMA_KEYS
_PLAIN_LEAVES: Final = frozenset({float, bool, type(None)})


def _key_text(item: tuple[Any, Any]) -> str:
    return str(item[0])


def _sorted_keys(value: dict[Any, Any]) -> list[Any]:
    """The keys in the general walk's order (by `str(key)`)."""
    return [key for key, _ in _sorted_items(value)]


def _sorted_items(value: dict[Any, Any]) -> list[tuple[Any, Any]]:
    """The items in the general walk's order (by `str(key)`), cheaply when keys are strings.

    Keys differ, so comparing items never reaches the values; a sort that did not raise and
    starts with a str key compared only strings.
    """
    try:
        items = sorted(value.items())
    except TypeError:
        return sorted(value.items(), key=_key_text)
    if items and type(items[0][0]) is not str:
        return sorted(value.items(), key=_key_text)
    return items


def _normalize_recursive(  # noqa: PLR0915  # closures over shared locals keep the hot loop fast
    data: Any,
    patterns: list[Pattern],
    schema_pairs: Sequence[SchemaPair],
    id_map: Mapping[str, str],
    keep: Collection[str],
) -> Any:
    """`_normalize_general`, recursive for speed, with the same visiting order and results.

    Per container: leaves first (sorted keys, or list order), then each child container in
    turn, as the general walk's stack visits them. A string is looked at only when it can
    change: an `id_map` key, under a minted or schema key, 36 characters long (a UUID?), or
    holding a `.` when schema names are being canonicalized. Raises _TooDeep past the budget.
    """
    schema = SchemaRewriter(canonical_schema_table(schema_pairs))
    table = schema.table
    names = tuple(table)
    rewrite = schema.rewrite
    uuid_match = _UUID.match
    mapping = id_map or None
    dotted = bool(names)  # only then can a `.` in a string mean a schema name to rewrite
    aliases: dict[str, str] = {}

    def string(value: str, key: Any) -> str:
        # `leaf` of the general walk for a string; a non-str key acts as None would.
        if mapping is not None:
            value = mapping.get(value, value)
        if (
            key in MINTED_KEYS or (len(value) == _UUID_LENGTH and uuid_match(value) is not None)
        ) and value not in keep:
            alias = aliases.get(value)
            if alias is None:
                alias = aliases[value] = f"#id{len(aliases) + 1}"
            return alias
        if names and (
            (key in SCHEMA_KEYS and value in table)
            or ("." in value and any(name in value for name in names))
        ):
            return rewrite(value, key if isinstance(key, str) else None)
        return value

    def leaf(value: Any, key: Any) -> Any:
        # `leaf` of the general walk for any non-container.
        if isinstance(value, str):
            return string(value, key)
        if key in MINTED_KEYS and isinstance(value, int) and not isinstance(value, bool):
            text = str(value)
            alias = aliases.get(text)
            if alias is None:
                alias = aliases[text] = f"#id{len(aliases) + 1}"
            return alias
        return value

    def walk_dict(value: dict[Any, Any], depth: int) -> dict[Any, Any]:
        if depth > _RECURSION_BUDGET:
            raise _TooDeep
        # _sorted_items, inlined: one call less per object.
        try:
            items = sorted(value.items())
        except TypeError:
            items = sorted(value.items(), key=_key_text)
        else:
            if items and type(items[0][0]) is not str:
                items = sorted(value.items(), key=_key_text)
        out = dict(items)  # then only what changes is replaced; the key order stays
        later: list[Any] = []
        for key, child in items:
            kind = type(child)
            if kind is str:
                if (
                    key in _MINTED_OR_SCHEMA
                    or len(child) == _UUID_LENGTH
                    or (dotted and "." in child)
                    or (mapping is not None and child in mapping)
                ):
                    out[key] = string(child, key)
            elif kind is dict or kind is list:
                later.append(key)
            elif kind is int:
                if key in MINTED_KEYS:
                    out[key] = leaf(child, key)
            elif kind in _PLAIN_LEAVES:
                pass
            elif isinstance(child, dict | list):
                later.append(key)
            else:
                out[key] = leaf(child, key)
        for key in later:
            child = value[key]
            out[key] = (
                walk_dict(child, depth + 1)
                if isinstance(child, dict)
                else walk_list(child, depth + 1)
            )
        return out

    def walk_list(value: list[Any], depth: int) -> list[Any]:
        if depth > _RECURSION_BUDGET:
            raise _TooDeep
        out = list(value)
        later: list[int] = []
        for index, child in enumerate(value):
            kind = type(child)
            if kind is str:
                if (
                    len(child) == _UUID_LENGTH
                    or (dotted and "." in child)
                    or (mapping is not None and child in mapping)
                ):
                    out[index] = string(child, None)
            elif kind is dict or kind is list or isinstance(child, dict | list):
                later.append(index)
            elif isinstance(child, str):
                out[index] = string(child, None)
            # Anything else in a list stays: without a key, a number is never a minted id.
        for index in later:
            child = value[index]
            out[index] = (
                walk_dict(child, depth + 1)
                if isinstance(child, dict)
                else walk_list(child, depth + 1)
            )
        return out

    def walk_ignoring(value: Any, depth: int, states: tuple[int, ...]) -> Any:
        # The general walk's pattern bookkeeping; subtrees no pattern reaches go fast.
        if not states:
            return walk_dict(value, depth) if isinstance(value, dict) else walk_list(value, depth)
        if depth > _RECURSION_BUDGET:
            raise _TooDeep
        is_dict = isinstance(value, dict)
        parts: list[Any] = _sorted_keys(value) if is_dict else list(range(len(value)))
        kept: list[tuple[Any, Any]] = []  # (part, leaf value or the child's live patterns)
        later: list[tuple[int, Any, tuple[int, ...]]] = []
        for part in parts:
            child_states, dropped = _advance(patterns, states, depth, part)
            if dropped:
                continue
            child = value[part]
            if isinstance(child, dict | list):
                later.append((len(kept), child, child_states))
                kept.append((part, None))
            else:
                kept.append((part, leaf(child, part if is_dict else None)))
        for slot, child, child_states in later:
            kept[slot] = (kept[slot][0], walk_ignoring(child, depth + 1, child_states))
        if is_dict:
            return dict(kept)
        return [item for _part, item in kept]

    if not isinstance(data, dict | list):
        return leaf(data, None)
    if patterns:
        return walk_ignoring(data, 0, tuple(range(len(patterns))))
    return walk_dict(data, 0) if isinstance(data, dict) else walk_list(data, 0)


def _normalize_general(
    data: Any,
    patterns: list[Pattern],
    schema_pairs: Sequence[SchemaPair],
    id_map: Mapping[str, str],
    keep_set: Collection[str],
) -> Any:
    """`normalize_for_compare` as an explicit stack: any depth, the reference semantics."""
    schema = SchemaRewriter(canonical_schema_table(schema_pairs))
    aliases: dict[str, str] = {}

    def leaf(value: Any, key: str | None) -> Any:
        if isinstance(value, str):
            value = id_map.get(value, value)
            if value not in keep_set and (key in MINTED_KEYS or _UUID.match(value)):
                return aliases.setdefault(value, f"#id{len(aliases) + 1}")
            return schema.rewrite(value, key)
        if key in MINTED_KEYS and isinstance(value, int) and not isinstance(value, bool):
            return aliases.setdefault(str(value), f"#id{len(aliases) + 1}")
        return value

    box: list[Any] = [None]
    start: tuple[int, ...] = tuple(range(len(patterns)))
    # (value, parent container, slot in parent, parent key, live ignore patterns, depth)
    stack: list[tuple[Any, Any, Any, str | None, tuple[int, ...], int]] = [
        (data, box, 0, None, start, 0)
    ]
    while stack:
        value, parent, slot, key, states, depth = stack.pop()
        if isinstance(value, dict):
            new_dict: dict[Any, Any] = {}
            parent[slot] = new_dict
            items: list[tuple[PathPart, Any]] = sorted(value.items(), key=lambda kv: str(kv[0]))
            target: Any = new_dict
        elif isinstance(value, list):
            new_list: list[Any] = []
            parent[slot] = new_list
            items = list(enumerate(value))
            target = new_list
        else:
            parent[slot] = leaf(value, key)
            continue
        pending: list[tuple[Any, Any, Any, str | None, tuple[int, ...], int]] = []
        for part, child in items:
            child_states: tuple[int, ...] = ()
            if states:
                child_states, dropped = _advance(patterns, states, depth, part)
                if dropped:
                    continue
            child_key = part if isinstance(part, str) else None
            if isinstance(target, list):
                child_slot: Any = len(target)
                target.append(None)
            else:
                child_slot = part
            if isinstance(child, dict | list):
                target[child_slot] = None
                pending.append((child, target, child_slot, child_key, child_states, depth + 1))
            else:
                # Leaves are aliased as met, before any deeper container, in a fixed order.
                target[child_slot] = leaf(child, child_key)
        stack.extend(reversed(pending))
    return box[0]


# ------------------------------------------------------------------------------------ diffs
@dataclass(frozen=True)
class Change:
    """One differing field: `added` (after only), `removed` (before only) or `changed`."""

    path: str
    kind: Literal["added", "removed", "changed"]
    before: Any
    after: Any


_MISSING: Final = object()


def _same(a: Any, b: Any) -> bool:
    # == alone says True == 1 and 1 == 1.0; JSON readers care about the first, not the second.
    try:
        return a == b and (isinstance(a, bool) is isinstance(b, bool))
    except RecursionError:
        # == recurses in C; past its limit, say "maybe different" and let the caller descend.
        return False


def payloads_equal(a: Any, b: Any) -> bool:
    """`a == b` for JSON values, also when they nest deeper than Python's recursion limit."""
    try:
        return bool(a == b)
    except RecursionError:
        return not _walk(a, b, limit=1, root="", stop=True)[0]


def diff_summary(
    before: Any, after: Any, *, limit: int = 50, root: str = "data"
) -> tuple[list[Change], int]:
    """The first `limit` changes (sorted by path) and how many there are in all.

    Field-level: containers of the same kind are compared member by member (dict keys sorted,
    list items by index, extra items added/removed); anything else that differs is one change.
    """
    return _walk(before, after, limit=limit, root=root, stop=False)


def _walk(
    before: Any, after: Any, *, limit: int, root: str, stop: bool
) -> tuple[list[Change], int]:
    changes: list[Change] = []
    total = 0
    # A pre-order walk, children pushed in reverse, so changes come out in path order.
    stack: list[tuple[Any, Any, PathLink]] = [(before, after, None)]
    while stack:
        a, b, link = stack.pop()
        if a is _MISSING or b is _MISSING:
            kind: Literal["added", "removed", "changed"] = "added" if a is _MISSING else "removed"
        elif _same(a, b):
            continue
        elif isinstance(a, dict) and isinstance(b, dict):
            keys = sorted(a.keys() | b.keys(), key=str, reverse=True)
            stack.extend((a.get(k, _MISSING), b.get(k, _MISSING), (link, k)) for k in keys)
            continue
        elif isinstance(a, list) and isinstance(b, list):
            stack.extend(
                (
                    a[i] if i < len(a) else _MISSING,
                    b[i] if i < len(b) else _MISSING,
                    (link, i),
                )
                for i in reversed(range(max(len(a), len(b))))
            )
            continue
        else:
            kind = "changed"
        total += 1
        if len(changes) < limit:
            changes.append(
                Change(
                    format_path(link_parts(link), root),
                    kind,
                    None if a is _MISSING else a,
                    None if b is _MISSING else b,
                )
            )
        elif stop:
            break
    return changes, total


def diff_payloads(before: Any, after: Any, *, limit: int = 50, root: str = "data") -> list[Change]:
    """The first `limit` field-level changes from `before` to `after`, sorted by path.

    Use `diff_summary` to also learn the total, for an "and N more" line.
    """
    return diff_summary(before, after, limit=limit, root=root)[0]


def _encode(value: Any) -> str:
    return json.dumps(
        value, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=repr
    )


def _clip(text: str, room: int) -> str:
    if len(text) <= room:
        return text
    if room <= 1:
        return "…"[:room]
    # Keep the head and a little of the tail: the end of a long SQL string often differs too.
    tail = min(room // 4, 20)
    return text[: room - tail - 1] + "…" + (text[-tail:] if tail else "")


_MARK: Final = {"added": "+", "removed": "-", "changed": "~"}


def format_change(change: Change, *, width: int = 120) -> str:
    """One line, at most `width` characters: `~ path: before → after`, values JSON-encoded.

    Long values are cut in the middle with "…"; the path is cut (from the left) only when it
    alone would fill the line.
    """
    mark = _MARK[change.kind]
    path = change.path
    if len(path) > width // 2:
        path = "…" + path[-(width // 2 - 1) :]
    head = f"{mark} {path}: "
    room = max(width - len(head), 8)
    if change.kind == "added":
        return head + _clip(_encode(change.after), room)
    if change.kind == "removed":
        return head + _clip(_encode(change.before), room)
    before, after = _encode(change.before), _encode(change.after)
    room -= 3  # " → "
    if len(before) + len(after) > room:
        # Share the room, giving the shorter value only what it needs.
        half = room // 2
        if len(before) <= half:
            after = _clip(after, room - len(before))
        elif len(after) <= half:
            before = _clip(before, room - len(after))
        else:
            before, after = _clip(before, half), _clip(after, room - half)
    return f"{head}{before} → {after}"

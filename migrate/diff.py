"""Comparing a source dashboard with its target copy: normalization and field-level diffs.

"Equal content" (DESIGN A3) is `normalize_for_compare(source, ...) == normalize_for_compare(
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
    schema = SchemaRewriter(canonical_schema_table(schema_pairs))
    keep_set = keep if isinstance(keep, set | frozenset) else set(keep)
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

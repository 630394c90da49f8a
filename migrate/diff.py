"""Comparing a source dashboard with its target copy: normalization and field-level diffs.

"Equal content" (docs/contract.md A3) is `normalize_for_compare(source, ...) ==
normalize_for_compare(target, ...)`. Normalization removes what a faithful import may
legitimately change: dashboard-id references (rewritten to target ids), schema names (whichever
occurrences the server rewrote), the metric ids the server re-mints, and the user's
`compare_ignore` paths. It keeps what must survive: every other value — other ids included, a
`datasourceId` or a filter's `id` must be equal — and which minted ids are the same id (a layout
cell → its metric).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from migrate.jsonpath import (
    WILDCARD,
    PathLink,
    PathPart,
    Wildcard,
    format_path,
    link_parts,
    parse_path,
)
from migrate.jsontext import MAX_DEPTH, nesting_error
from migrate.models import SchemaPair
from migrate.schemapairs import SCHEMA_KEYS, SchemaRewriter, canonical_schema_table

# The keys of a `metrics[*]` item whose values the server may mint afresh on import; every
# other value, UUID-shaped or under an `id` key, must survive an import unchanged.
METRIC_ID_KEYS: Final = ("id", "metricId")
_EMPTY: Final[Mapping[str, str]] = {}

Pattern = tuple[PathPart | Wildcard, ...]


def _advance(
    patterns: Sequence[Pattern], states: tuple[int, ...], position: int, part: PathPart
) -> tuple[tuple[int, ...], bool]:
    """Pattern indices still alive below `part`, matched against each pattern's part at
    `position`, and whether one of them ends exactly there."""
    alive: list[int] = []
    ends = False
    for index in states:
        pattern = patterns[index]
        want = pattern[position]
        if want is WILDCARD or (want == part and type(want) is type(part)):
            if len(pattern) == position + 1:
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
    3. minted ids — the string (or integer) values of `id` and `metricId` of the items of
       `data["metrics"]` (`METRIC_ID_KEYS`), wherever they occur (the metric itself, layout
       cells `i`, click and drill-down targets) — become `#id1`, `#id2`, ... in visiting order
       (per container: its non-container values by sorted key, or in list order, then each
       child container in the same order), one alias per distinct original, so consistently
       re-minted ids compare equal and a reference to a different or missing id does not.
       No other value is aliased: a `datasourceId`, a filter `id`, any other UUID must be
       equal. Values in `keep` (pass the planned dashboards' target ids, on both sides) stay
       literal even when a metric id equals one;
    4. values at `ignore` paths (`data.gridMargin`, `metrics[*].chartOptions`) are dropped.
    Dict keys are never rewritten; keys sort by `str(key)`. Raises PlanError for an unreadable
    `ignore` path, UntrustedJSONError for a value nested deeper than `MAX_DEPTH`.
    """
    patterns = [parse_path(text) for text in ignore]
    keep_set = keep if isinstance(keep, set | frozenset) else set(keep)
    return _normalize(data, patterns, schema_pairs, id_map, keep_set)


def minted_ids(data: Any) -> frozenset[str | int]:
    """The metric ids of a payload (see `METRIC_ID_KEYS`): the only ids a server may re-mint."""
    metrics = data.get("metrics") if isinstance(data, dict) else None
    if not isinstance(metrics, list):
        return frozenset()
    found: set[str | int] = set()
    for metric in metrics:
        if isinstance(metric, dict):
            for key in METRIC_ID_KEYS:
                value = metric.get(key)
                if isinstance(value, str) or (type(value) is int):
                    found.add(value)
    return frozenset(found)


_PLAIN_LEAVES: Final = frozenset({float, bool, type(None)})


def _key_text(item: tuple[Any, Any]) -> str:
    return str(item[0])


def _sorted_items(value: dict[Any, Any]) -> list[tuple[Any, Any]]:
    """The items in comparison order (by `str(key)`), cheaply when keys are strings.

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


def _normalize(  # noqa: PLR0915  # closures over shared locals keep the hot loop fast
    data: Any,
    patterns: list[Pattern],
    schema_pairs: Sequence[SchemaPair],
    id_map: Mapping[str, str],
    keep: Collection[str],
) -> Any:
    """`normalize_for_compare` after its arguments are read: one recursive walk, one frame per
    level, `depth` counting the levels of the container at hand (1 for the top one).

    A string is looked at only when it can change: an `id_map` key, a metric id, under a
    schema key, or holding a `.` when schema names are being canonicalized. Subtrees no ignore
    pattern reaches take the fast `walk`.
    """
    schema = SchemaRewriter(canonical_schema_table(schema_pairs))
    table = schema.table
    names = tuple(table)
    rewrite = schema.rewrite
    minted = minted_ids(data)
    mapping = id_map or None
    dotted = bool(names)  # only then can a `.` in a string mean a schema name to rewrite
    aliases: dict[str, str] = {}

    def string(value: str, key: Any) -> str:
        # A key that is not a str (a list index, an odd dict key) names nothing.
        if mapping is not None:
            value = mapping.get(value, value)
        if value in minted and value not in keep:
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
        # Any non-container; an integer metric id is an id too.
        if isinstance(value, str):
            return string(value, key)
        if type(value) is int and value in minted:
            text = str(value)
            alias = aliases.get(text)
            if alias is None:
                alias = aliases[text] = f"#id{len(aliases) + 1}"
            return alias
        return value

    def walk(value: dict[Any, Any] | list[Any], depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise nesting_error()
        out: Any
        if isinstance(value, dict):
            items: Any = _sorted_items(value)
            out = dict(items)  # then only what changes is replaced; the key order stays
        else:
            items = enumerate(value)
            out = list(value)
        later: list[Any] = []
        # A list index is an int key: it is in no key set, so list items act as keyless.
        for key, child in items:
            kind = type(child)
            if kind is str:
                if (
                    key in SCHEMA_KEYS
                    or child in minted
                    or (dotted and "." in child)
                    or (mapping is not None and child in mapping)
                ):
                    out[key] = string(child, key)
            elif kind is dict or kind is list:
                later.append(key)
            elif kind is int:
                if child in minted:
                    out[key] = leaf(child, key)
            elif kind in _PLAIN_LEAVES:
                pass
            elif isinstance(child, dict | list):
                later.append(key)
            else:
                out[key] = leaf(child, key)
        for key in later:
            out[key] = walk(value[key], depth + 1)
        return out

    def walk_ignoring(
        value: dict[Any, Any] | list[Any], depth: int, states: tuple[int, ...]
    ) -> Any:
        # `walk`, also dropping what the live patterns (`states`) name at this level.
        if not states:
            return walk(value, depth)
        if depth > MAX_DEPTH:
            raise nesting_error()
        is_dict = isinstance(value, dict)
        if isinstance(value, dict):
            parts: list[Any] = [key for key, _ in _sorted_items(value)]
        else:
            parts = list(range(len(value)))
        kept: list[tuple[Any, Any]] = []  # (part, leaf value or the child's live patterns)
        later: list[tuple[int, Any, tuple[int, ...]]] = []
        for part in parts:
            child_states, dropped = _advance(patterns, states, depth - 1, part)
            if dropped:
                continue
            child = value[part]
            if isinstance(child, dict | list):
                later.append((len(kept), child, child_states))
                kept.append((part, None))
            else:
                kept.append((part, leaf(child, part)))
        for slot, child, child_states in later:
            kept[slot] = (kept[slot][0], walk_ignoring(child, depth + 1, child_states))
        if is_dict:
            return dict(kept)
        return [item for _part, item in kept]

    if not isinstance(data, dict | list):
        return leaf(data, None)
    if patterns:
        return walk_ignoring(data, 1, tuple(range(len(patterns))))
    return walk(data, 1)


def _text_of_key(item: tuple[Any, Any]) -> str:
    return str(item[0])


def normalize_for_digest(data: Any) -> Any:
    """`normalize_for_compare(data)` (no options) for a writer that sorts keys itself, such as
    `jsontext.dump_json_canonical`: the same value, with the same aliases, but containers that
    nothing under changes are returned as they are and no dict is re-ordered.

    A content hash walks every value of a dashboard; this walk does half the work. It visits
    exactly as `normalize_for_compare` does — per container its non-container values by
    `str(key)` (in list order), then each child container in that order — but it sorts only
    the few values it rewrites and the child containers, not every member. Raises
    UntrustedJSONError for a value nested deeper than `MAX_DEPTH`, as that one does.
    """
    minted = minted_ids(data)
    aliases: dict[str, str] = {}

    def alias(text: str) -> str:
        found = aliases.get(text)
        if found is None:
            found = aliases[text] = f"#id{len(aliases) + 1}"
        return found

    def walk(value: dict[Any, Any] | list[Any], depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise nesting_error()
        is_dict = isinstance(value, dict)
        items: Any = value.items() if isinstance(value, dict) else enumerate(value)
        hits: list[tuple[Any, str]] = []  # (key, the alias key: the id's text)
        later: list[tuple[Any, Any]] = []
        for key, child in items:
            kind = type(child)
            if kind is str:
                if child in minted:
                    hits.append((key, child))
            elif kind is dict or kind is list:
                later.append((key, child))
            elif kind is int:
                if child in minted:
                    hits.append((key, str(child)))
            elif kind in _PLAIN_LEAVES:
                pass
            elif isinstance(child, dict | list):
                later.append((key, child))
            elif isinstance(child, str) and child in minted:
                hits.append((key, child))  # a str subclass: aliased as `normalize` does
        out: Any = None
        if hits:
            if is_dict and len(hits) > 1:
                hits.sort(key=_text_of_key)  # stable: ties keep dict order, as `_sorted_items`
            out = dict(value) if is_dict else list(value)
            for key, text in hits:
                out[key] = alias(text)
        if later:
            if is_dict and len(later) > 1:
                later.sort(key=_text_of_key)
            for key, child in later:
                new = walk(child, depth + 1)
                if new is not child:
                    if out is None:
                        out = dict(value) if is_dict else list(value)
                    out[key] = new
        return value if out is None else out

    if not isinstance(data, dict | list):
        return data  # a scalar root has no metrics, so no minted ids: nothing to alias
    return walk(data, 1)


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
    return bool(a == b) and (isinstance(a, bool) is isinstance(b, bool))


def diff_summary(
    before: Any, after: Any, *, limit: int = 50, root: str = "data"
) -> tuple[list[Change], int]:
    """The first `limit` changes (sorted by path) and how many there are in all.

    Field-level: containers of the same kind are compared member by member (dict keys sorted,
    list items by index, extra items added/removed); anything else that differs is one change.
    """
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
    return changes, total


def diff_payloads(before: Any, after: Any, *, limit: int = 50, root: str = "data") -> list[Change]:
    """The first `limit` field-level changes from `before` to `after`, sorted by path.

    Use `diff_summary` to also learn the total, for an "and N more" line.
    """
    return diff_summary(before, after, limit=limit, root=root)[0]

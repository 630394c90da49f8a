"""Pure rewrites of dashboard payloads: target ids, dashboard-id references, schema names.

Payloads are JSON values (dicts, lists, str, numbers, bool, None). Every function here takes data
and returns new data; none mutates its input, and none recurses, because an export is untrusted
and may be nested thousands of levels deep.

JSON paths look like `data.metrics[2].clickActions[0].dashboardId`; a key that is not a plain
identifier is written JSON-quoted in brackets (`data["odd key"]`). `parse_path` reads that syntax
back, plus `*` (any key) and `[*]` (any index) for `compare_ignore`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Final

from migrate.errors import PlanError
from migrate.models import SchemaPair

PathPart = str | int
# A path as a cons list, (parent, part); materialized only when a caller needs the text, so a
# deep walk does not copy an ever-longer tuple at every level.
PathLink = tuple[Any, PathPart] | None

_PLAIN_KEY: Final = re.compile(r"[A-Za-z_$][\w$-]*\Z")
# Keys whose whole string value is a schema name (docs/databrain-api.md: inputFields.schemaName).
SCHEMA_KEYS: Final = frozenset({"schemaName", "schema", "schema_name"})


class Wildcard:
    """`*` in a `compare_ignore` path: matches any key or index."""

    def __repr__(self) -> str:
        return "*"


WILDCARD: Final = Wildcard()


# ---------------------------------------------------------------------------------------- paths
def format_path(parts: Sequence[PathPart], root: str = "data") -> str:
    """`root` followed by `.key`, `["odd key"]` or `[index]` for each part."""
    out = [root]
    for part in parts:
        if isinstance(part, int):
            out.append(f"[{part}]")
        elif _PLAIN_KEY.match(part):
            out.append(f".{part}")
        else:
            out.append(f"[{json.dumps(part, ensure_ascii=False)}]")
    return "".join(out)


def link_parts(link: PathLink) -> list[PathPart]:
    """The parts of a cons-list path, root first."""
    parts: list[PathPart] = []
    while link is not None:
        link, part = link
        parts.append(part)
    parts.reverse()
    return parts


_TOKEN: Final = re.compile(
    r"""\.(?P<key>[^.\[\]"]+)           # .key   (anything but separators and quotes)
      | \[(?P<index>\d+|\*)\]            # [3] or [*]
      | \[(?P<quoted>"(?:[^"\\]|\\.)*")\] # ["odd key"]
    """,
    re.VERBOSE,
)


def parse_path(text: str, root: str = "data") -> tuple[PathPart | Wildcard, ...]:
    """Parse a path (leading `root.` optional) into keys, indices and `WILDCARD`s.

    Raises PlanError when the text is not a path in the syntax `format_path` writes.
    """
    rest = text.strip()
    if rest == root or rest.startswith((root + ".", root + "[")):
        rest = rest[len(root) :]
    elif rest and rest[0] not in ".[":
        rest = "." + rest
    parts: list[PathPart | Wildcard] = []
    pos = 0
    while pos < len(rest):
        match = _TOKEN.match(rest, pos)
        if match is None:
            raise PlanError(
                f"cannot read the JSON path {text!r} (at character {pos + 1})",
                hint='write paths like data.metrics[*].chartOptions or data["odd key"].x',
            )
        if (key := match.group("key")) is not None:
            parts.append(WILDCARD if key == "*" else key)
        elif (index := match.group("index")) is not None:
            parts.append(WILDCARD if index == "*" else int(index))
        else:
            parts.append(json.loads(match.group("quoted")))
        pos = match.end()
    if not parts:
        raise PlanError(
            f"the JSON path {text!r} names the whole payload",
            hint="name a field inside it, e.g. data.gridMargin",
        )
    return tuple(parts)


def iter_strings(data: Any) -> Iterator[tuple[PathLink, str | None, str]]:
    """Yield (path, parent key or None inside a list, value) for every string value in `data`.

    Dict keys are not values and are never yielded. Order is unspecified; sort if it matters.
    """
    stack: list[tuple[Any, PathLink]] = [(data, None)]
    while stack:
        value, link = stack.pop()
        if isinstance(value, dict):
            for key, child in value.items():
                if isinstance(child, str):
                    yield (link, key), key, child
                elif isinstance(child, dict | list):
                    stack.append((child, (link, key)))
        elif isinstance(value, list):
            for index, child in enumerate(value):
                if isinstance(child, str):
                    yield (link, index), None, child
                elif isinstance(child, dict | list):
                    stack.append((child, (link, index)))
        elif isinstance(value, str):
            yield None, None, value


def map_strings(data: Any, fn: Callable[[str, str | None], Any]) -> Any:
    """A copy of `data` with every string value `v` replaced by `fn(v, parent_key)`.

    `parent_key` is the dict key holding the string, None inside a list. Containers are copied
    (key order kept), other scalars shared; the input is never mutated.
    """
    box: list[Any] = [None]
    stack: list[tuple[Any, Any, Any]] = [(data, box, 0)]
    while stack:
        value, parent, slot = stack.pop()
        if isinstance(value, dict):
            new_dict: dict[Any, Any] = {}
            parent[slot] = new_dict
            for key, child in value.items():
                if isinstance(child, str):
                    new_dict[key] = fn(child, key if isinstance(key, str) else None)
                else:
                    new_dict[key] = child
                    if isinstance(child, dict | list):
                        stack.append((child, new_dict, key))
        elif isinstance(value, list):
            new_list: list[Any] = list(value)
            parent[slot] = new_list
            for index, child in enumerate(value):
                if isinstance(child, str):
                    new_list[index] = fn(child, None)
                elif isinstance(child, dict | list):
                    stack.append((child, new_list, index))
        elif isinstance(value, str):
            parent[slot] = fn(value, None)
        else:
            parent[slot] = value
    return box[0]


# ------------------------------------------------------------------------------- dashboard ids
def target_id(source_id: str, *, override: str | None, prefix: str, suffix: str) -> str:
    """The target dashboard id: `override` when given, else prefix + source id + suffix."""
    if override is not None:
        return override
    return f"{prefix}{source_id}{suffix}"


def rewrite_references(data: Any, id_map: Mapping[str, str]) -> Any:
    """A copy of `data` with every string value equal to a key of `id_map` replaced by its value.

    Same matching rule as `graph.find_references`: whole string values at any depth, never dict
    keys, never substrings. Identity entries are skipped; the input is not mutated.
    """
    mapping = {old: new for old, new in id_map.items() if old != new}
    try:
        return _replace_strings(data, mapping, 0)
    except _TooDeep:
        pass
    except RecursionError:  # a caller's low recursion limit: the iterative walk takes over
        pass
    if not mapping:
        return map_strings(data, lambda value, _key: value)
    return map_strings(data, lambda value, _key: mapping.get(value, value))


class _TooDeep(Exception):
    """A recursive fast path gives up; the iterative walk takes any depth."""


# Nesting a recursive fast path accepts before the iterative walk takes over: real payloads are
# a dozen levels deep, and the Python stack must keep room for the caller's frames.
RECURSION_BUDGET: Final = 150


def _replace_strings(value: Any, mapping: dict[str, str], depth: int) -> Any:
    """`map_strings(value, lambda v, _k: mapping.get(v, v))`, recursive and without a call per
    string: containers copied (key order kept, subclasses as plain dict/list), scalars shared."""
    if depth > RECURSION_BUDGET:
        raise _TooDeep
    if isinstance(value, dict):
        out: dict[Any, Any] = dict(value)
        for key, child in value.items():
            kind = type(child)
            if kind is str:
                if child in mapping:
                    out[key] = mapping[child]
            elif kind is dict or kind is list or isinstance(child, dict | list | str):
                out[key] = _replace_strings(child, mapping, depth + 1)
        return out
    if isinstance(value, list):
        items = list(value)
        for index, child in enumerate(value):
            kind = type(child)
            if kind is str:
                if child in mapping:
                    items[index] = mapping[child]
            elif kind is dict or kind is list or isinstance(child, dict | list | str):
                items[index] = _replace_strings(child, mapping, depth + 1)
        return items
    if isinstance(value, str):
        return mapping.get(value, value)
    return value


# ---------------------------------------------------------------------------------- schemas
def merge_schema_pairs(
    plan_pairs: Sequence[SchemaPair], dashboard_pairs: Sequence[SchemaPair]
) -> tuple[SchemaPair, ...]:
    """The dashboard's pairs, then the plan's whose `replace` the dashboard did not override.

    Within each list the first pair for a `replace` wins; pairs with replace == target are no-ops
    and dropped.
    """
    merged: dict[str, SchemaPair] = {}
    for pair in (*dashboard_pairs, *plan_pairs):
        merged.setdefault(pair.replace, pair)
    return tuple(pair for pair in merged.values() if pair.replace != pair.target)


def _quoted_schema_regex(names: Sequence[str]) -> re.Pattern[str]:
    """The reference rule: a name, whole word, optionally quoted (same quote both sides), `.`."""
    return re.compile(
        r"(?<![\w$])(?P<q>[\"`]?)(?P<name>" + "|".join(map(re.escape, names)) + r")(?P=q)(?=\.)"
    )


def _name_first_schema_regex(names: Sequence[str]) -> re.Pattern[str]:
    """The same rule as `_quoted_schema_regex` for quote-free names, matching the name only.

    The pattern starts with the names, so the regex engine skips ahead to them instead of
    trying lookbehinds at every character (six times faster on SQL). Per name `n`, after it:
    bare (`n` not after a word character, then `.`), or between two equal quotes (the opening
    one not after a word character) then `.`. Replacing the name alone leaves the quotes as
    they were, which is what the reference rule writes back.
    """
    branches = []
    for name in names:
        e = re.escape(name)
        branches.append(
            f"{e}(?:(?<![\\w$]{e})(?=\\.)"
            f'|(?<="{e})(?<![\\w$]"{e})(?="\\.)'
            f"|(?<=`{e})(?<![\\w$]`{e})(?=`\\.))"
        )
    return re.compile("|".join(branches))


class SchemaRewriter:
    """Rewrites schema names per a name → replacement table, counting what it touched.

    A name matches inside any string when it is a whole word followed by `.`
    (`analytics_dev.orders`, `FROM analytics_dev.orders o`), also double-quoted or
    backticked (`"analytics_dev"."orders"`); and as the whole value
    of a `schemaName`/`schema`/`schema_name` key. Matching is case-sensitive: SQL folds
    unquoted case differently per database, so we do not guess.
    """

    def __init__(self, table: Mapping[str, str]) -> None:
        # Identity entries stay: they change nothing but are still counted.
        self.table = {name: new for name, new in table.items() if name}
        self.counts: dict[str, int] = dict.fromkeys(self.table, 0)
        # Longest first, so `sales_dev` wins over `sales` at the same position.
        names = sorted(self.table, key=lambda n: (-len(n), n))
        self._regex: re.Pattern[str] | None = None
        # With one name, a literal replacement and subn's count: no Python call per match.
        self._single: tuple[str, str] | None = None
        self._name_only = False
        if not names:
            return
        if any('"' in name or "`" in name for name in names):
            # A quote inside a name would let the two forms disagree: keep the reference.
            self._regex = _quoted_schema_regex(names)
            return
        self._regex = _name_first_schema_regex(names)
        self._name_only = True
        if len(names) == 1 and "\\" not in self.table[names[0]]:
            self._single = (names[0], self.table[names[0]])

    def _sub(self, match: re.Match[str]) -> str:
        name = match.group("name")
        self.counts[name] += 1
        quote = match.group("q")
        return f"{quote}{self.table[name]}{quote}"

    def _sub_name(self, match: re.Match[str]) -> str:
        name = match.group()
        self.counts[name] += 1
        return self.table[name]

    def rewrite(self, value: str, key: str | None) -> str:
        """`value` with every matching schema name replaced (and counted)."""
        if self._regex is None:
            return value
        if key in SCHEMA_KEYS and value in self.table:
            self.counts[value] += 1
            return self.table[value]
        if "." not in value:  # fast path: no qualified name can be in it
            return value
        if self._single is not None:
            name, new = self._single
            if name not in value:
                return value
            text, count = self._regex.subn(new, value)
            self.counts[name] += count
            return text
        if self._name_only:
            return self._regex.sub(self._sub_name, value)
        return self._regex.sub(self._sub, value)


def _pair_table(pairs: Sequence[SchemaPair]) -> dict[str, str]:
    table: dict[str, str] = {}
    for pair in pairs:
        table.setdefault(pair.replace, pair.target)
    return table


def count_schema_occurrences(data: Any, pairs: Sequence[SchemaPair]) -> dict[str, int]:
    """For each pair's `replace`: how many places `apply_schema_pairs` would rewrite (0 = typo?)."""
    rewriter = SchemaRewriter(_pair_table(pairs))
    if rewriter.table:
        try:
            _count_schemas(data, None, rewriter, tuple(rewriter.table), 0)
        except (_TooDeep, RecursionError):
            rewriter.counts = dict.fromkeys(rewriter.table, 0)  # start over, iteratively
            for _link, key, value in iter_strings(data):
                rewriter.rewrite(value, key)
    return {pair.replace: rewriter.counts.get(pair.replace, 0) for pair in pairs}


def _count_schemas(
    value: Any, key: str | None, rewriter: SchemaRewriter, names: tuple[str, ...], depth: int
) -> None:
    """`rewriter.rewrite` on every string, recursive, skipping strings that name no schema."""
    if depth > RECURSION_BUDGET:
        raise _TooDeep
    if isinstance(value, dict):
        pairs: Iterable[tuple[Any, Any]] = value.items()
        keyed = True
    elif isinstance(value, list):
        pairs = enumerate(value)
        keyed = False
    else:
        if isinstance(value, str):
            rewriter.rewrite(value, key)
        return
    for part, child in pairs:
        if type(child) is str:
            # rewrite() changes nothing unless a name is in the string: whole (schema keys) or
            # before a `.`.
            if (names[0] in child) if len(names) == 1 else any(n in child for n in names):
                rewriter.rewrite(child, part if keyed and isinstance(part, str) else None)
        elif isinstance(child, dict | list | str):
            _count_schemas(
                child, part if keyed and isinstance(part, str) else None, rewriter, names, depth + 1
            )


def apply_schema_pairs(data: Any, pairs: Sequence[SchemaPair]) -> Any:
    """A copy of `data` with the pairs applied as we expect the server to (comparison only).

    All pairs apply in one pass, so `a→b, b→c` never chains `a` into `c`.
    """
    rewriter = SchemaRewriter(_pair_table(pairs))
    return map_strings(data, rewriter.rewrite)


def equals_after_schema_pairs(sent: Any, target: Any, pairs: Sequence[SchemaPair]) -> bool:
    """True when `target` is `sent` with the pairs applied (as `apply_schema_pairs` would), or
    with none of them applied, string by string; a fast proof of A3 equality, never a refusal.

    Walks both sides together and descends only into subtrees that differ (compared in C), so
    a payload that matches costs little more than one `==`.
    """
    rewriter = SchemaRewriter(_pair_table(pairs))
    stack: list[tuple[Any, Any, str | None]] = [(sent, target, None)]
    while stack:
        a, b, key = stack.pop()
        if a == b:
            continue
        if type(a) is dict and type(b) is dict:
            if a.keys() != b.keys():
                return False
            stack.extend((a[k], b[k], k if isinstance(k, str) else None) for k in a)
        elif type(a) is list and type(b) is list:
            if len(a) != len(b):
                return False
            stack.extend((x, y, None) for x, y in zip(a, b, strict=True))
        elif type(a) is str and type(b) is str:
            if rewriter.rewrite(a, key) != b:
                return False
        else:
            return False
    return True


def canonical_schema_table(pairs: Sequence[SchemaPair]) -> dict[str, str]:
    """Map every name in `pairs` (replace and target) to one token per connected group.

    The token is the target of the first pair of the group, so normalized text reads like the
    target. Used by comparison: whichever occurrences the server rewrote, both sides agree.
    """
    parent: dict[str, str] = {}

    def find(name: str) -> str:
        root = parent.setdefault(name, name)
        while root != parent[root]:
            root = parent[root]
        while name != root:  # path compression
            parent[name], name = root, parent[name]
        return root

    for pair in pairs:
        a, b = find(pair.replace), find(pair.target)
        if a != b:
            parent[a] = b
    token: dict[str, str] = {}
    for pair in pairs:
        token.setdefault(find(pair.replace), pair.target)
    canonical = {name: token[find(name)] for name in parent}
    return {name: new for name, new in canonical.items() if name != new}

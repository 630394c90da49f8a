"""What the sandbox's import does to a payload: `schemaPairs` rewrites and metric id re-minting.

Both are pure: they return a new structure and leave their input alone (the schema-pair rewrite
shares the parts it did not change). The real server's rewrite
rules are undocumented; these are a plausible reading that a client must be able to verify.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from migrate.models import JSONObject

SCHEMA_NAME_KEY = "schemaName"


def _pattern(schema: str) -> re.Pattern[str]:
    # The schema must qualify something (`analytics_dev.orders`, `"analytics_dev"."orders"`):
    # not preceded by an identifier character, optionally quoted, followed by a dot.
    return re.compile(rf'(?<![\w$])(?P<q>["`]?){re.escape(schema)}(?P=q)(?=\.)')


def _name_pattern(schema: str) -> re.Pattern[str]:
    # `_pattern`'s matches, but the name alone (quotes stay where they are), for a name without
    # quotes: the regex starts with the name, so the engine skips ahead instead of trying the
    # lookbehind at every character.
    e = re.escape(schema)
    return re.compile(
        rf"{e}(?:(?<![\w$]{e})(?=\.)"
        rf'|(?<="{e})(?<![\w$]"{e})(?="\.)'
        rf"|(?<=`{e})(?<![\w$]`{e})(?=`\.))"
    )


def _substitution(schema: str, target: str) -> Callable[[str], str]:
    """`text` with `schema` rewritten to `target` wherever `_pattern` matches."""
    if '"' in schema or "`" in schema or "\\" in target:
        pattern, requoted = _pattern(schema), _requoted(target)
        return lambda text: pattern.sub(requoted, text)
    name_pattern = _name_pattern(schema)
    return lambda text: name_pattern.sub(target, text)  # a literal: no call per match


def _requoted(target: str) -> Callable[[re.Match[str]], str]:
    # A function, not a template string: `target` may hold characters `re` templates interpret.
    def substitute(match: re.Match[str]) -> str:
        return f"{match['q']}{target}{match['q']}"

    return substitute


def apply_schema_pairs(data: Any, pairs: Iterable[tuple[str, str]]) -> Any:
    """Rewrite each `(replace, target)` schema in every string of `data`.

    Inside any string, `replace` is rewritten where it qualifies a table or column (word
    boundary before, `.` after, optionally quoted). A string value of a key named `schemaName`
    equal to `replace` is rewritten whole. Keys are never rewritten.
    """
    compiled = [
        (replace, target, _substitution(replace, target)) for replace, target in pairs if replace
    ]
    if not compiled:
        return data
    names = tuple(replace for replace, _, _ in compiled)
    only = names[0] if len(names) == 1 else None

    def rewrite_text(text: str) -> str:
        for replace, _target, substitute in compiled:
            if replace in text:  # cheap pre-check: most strings name no schema
                text = substitute(text)
        return text

    def string(node: str, key: Any) -> str:
        if key == SCHEMA_NAME_KEY:
            for replace, target, _ in compiled:
                if node == replace:
                    return target
        # No pair's name in the string: every pair leaves it as it is.
        if (only in node) if only is not None else any(name in node for name in names):
            return rewrite_text(node)
        return node

    def walk(node: Any, key: Any) -> Any:
        # Recursive like the request parser that built `node`; no call per string. A container
        # is copied only when something in it changed (the input is never modified): most of
        # a payload names no schema, and copying it all was most of an import's CPU.
        if isinstance(node, dict):
            out: dict[Any, Any] | None = None
            for k, v in node.items():
                kind = type(v)
                if kind is str:
                    if k == SCHEMA_NAME_KEY or (
                        (only in v) if only is not None else any(name in v for name in names)
                    ):
                        new = string(v, k)
                    else:
                        continue
                elif kind is dict or kind is list or isinstance(v, dict | list | str):
                    new = walk(v, k)
                else:
                    continue
                if new is not v:
                    if out is None:
                        out = dict(node)
                    out[k] = new
            return node if out is None else out
        if isinstance(node, list):
            items: list[Any] | None = None
            for index, v in enumerate(node):
                kind = type(v)
                if kind is str:
                    if (only in v) if only is not None else any(name in v for name in names):
                        new = rewrite_text(v)
                    else:
                        continue
                elif kind is dict or kind is list or isinstance(v, dict | list | str):
                    new = walk(v, None)
                else:
                    continue
                if new is not v:
                    if items is None:
                        items = list(node)
                    items[index] = new
            return node if items is None else items
        if isinstance(node, str):
            return string(node, key)
        return node

    return walk(data, None)


def _is_sql_key(key: Any) -> bool:
    return isinstance(key, str) and ("sql" in key.lower() or "query" in key.lower())


def apply_schema_pairs_to_sql(data: Any, pairs: Iterable[tuple[str, str]]) -> Any:
    """Like `apply_schema_pairs`, but only inside SQL text: strings under a key whose name
    holds `sql` or `query` (`query`, `metricQuery`, `options.sql`). Filter bindings
    (`applyOnTables`) and `schemaName` fields keep the source schema, as a server that reads
    `schemaPairs` as "rewrite the SQL" would leave them."""
    compiled = [_substitution(replace, target) for replace, target in pairs if replace]
    if not compiled:
        return data

    def rewrite(text: str) -> str:
        for substitute in compiled:
            text = substitute(text)
        return text

    def walk(node: Any, sql: bool) -> Any:
        if isinstance(node, dict):
            return {k: walk(v, _is_sql_key(k)) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, sql) for v in node]
        if isinstance(node, str) and sql:
            return rewrite(node)
        return node

    return walk(data, False)


def remint_metric_ids(
    data: JSONObject, new_id: Callable[[], str] = lambda: str(uuid.uuid4())
) -> tuple[JSONObject, dict[str, str]]:
    """Give every metric in `data["metrics"]` a fresh internal `id`; returns (data, old -> new).

    Every other reference to an old id is rewritten consistently: any string value equal to it
    (layout `i`, drill-down and click-action targets) and any object key equal to it.
    `metricId` is left alone: it is what listings show.
    """
    mapping: dict[str, str] = {}
    metrics = data.get("metrics")
    if isinstance(metrics, list):
        for metric in metrics:
            if isinstance(metric, dict) and isinstance(metric.get("id"), str):
                mapping.setdefault(metric["id"], new_id())
    if not mapping:
        return data, mapping

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            if not mapping.keys().isdisjoint(node):  # keys to rename (they may even collide)
                return {mapping.get(k, k): walk(v) for k, v in node.items()}
            out: dict[Any, Any] = dict(node)
            for k, v in node.items():
                kind = type(v)
                if kind is str:
                    if v in mapping:
                        out[k] = mapping[v]
                elif kind is dict or kind is list or isinstance(v, dict | list | str):
                    out[k] = walk(v)
            return out
        if isinstance(node, list):
            items = list(node)
            for index, v in enumerate(node):
                kind = type(v)
                if kind is str:
                    if v in mapping:
                        items[index] = mapping[v]
                elif kind is dict or kind is list or isinstance(v, dict | list | str):
                    items[index] = walk(v)
            return items
        if isinstance(node, str):
            return mapping.get(node, node)
        return node

    result: JSONObject = walk(data)
    return result, mapping


def remint_other_ids(
    data: JSONObject, new_id: Callable[[], str] = lambda: str(uuid.uuid4())
) -> JSONObject:
    """`data` with a fresh `datasourceId` on every metric that has one and a fresh `id` on every
    filter that has one: what a faulty server does, so that a copy differing only there must
    read as different."""
    out = dict(data)
    for key, field in (("metrics", "datasourceId"), ("filters", "id")):
        items = data.get(key)
        if isinstance(items, list):
            out[key] = [
                {**item, field: new_id()} if isinstance(item, dict) and field in item else item
                for item in items
            ]
    return out

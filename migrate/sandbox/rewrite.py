"""What the sandbox's import does to a payload: `schemaPairs` rewrites and metric id re-minting.

Both are pure: they return a new structure and leave their input alone. The real server's rewrite
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
    compiled = [(replace, target, _pattern(replace)) for replace, target in pairs if replace]
    if not compiled:
        return data

    def rewrite_text(text: str) -> str:
        for replace, target, pattern in compiled:
            if replace in text:  # cheap pre-check: most strings name no schema
                text = pattern.sub(_requoted(target), text)
        return text

    def walk(node: Any, key: str | None) -> Any:
        if isinstance(node, str):
            if key == SCHEMA_NAME_KEY:
                for replace, target, _ in compiled:
                    if node == replace:
                        return target
            return rewrite_text(node)
        if isinstance(node, dict):
            return {k: walk(v, k) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(item, None) for item in node]
        return node

    return walk(data, None)


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
        if isinstance(node, str):
            return mapping.get(node, node)
        if isinstance(node, dict):
            return {mapping.get(k, k): walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(item) for item in node]
        return node

    result: JSONObject = walk(data)
    return result, mapping

"""Dashboard filter bindings: which filters still point at a source schema, what to rebind
them to, and a form of a payload in which a correctly rebound filter compares equal.

`schemaPairs` is documented to rewrite SQL; a server may leave filter bindings (`applyOnTables`)
on the source schema. After an import, a filter still bound to a `replace` schema of the
target's pairs, or named by a `filter_bindings` rule, is rebound (docs/contract.md A8).
Pure: payloads in, `FilterRebinding`s or payloads out.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from migrate.models import ColumnRef, FilterBindingRule, FilterRebinding, SchemaPair


def filter_objects(data: Any) -> Iterator[dict[str, Any]]:
    """The labelled filter objects of a payload: `filters[*].columns[*]` (and bare filters)."""
    filters = data.get("filters") if isinstance(data, dict) else None
    if not isinstance(filters, list):
        return
    for group in filters:
        if not isinstance(group, dict):
            continue
        columns = group.get("columns")
        if isinstance(columns, list):
            yield from (column for column in columns if isinstance(column, dict))
        elif "label" in group or "name" in group:
            yield group


def filter_label(item: dict[str, Any]) -> str | None:
    """The label the API matches a filter by."""
    label = item.get("label", item.get("name"))
    return label if isinstance(label, str) else None


def column_of(entry: Any) -> ColumnRef | None:
    """One `applyOnTables` entry as a column: `schemaName` + `tableName`, or a qualified
    `tableName` (`analytics_dev.orders`); None when it names no schema."""
    if not isinstance(entry, dict):
        return None
    table, column = entry.get("tableName"), entry.get("columnName")
    if not isinstance(table, str) or not isinstance(column, str):
        return None
    schema = entry.get("schemaName")
    if not isinstance(schema, str) or not schema:
        schema, dot, table = table.partition(".")
        if not dot:
            return None
    data_type = entry.get("dataType")
    return ColumnRef(schema, table, column, data_type if isinstance(data_type, str) else None)


def _same_column(a: ColumnRef, b: ColumnRef) -> bool:
    return (a.schema, a.table, a.column) == (b.schema, b.table, b.column)


def rebind_column(
    column: ColumnRef, pairs: Sequence[SchemaPair], rules: Sequence[FilterBindingRule]
) -> ColumnRef | None:
    """Where `column` should point in the target, or None when it is right as it is.

    A rule matches its `from` column, or that column with the pairs applied (the server may
    have rewritten the schema already); otherwise a `replace` schema becomes its `target`.
    """
    renamed = {pair.replace: pair.target for pair in pairs}
    for rule in rules:
        source = rule.source
        moved = ColumnRef(renamed.get(source.schema, source.schema), source.table, source.column)
        if _same_column(column, source) or _same_column(column, moved):
            if _same_column(column, rule.target):
                return None
            return ColumnRef(
                rule.target.schema, rule.target.table, rule.target.column, column.data_type
            )
    if column.schema in renamed and renamed[column.schema] != column.schema:
        return ColumnRef(renamed[column.schema], column.table, column.column, column.data_type)
    return None


def may_need_rebinding(
    text: bytes, pairs: Sequence[SchemaPair], rules: Sequence[FilterBindingRule]
) -> bool:
    """False when no filter of a dashboard (its JSON `text`) can need rebinding: no rule names
    a column, and no `replace` schema of its pairs appears anywhere in the text. A cheap test
    on bytes, so the payload is parsed only when it may matter."""
    return bool(rules) or any(pair.replace.encode("utf-8") in text for pair in pairs)


def plan_rebindings(
    data: Any,
    dashboard_id: str,
    pairs: Sequence[SchemaPair],
    rules: Sequence[FilterBindingRule],
) -> list[FilterRebinding]:
    """The rebindings that bring `data`'s filters to the target's columns (none: all right).

    A filter with an entry that names no schema is left alone: it cannot be sent whole.
    """
    found: list[FilterRebinding] = []
    for item in filter_objects(data):
        label = filter_label(item)
        entries = item.get("applyOnTables")
        if label is None or not isinstance(entries, list) or not entries:
            continue
        columns = [column_of(entry) for entry in entries]
        if any(c is None for c in columns):
            continue
        changed = False
        wanted: list[ColumnRef] = []
        for c in columns:
            assert c is not None
            new = rebind_column(c, pairs, rules)
            changed = changed or new is not None
            wanted.append(new or c)
        if changed:
            found.append(FilterRebinding(dashboard_id, label, tuple(wanted)))
    return found


def unapplied(data: Any, rebindings: Sequence[FilterRebinding]) -> list[str]:
    """Labels of `rebindings` that `data` (read back after the rebinding) does not show."""
    bound: dict[str, list[ColumnRef | None]] = {}
    for item in filter_objects(data):
        label = filter_label(item)
        entries = item.get("applyOnTables")
        if label is not None and isinstance(entries, list):
            bound.setdefault(label, [column_of(e) for e in entries])
    missing = []
    for rebinding in rebindings:
        have = bound.get(rebinding.filter_name)
        if have is None or len(have) != len(rebinding.apply_on):
            missing.append(rebinding.filter_name)
            continue
        if not all(
            h is not None and _same_column(h, w)
            for h, w in zip(have, rebinding.apply_on, strict=True)
        ):
            missing.append(rebinding.filter_name)
    return missing


def canonical_filters(data: Any) -> Any:
    """`data` with every `applyOnTables` entry in one form — a qualified `tableName`, no
    `schemaName` — so a filter rebound through the API compares equal to the source's.

    Only `filters` is copied; `data` itself is never changed.
    """
    if not isinstance(data, dict) or not isinstance(data.get("filters"), list):
        return data

    def entry(value: Any) -> Any:
        column = column_of(value)
        if column is None:
            return value
        out = {k: v for k, v in value.items() if k != "schemaName"}
        out["tableName"] = f"{column.schema}.{column.table}"
        return out

    def item(value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        out = dict(value)
        if isinstance(value.get("applyOnTables"), list):
            out["applyOnTables"] = [entry(e) for e in value["applyOnTables"]]
        if isinstance(value.get("columns"), list):
            out["columns"] = [item(c) for c in value["columns"]]
        return out

    return {**data, "filters": [item(group) for group in data["filters"]]}

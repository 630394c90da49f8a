"""Request validation that answers like the Joi validators behind the real API.

Messages are Joi's text (`"dashboardId" is required`, `"x" is not allowed`), and like Joi with
`abortEarly` only the first problem is reported: declared keys in declaration order first, then
unknown keys. Query strings are converted like Joi's `convert` does (`"true"`, `"2"`); JSON
bodies must carry real types.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any, Literal

FieldType = Literal[
    "string", "boolean", "page", "object", "pairs", "choice", "record", "records", "any"
]


class ValidationFailed(Exception):
    """The body or query failed validation; `str(exc)` is the Joi message."""


@dataclass(frozen=True)
class Field:
    """One declared key of a request body.

    `choices` are the allowed values of a "choice"; `fields` declare the keys of a "record"
    (an object) or of each item of "records" (an array of objects).
    """

    name: str
    type: FieldType
    required: bool = False
    choices: tuple[str, ...] = ()
    fields: tuple[Field, ...] = ()


EXPORT = (Field("dashboardId", "string", True), Field("workspaceName", "string", True))
IMPORT = (
    Field("workspaceName", "string", True),
    Field("importDashboardData", "object", True),
    Field("dashboardId", "string"),
    Field("dashboardName", "string"),
    Field("schemaPairs", "pairs"),
)
LIST_IN_WORKSPACE = (
    Field("workspaceName", "string", True),
    Field("isPagination", "boolean"),
    Field("pageNumber", "page"),
)
LIST_WORKSPACES = (Field("isPagination", "boolean"), Field("pageNumber", "page"))
_PAIR = (Field("replaceSchema", "string", True), Field("targetSchema", "string", True))

ACCESS_SETTINGS = (
    Field("datamartName", "string"),
    *(
        Field(name, "boolean")
        for name in (
            "isAllowEmailReports",
            "isAllowManageMetrics",
            "isAllowMetricCreation",
            "isAllowMetricDeletion",
            "isAllowMetricLayoutChange",
            "isAllowMetricUpdate",
            "isAllowUnderlyingData",
            "isAllowCreateDashboardView",
        )
    ),
    Field("joinModel", "any"),
    Field("metricCreationMode", "string"),
    Field("tableTenancySettings", "any"),
)
EMBED_TYPES = ("dashboard", "metric")
CONNECTION_TYPES = ("DATASOURCE", "DATAMART", "MULTI_DATASOURCE", "MULTI_DATAMART")
CREATE_EMBED = (
    Field("dashboardId", "string", True),
    Field("embedType", "choice", True, choices=EMBED_TYPES),
    Field("workspaceName", "string", True),
    Field("name", "string", True),
    Field("accessSettings", "record", fields=ACCESS_SETTINGS),
    Field("metricId", "string"),
)
EMBED_ID = (Field("embedId", "string", True),)
UPDATE_EMBED = (
    Field("embedId", "string", True),
    Field("accessSettings", "record", True, fields=ACCESS_SETTINGS),
)
RENAME_EMBED = (
    Field("embedId", "string", True),
    Field("name", "string", True),
    Field("isRenameDashboard", "boolean"),
)
DELETE_EMBED = (Field("embedId", "string", True), Field("isDeleteDashboard", "boolean"))
CREATE_WORKSPACE = (
    Field("name", "string", True),
    Field("connectionType", "choice", True, choices=CONNECTION_TYPES),
    Field("datasourceName", "string"),
    Field("datamartName", "string"),
)
_COLUMN = (
    Field("dataType", "string"),
    Field("schemaName", "string", True),
    Field("tableName", "string", True),
    Field("columnName", "string", True),
)
_FILTER = (Field("name", "string", True), Field("applyOnTables", "records", True, fields=_COLUMN))
_DASHBOARD_FILTERS = (
    Field("dashboardId", "string", True),
    Field("filters", "records", True, fields=_FILTER),
)
REBIND_FILTERS = (
    Field("workspaceName", "string", True),
    Field("dashboards", "records", True, fields=_DASHBOARD_FILTERS),
)


def _string(label: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ValidationFailed(f'"{label}" must be a string')
    if value == "":
        raise ValidationFailed(f'"{label}" is not allowed to be empty')
    return value


def _boolean(label: str, value: Any, convert: bool) -> bool:
    if convert and isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if not isinstance(value, bool):
        raise ValidationFailed(f'"{label}" must be a boolean')
    return value


def _page(label: str, value: Any, convert: bool) -> int:
    if convert and isinstance(value, str):
        with contextlib.suppress(ValueError):  # left a string: reported below as not a number
            value = float(value.strip()) if value.strip() else value
    # bool is an int in Python but not a number in JSON.
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValidationFailed(f'"{label}" must be a number')
    if value != int(value):
        raise ValidationFailed(f'"{label}" must be an integer')
    if value < 1:
        raise ValidationFailed(f'"{label}" must be greater than or equal to 1')
    return int(value)


def _check(label: str, field: Field, value: Any, convert: bool) -> Any:
    if field.type == "any":
        return value
    if field.type == "choice":
        if value not in field.choices:
            raise ValidationFailed(f'"{label}" must be one of [{", ".join(field.choices)}]')
        return value
    if field.type == "record":
        return validate(value, field.fields, convert=convert, label=label)
    if field.type == "records":
        if not isinstance(value, list):
            raise ValidationFailed(f'"{label}" must be an array')
        return [
            validate(item, field.fields, convert=convert, label=f"{label}[{index}]")
            for index, item in enumerate(value)
        ]
    if field.type == "string":
        return _string(label, value)
    if field.type == "boolean":
        return _boolean(label, value, convert)
    if field.type == "page":
        return _page(label, value, convert)
    if field.type == "object":
        if not isinstance(value, dict):
            raise ValidationFailed(f'"{label}" must be of type object')
        return value
    if not isinstance(value, list):
        raise ValidationFailed(f'"{label}" must be an array')
    pairs: list[tuple[str, str]] = []
    for index, item in enumerate(value):
        checked = validate(item, _PAIR, label=f"{label}[{index}]")
        pairs.append((str(checked["replaceSchema"]), str(checked["targetSchema"])))
    return pairs


def validate(
    body: Any, fields: tuple[Field, ...], *, convert: bool = False, label: str = "value"
) -> dict[str, Any]:
    """Validate `body` against `fields`; returns the present keys, converted (pairs as tuples).

    Raises ValidationFailed with the first Joi message. `label` prefixes nested keys
    (`schemaPairs[0].replaceSchema`).
    """
    if not isinstance(body, dict):
        raise ValidationFailed(f'"{label}" must be of type object')
    prefix = "" if label == "value" else f"{label}."
    result: dict[str, Any] = {}
    for field in fields:
        key = f"{prefix}{field.name}"
        if field.name not in body:
            if field.required:
                raise ValidationFailed(f'"{key}" is required')
            continue
        result[field.name] = _check(key, field, body[field.name], convert)
    declared = {field.name for field in fields}
    for name in body:
        if name not in declared:
            raise ValidationFailed(f'"{prefix}{name}" is not allowed')
    return result

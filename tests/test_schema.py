"""Payload schema: permissive where the API is silent, strict and located where it documents."""

from __future__ import annotations

import json
import typing
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from migrate.errors import PlanError, Violation
from migrate.schema import (
    FileFormat,
    PayloadValidator,
    _compiled_format,
    check_export_meta,
    format_violations,
    load_schema,
)


def export(data: Any, **meta: Any) -> dict[str, Any]:
    """An export file around `data`."""
    return {"_meta": {"dashboardId": "d", "workspaceName": "W", **meta}, "data": data}


def data_violations(validator: PayloadValidator, data: Any) -> list[Violation]:
    """The violations of an export that holds only `data` (all of them under `data`)."""
    return validator.validate_export({"data": data})


def realistic(n_metrics: int = 40) -> dict[str, Any]:
    """A payload shaped like the front-end code suggests, with unknown keys at every level."""
    metrics = [
        {
            "id": f"m-{i}",
            "metricId": f"0b6c-{i}",
            "name": f"Umsatz € {i} — 売上",
            "query": f"SELECT * FROM analytics_dev.orders_{i}",
            "chartOptions": {"type": "bar", "x": {"deep": [{"deeper": {"z": None}}]}},
            "unknownKey": [1, "two", {"three": 3.0}],
        }
        for i in range(n_metrics)
    ]
    return {
        "layout": [
            {"i": f"m-{i}", "x": 0, "y": i, "w": 6, "h": 4, "maxH": None, "zz": {}}
            for i in range(n_metrics)
        ],
        "filters": [{"tableName": "public.orders", "columns": [{"label": "Region"}], "new": True}],
        "metrics": metrics,
        "gridMargin": {"x": 10, "y": 10, "extra": [1]},
        "brandNewTopLevel": {"anything": ["goes"]},
    }


def test_schemas_are_valid_2020_12() -> None:
    """Both shipped schemas are valid JSON Schema 2020-12 documents."""
    for name in ("plan", "dashboard"):
        schema = load_schema(name)  # type: ignore[arg-type]  # parametrized by hand
        Draft202012Validator.check_schema(schema)
        assert schema["$schema"].endswith("2020-12/schema")


def test_plan_schema_documents_every_property() -> None:
    """Every property in the plan schema has a title and a description for editors."""
    schema = load_schema("plan")

    def visit(node: Any, where: str) -> None:
        if isinstance(node, dict):
            for key, prop in node.get("properties", {}).items():
                assert "title" in prop, f"{where}.{key}"
                assert "description" in prop, f"{where}.{key}"
            for key, value in node.items():
                visit(value, f"{where}.{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                visit(value, f"{where}[{i}]")

    visit(schema, "")
    assert schema["additionalProperties"] is False
    assert all(
        d.get("additionalProperties") is False
        for d in schema["$defs"].values()
        if d.get("type") == "object"
    )


def test_load_schema_returns_a_copy() -> None:
    """Changing the returned schema cannot change what validators use."""
    load_schema("dashboard")["$defs"].clear()
    assert "importDashboardData" in load_schema("dashboard")["$defs"]


def test_unfamiliar_valid_payloads_pass() -> None:
    """Unknown keys everywhere, unicode, no metrics, empty data: all valid."""
    validator = PayloadValidator()
    assert validator.validate_export(export(realistic())) == []
    assert validator.validate_export(export({})) == []
    assert validator.validate_export({"data": {"layout": []}}) == []
    assert (
        validator.validate_export({"data": {"metrics": []}, "_meta": {"new": 1}, "other": 2}) == []
    )
    assert data_violations(validator, realistic()) == []


def test_several_megabyte_payload_passes() -> None:
    """A multi-MB payload validates (and cleanly)."""
    data = realistic(7000)
    assert len(json.dumps(data)) > 2_000_000
    assert PayloadValidator().validate_export(export(data)) == []


@pytest.mark.parametrize(
    ("document", "path"),
    [
        ({"_meta": {}}, "data"),
        ({"data": None}, "data"),
        ({"data": []}, "data"),
        ({"data": {"layout": {}}}, "data.layout"),
        ({"data": {"filters": "x"}}, "data.filters"),
        ({"data": {"metrics": [{}, {}, {}, "q"]}}, "data.metrics[3]"),
        ({"data": {"layout": [1]}}, "data.layout[0]"),
        ({"data": {"gridMargin": [1]}}, "data.gridMargin"),
        ({"data": {}, "_meta": []}, "_meta"),
        ({"data": {}, "_meta": {"dashboardId": 7}}, "_meta.dashboardId"),
        ({"data": {}, "_meta": {"workspaceName": None}}, "_meta.workspaceName"),
        ([], "(root)"),
    ],
)
def test_documented_type_violations_are_located(document: Any, path: str) -> None:
    """Each documented-type violation is reported at its JSON path."""
    violations = PayloadValidator().validate_export(document)
    assert [v.path for v in violations] == [path]
    assert violations[0].message


def test_all_violations_reported_sorted() -> None:
    """Every violation is listed (not just the first), in path order, numbers numerically."""
    metrics: list[Any] = [{}] * 12
    metrics[2] = 1
    metrics[10] = "x"
    data = {"metrics": metrics, "layout": "no", "gridMargin": 3}
    paths = [v.path for v in data_violations(PayloadValidator(), data)]
    assert paths == ["data.gridMargin", "data.layout", "data.metrics[2]", "data.metrics[10]"]


def test_messages_do_not_echo_huge_values() -> None:
    """A violation's message stays short even when the offending value is huge."""
    violations = data_violations(PayloadValidator(), {"metrics": "x" * 1_000_000})
    assert len(violations[0].message) < 300


def test_format_violations_caps_with_count() -> None:
    """format_violations sorts, caps at the limit and says how many more there are."""
    violations = [Violation(f"data.metrics[{i}]", "bad") for i in range(25, 0, -1)]
    lines = format_violations(violations, limit=20)
    assert lines[0] == "data.metrics[1]: bad"
    assert lines[19] == "data.metrics[20]: bad"
    assert lines[20] == "... and 5 more"


def test_violation_paths_quote_odd_keys(tmp_path: Path) -> None:
    """Keys that are not identifiers are bracket-quoted in violation paths."""
    strict = tmp_path / "strict.json"
    strict.write_text(json.dumps({"properties": {"a b": {"items": {"required": ['q"']}}}}))
    violations = data_violations(PayloadValidator(strict), {"a b": [{}]})
    assert [v.path for v in violations] == ['data["a b"][0]["q\\""]']


def test_extra_schema_must_also_pass(tmp_path: Path) -> None:
    """A user's payload_schema adds requirements; both schemas must pass."""
    strict = tmp_path / "strict.json"
    strict.write_text(
        json.dumps({"required": ["metrics"], "properties": {"metrics": {"minItems": 1}}})
    )
    validator = PayloadValidator(strict)
    assert validator.validate_export(export(realistic())) == []
    paths = [v.path for v in validator.validate_export(export({"layout": 3}))]
    assert paths == ["data.layout", "data.metrics"]
    assert [v.path for v in data_violations(validator, {"metrics": []})] == ["data.metrics"]


def test_draft4_extra_schema_keeps_its_integers(tmp_path: Path) -> None:
    """A draft-04 payload_schema refuses 1.0 for an integer, as its draft says."""
    strict = tmp_path / "strict.json"
    strict.write_text(
        json.dumps(
            {
                "$schema": "http://json-schema.org/draft-04/schema#",
                "properties": {"gridCols": {"type": "integer"}},
            }
        )
    )
    violations = data_violations(PayloadValidator(strict), {**realistic(2), "gridCols": 12.0})
    assert [v.path for v in violations] == ["data.gridCols"]


@pytest.mark.parametrize(
    "content", ["{not json", '{"type": 12}', "[1]", '{"pattern": "a{4294967296}"}']
)
def test_bad_extra_schema_is_plan_error(tmp_path: Path, content: str) -> None:
    """An unreadable or invalid payload_schema is a PlanError naming the file."""
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    with pytest.raises(PlanError) as info:
        PayloadValidator(bad)
    assert info.value.exit_code == 3
    assert "bad.json" in str(info.value)


def test_missing_extra_schema_is_plan_error(tmp_path: Path) -> None:
    """A payload_schema path that does not exist is a PlanError with a fix."""
    with pytest.raises(PlanError) as info:
        PayloadValidator(tmp_path / "absent.json")
    assert info.value.hint


def test_check_export_meta() -> None:
    """_meta must name the dashboard and workspace asked for; absence is not a violation."""
    doc = export({}, dashboardId="a", workspaceName="Dev")
    assert check_export_meta(doc, dashboard_id="a", workspace="Dev") == []
    wrong = check_export_meta(doc, dashboard_id="b", workspace="Prod")
    assert [v.path for v in wrong] == ["_meta.dashboardId", "_meta.workspaceName"]
    assert check_export_meta({"data": {}}, dashboard_id="a", workspace="Dev") == []


@pytest.mark.parametrize("name", typing.get_args(FileFormat))
def test_file_formats_compile_to_the_fast_path(name: FileFormat) -> None:
    """Deploy records, bundle manifests and saved plans are checked without jsonschema's walk."""
    assert _compiled_format(name).fast is not None

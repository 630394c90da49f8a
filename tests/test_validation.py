"""validate_paths: offline checks of plans and export files, classified by content; 0/3/4.

The exit code and the lines come from the CLI's rendering, as `migrate validate` shows them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from migrate.cli.render import render_validation, validate_exit_code
from migrate.validation import ValidationReport, validate_paths

PLAN = "version: 1\ntarget: {url: sandbox://demo, workspace: Prod}\ndashboards: [{id: a}]\n"
EXPORT = {"_meta": {"dashboardId": "a", "workspaceName": "Dev"}, "data": {"metrics": []}}


def write(tmp_path: Path, name: str, content: str | bytes | dict[str, object]) -> Path:
    """Write a test file and return its path."""
    path = tmp_path / name
    if isinstance(content, dict):
        content = json.dumps(content)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


def shown(report: ValidationReport, capsys: pytest.CaptureFixture[str]) -> list[str]:
    """The lines `migrate validate` prints for `report`."""
    render_validation(report)
    return capsys.readouterr().out.splitlines()


def test_valid_plan_and_export_exit_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A good plan and a good export file: exit 0, each reported valid."""
    report = validate_paths([write(tmp_path, "p.yaml", PLAN), write(tmp_path, "e.json", EXPORT)])
    assert validate_exit_code(report) == 0
    assert [f.kind for f in report.files] == ["plan", "export"]
    assert report.files[0].plan is not None
    assert "valid plan" in shown(report, capsys)[0]


def test_classified_by_content_not_extension(tmp_path: Path) -> None:
    """A plan named .json and an export named .txt are told apart by their keys."""
    plan = write(
        tmp_path,
        "plan.json",
        json.dumps(
            {"version": 1, "target": {"url": "sandbox://x", "workspace": "W"}, "dashboards": []}
        ),
    )
    export = write(tmp_path, "dash.txt", EXPORT)
    report = validate_paths([plan, export])
    assert [f.kind for f in report.files] == ["plan", "export"]
    assert validate_exit_code(report) == 0


def test_payload_violation_exit_4(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A payload failing the schema is exit 4 with its JSON path."""
    bad = write(tmp_path, "e.json", {"data": {"metrics": [{}, 3]}})
    report = validate_paths([bad])
    assert validate_exit_code(report) == 4
    assert any("data.metrics[1]" in line for line in shown(report, capsys))


def test_bad_plan_exit_3_wins_over_4(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An unusable plan is exit 3 even when a payload also fails."""
    bad_plan = write(tmp_path, "p.yaml", PLAN + "settings: {concurency: 3}\n")
    bad_export = write(tmp_path, "e.json", {"data": []})
    report = validate_paths([bad_plan, bad_export])
    assert validate_exit_code(report) == 3
    assert "concurrency" in "\n".join(shown(report, capsys))


def test_unset_env_var_is_exit_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """validate treats an unset ${VAR} like load: exit 3 naming it."""
    plan = write(tmp_path, "p.yaml", PLAN.replace("Prod", '"${UNSET_FOR_TEST_123}"'))
    report = validate_paths([plan])
    assert validate_exit_code(report) == 3
    assert "UNSET_FOR_TEST_123" in "\n".join(shown(report, capsys))


def test_hostile_and_unknown_files_exit_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Truncated JSON, random YAML, and a missing file are unusable (3), each named."""
    files = [
        write(tmp_path, "cut.json", b'{"data": {"layout": ['),
        write(tmp_path, "other.yaml", "services: {web: 1}\n"),
        tmp_path / "missing.json",
    ]
    report = validate_paths(files)
    assert validate_exit_code(report) == 3
    assert all(f.unusable is not None for f in report.files)
    text = "\n".join(shown(report, capsys))
    assert "cut.json" in text
    assert "neither a plan nor" in text
    assert "missing.json" in text


def test_plan_payload_schema_applies_to_exports(tmp_path: Path) -> None:
    """Exports given with a plan are also checked against its settings.payload_schema."""
    write(tmp_path, "strict.json", {"required": ["metrics"]})
    plan = write(tmp_path, "p.yaml", PLAN + "settings: {payload_schema: strict.json}\n")
    export = write(tmp_path, "e.json", {"data": {}})
    report = validate_paths([plan, export])
    assert validate_exit_code(report) == 4
    assert report.files[1].problems[0].path == "data.metrics"  # type: ignore[union-attr]


def test_unreadable_payload_schema_is_exit_3(tmp_path: Path) -> None:
    """A plan whose payload_schema is missing makes validation exit 3."""
    plan = write(tmp_path, "p.yaml", PLAN + "settings: {payload_schema: nope.json}\n")
    assert validate_exit_code(validate_paths([plan])) == 3


def test_bundle_without_manifest_is_unusable(tmp_path: Path) -> None:
    """A --bundle directory without a manifest is unusable (3), not a crash."""
    report = validate_paths([], bundle=tmp_path)
    assert validate_exit_code(report) == 3
    assert report.files[0].kind == "bundle"


def test_many_violations_capped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The report lists at most the limit and counts the rest."""
    bad = write(tmp_path, "e.json", {"data": {"metrics": list(range(30))}})
    lines = shown(validate_paths([bad]), capsys)
    assert lines[-1] == "  ... and 10 more"


def test_unquoted_var_in_flow_mapping_gets_quoting_hint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`{workspace: ${X}}` is a YAML error; the fix says to quote it."""
    plan = write(tmp_path, "p.yaml", PLAN.replace("Prod", "${X}"))
    report = validate_paths([plan])
    assert validate_exit_code(report) == 3
    assert "quote values that use ${VAR}" in "\n".join(shown(report, capsys))

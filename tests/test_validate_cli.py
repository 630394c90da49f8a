"""`migrate validate` and `migrate schema` through the CLI: output and exit codes 0/3/4."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from migrate.cli import app

runner = CliRunner()
PLANS = Path(__file__).parent.parent / "plans"


def test_validate_demo_plan_exit_0() -> None:
    """`migrate validate plans/demo.yaml` exits 0 and says the plan is valid."""
    result = runner.invoke(app, ["validate", str(PLANS / "demo.yaml")])
    assert result.exit_code == 0, result.output
    assert "valid plan" in result.output


def test_validate_bad_plan_exit_3(tmp_path: Path) -> None:
    """A misspelt key is exit 3 with the line and the suggestion."""
    plan = tmp_path / "p.yaml"
    plan.write_text(
        "version: 1\ntarget:\n  url: sandbox://demo\n  workspace: W\n"
        "settings:\n  concurency: 2\ndashboards: []\n"
    )
    result = runner.invoke(app, ["validate", str(plan)])
    assert result.exit_code == 3, result.output
    assert "p.yaml:6" in result.output
    assert "did you mean `concurrency`?" in result.output


def test_validate_bad_payload_exit_4(tmp_path: Path) -> None:
    """An export whose metrics is not a list is exit 4 with its JSON path."""
    export = tmp_path / "e.json"
    export.write_text(json.dumps({"_meta": {}, "data": {"metrics": {"a": 1}}}))
    result = runner.invoke(app, ["validate", str(export)])
    assert result.exit_code == 4, result.output
    assert "data.metrics" in result.output


def test_schema_commands_print_the_shipped_schemas() -> None:
    """`migrate schema plan|dashboard` prints valid JSON equal to the package data."""
    for name in ("plan", "dashboard"):
        result = runner.invoke(app, ["schema", name])
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["$schema"].endswith("2020-12/schema")

"""The CLI's edge: one count of results for console and report files, exit codes from the error
tree, and a core that never reaches for the console."""

from __future__ import annotations

import ast
import copy
import dataclasses
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from typer.testing import CliRunner

from migrate.cli import app
from migrate.cli.render import (
    CHANGES_PENDING,
    SUCCESS,
    apply_exit_code,
    plan_exit_code,
    validate_exit_code,
)
from migrate.errors import PartialError, PayloadInvalidError, PlanError, RunInterruptedError
from migrate.validation import validate_paths
from tests.helpers import apply, plan, sandbox_of, write_plan

runner = CliRunner()
PACKAGE = Path(__file__).resolve().parent.parent / "migrate"
CLI = ["migrate", "cli"]


def mixed_target(tmp_path: Path) -> Path:
    """A plan (on_conflict: fail) whose apply ends created, unchanged, conflict and blocked."""
    path = write_plan(tmp_path)
    assert apply(path, tmp_path, selectors=("kpi-core", "sales-overview")).ok
    sandbox = sandbox_of(tmp_path)
    data = copy.deepcopy(sandbox.get_dashboard("Sales Prod", "sales-overview"))
    assert data is not None
    data["metrics"][0]["name"] = "Edited in the UI"
    sandbox.update_dashboard("Sales Prod", "sales-overview", data)
    return write_plan(tmp_path, settings="  on_conflict: fail\n")


def test_console_json_junit_and_markdown_agree_on_counts(tmp_path: Path) -> None:
    """The totals line, the JSON summary, JUnit and the Markdown summary count alike; exit 6."""
    path = mixed_target(tmp_path)
    files = {name: tmp_path / name for name in ("r.json", "j.xml", "s.md")}
    result = runner.invoke(
        app,
        ["--state-dir", str(tmp_path), "apply", str(path), "--report", str(files["r.json"]),
         "--junit", str(files["j.xml"]), "--summary", str(files["s.md"])],
    )  # fmt: skip
    assert result.exit_code == PartialError.exit_code, result.output
    expected = "3 created, 1 unchanged, 1 conflict, 9 blocked"
    assert re.search(rf"^Apply: {expected} in \d+\.\ds\.$", result.stdout, re.M), result.stdout
    assert "10 dashboards did not succeed: sales-overview, pipeline-health" in result.stderr
    summary = json.loads(files["r.json"].read_text())["summary"]
    assert summary == {
        "total": 14, "created": 3, "updated": 0, "unchanged": 1, "skipped": 0, "conflict": 1,
        "invalid": 0, "failed": 0, "blocked": 9,
    }  # fmt: skip
    suite = ET.fromstring(files["j.xml"].read_text())[0]
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("14", "10", "0")
    assert f"14 dashboards · {expected}" in files["s.md"].read_text()


def test_exit_codes_come_from_the_error_tree(tmp_path: Path) -> None:
    """plan, apply and validate exit with the codes of PartialError, RunInterruptedError,
    PlanError and PayloadInvalidError; --detailed-exitcode adds only CHANGES_PENDING (10)."""
    fresh = plan(write_plan(tmp_path), tmp_path)
    assert plan_exit_code(fresh, True) == CHANGES_PENDING == 10
    assert plan_exit_code(fresh, False) == SUCCESS == 0
    path = mixed_target(tmp_path)
    assert plan_exit_code(plan(path, tmp_path), False) == PartialError.exit_code
    report = apply(path, tmp_path)
    assert apply_exit_code(report) == PartialError.exit_code
    interrupted = dataclasses.replace(report, interrupted=True)
    assert apply_exit_code(interrupted) == RunInterruptedError.exit_code
    unusable = tmp_path / "missing.json"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"_meta": {}, "data": {"metrics": {}}}))
    assert validate_exit_code(validate_paths([bad, unusable])) == PlanError.exit_code
    assert validate_exit_code(validate_paths([bad])) == PayloadInvalidError.exit_code


def test_dry_run_ignores_a_saved_plan(tmp_path: Path) -> None:
    """`apply --dry-run --plan X` plans as before: the saved plan is not read, so a missing one
    is no error."""
    path = write_plan(tmp_path)
    args = ["--state-dir", str(tmp_path), "apply", str(path), "--dry-run"]
    result = runner.invoke(app, [*args, "--plan", str(tmp_path / "none.json")])
    assert result.exit_code == SUCCESS, result.output
    assert "Plan: 14 create." in result.stdout


def test_core_never_imports_the_cli() -> None:
    """No module outside migrate/cli/ (and `python -m migrate`) imports migrate.cli."""
    offenders = []
    for module in PACKAGE.rglob("*.py"):
        if "cli" in module.relative_to(PACKAGE).parts or module.name == "__main__.py":
            continue
        for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            offenders += [f"{module.name}: {n}" for n in names if n.split(".")[:2] == CLI]
    assert offenders == []

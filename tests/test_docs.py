"""The README stays true: its opening commands, its command table and its exit-code table match
the CLI."""

from __future__ import annotations

import re
from pathlib import Path

from typer.main import get_command

from migrate.cli import app
from migrate.errors import (
    EndpointError,
    MigrateError,
    PartialError,
    PayloadInvalidError,
    PlanError,
    RefusedError,
    UsageError,
)
from migrate.plan import parse_plan

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_readme_opens_with_the_two_commands() -> None:
    """The first code block holds exactly two commands: the demo run and the test run."""
    block = re.search(r"```sh\n(.*?)```", README, re.S)
    assert block is not None and README.index("```sh") < 200
    lines = [line for line in block.group(1).splitlines() if line.strip()]
    assert len(lines) == 2
    assert "migrate apply plans/demo.yaml" in lines[0]
    assert "pytest" in lines[1]
    assert (ROOT / ".ci" / "run").read_text().count("python -m pytest -q") == 1


def test_every_command_is_documented() -> None:
    """Every CLI command appears in the README's command table (and no table row is stale)."""
    commands = set(get_command(app).commands)  # type: ignore[attr-defined]
    documented = set(re.findall(r"^\| `migrate (\w+)", README, re.M))
    assert commands == documented, commands ^ documented


def test_exit_code_table_matches_the_error_tree() -> None:
    """Each documented exit code is the one the error classes carry."""
    table = dict(re.findall(r"^\| (\d+) \| (.+?) \|$", README, re.M))
    expected = {
        UsageError: 2,
        PlanError: 3,
        PayloadInvalidError: 4,
        EndpointError: 5,
        PartialError: 6,
        RefusedError: 7,
    }
    for cls, code in expected.items():
        assert cls.exit_code == code
        assert str(code) in table
    assert MigrateError.exit_code == 1
    assert {"0", "1", "10"} <= set(table)


def test_readme_plan_example_loads() -> None:
    """The plan shown in the README is a valid plan."""
    block = re.search(r"```yaml\n(.*?)```", README, re.S)
    assert block is not None
    plan = parse_plan(block.group(1), path="README.md", environ={"TARGET_URL": "https://x.example"})
    assert plan.target.workspace == "Sales Prod"
    assert [d.id or d.match for d in plan.dashboards] == ["kpi-core", "sales-overview", "region-*"]

"""What the tool prints and writes stays safe and usable whatever the server sends, saved plans
record the plan as expanded, and ordinary local trouble ends in a clean message and exit code."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from migrate.cli import app
from tests.helpers import sandbox_of, write_plan

runner = CliRunner()

PAIRS = "  schema_pairs:\n    - {replace: analytics, target: '${PROD_SCHEMA}'}\n"


def test_saved_plan_is_stale_when_an_env_value_in_the_plan_changed(tmp_path: Path) -> None:
    """A plan whose schema pair comes from ${PROD_SCHEMA}, saved with one value and applied with
    another, is refused as stale (exit 7) and nothing is imported; the same value applies."""
    state = str(tmp_path / "state")
    plan = write_plan(tmp_path, dashboards="  - id: sales-by-region\n", settings=PAIRS)
    saved = tmp_path / "saved.json"
    made = runner.invoke(
        app,
        ["--state-dir", state, "plan", str(plan), "--out", str(saved)],
        env={"PROD_SCHEMA": "prod_a"},
    )
    assert made.exit_code == 0, made.output
    stale = runner.invoke(
        app,
        ["--state-dir", state, "apply", str(plan), "--plan", str(saved)],
        env={"PROD_SCHEMA": "prod_b"},
    )
    assert stale.exit_code == 7, stale.output
    assert "environment variable" in stale.stderr
    assert sandbox_of(Path(state)).write_count == 0
    same = runner.invoke(
        app,
        ["--state-dir", state, "apply", str(plan), "--plan", str(saved)],
        env={"PROD_SCHEMA": "prod_a"},
    )
    assert same.exit_code == 0, same.output
    assert json.loads(saved.read_text())["plan"]["expanded_sha256"]

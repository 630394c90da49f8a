"""Bundle manifests and saved plans are checked by their JSON Schemas: a file that fails one is
refused (exit 3) naming the file and each problem's JSON path; a file `migrate` wrote passes."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from migrate.cli import app
from migrate.models import Action
from migrate.schema import format_problems, load_schema
from tests.helpers import write_plan

cli = CliRunner()
Edit = Callable[[dict[str, Any]], None]


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A plan on the sandbox, a bundle exported from it and a saved plan of it."""
    root = tmp_path_factory.mktemp("made")
    plan = write_plan(root, dashboards="  - id: kpi-core\n  - id: exec-summary\n")
    state = ["--state-dir", str(root / "state")]
    exported = cli.invoke(app, [*state, "export", str(plan), "--out", str(root / "bundle")])
    assert exported.exit_code == 0, exported.output
    saved = cli.invoke(app, [*state, "plan", str(plan), "--out", str(root / "saved.json")])
    assert saved.exit_code == 0, saved.output
    return root


@pytest.fixture
def work(made: Path, tmp_path: Path) -> Path:
    """A private copy of `made`, free to edit."""
    shutil.copytree(made, tmp_path / "w")
    return tmp_path / "w"


def _edit(path: Path, edit: Edit) -> None:
    document = json.loads(path.read_text())
    edit(document)
    path.write_text(json.dumps(document))


def _set(key: str, value: Any) -> Edit:
    return lambda d: d.update({key: value})


def _set_entry(key: str, value: Any) -> Edit:
    return lambda d: d["dashboards"][0].update({key: value})


def _drop(key: str) -> Edit:
    return lambda d: d.pop(key)


def _drop_entry(key: str) -> Edit:
    return lambda d: d["dashboards"][1].pop(key)


MANIFEST_CASES = [
    (_set_entry("sha256", 12), "dashboards[0].sha256: must be a string, not an integer"),
    (_set("source", "sandbox://demo"), "source: must be an object, not a string"),
    (_drop_entry("name"), "dashboards[1].name: is required but missing"),
    (_drop("exported_at"), "exported_at: is required but missing"),
    (_set("signed_by", "me"), "signed_by: is not allowed here"),
    (_set_entry("size", 3), "dashboards[0].size: is not allowed here"),
    (_set("format", "zip"), 'format: must be "migrate-bundle"'),
]


@pytest.mark.parametrize(("edit", "problem"), MANIFEST_CASES)
def test_manifest_failing_its_schema_is_exit_3_located(
    work: Path, edit: Edit, problem: str
) -> None:
    """validate --bundle refuses a manifest of wrong type, missing or extra key: file and path."""
    manifest = work / "bundle" / "manifest.json"
    _edit(manifest, edit)
    result = cli.invoke(app, ["validate", "--bundle", str(work / "bundle")])
    assert result.exit_code == 3, result.output
    assert f"{manifest}: {problem}" in result.output
    assert "1 problem:" in result.output  # only the manifest: its entries are not trusted


SAVED_CASES = [
    (_set("selectors", "region-*"), "selectors: must be an array, not a string"),
    (_set_entry("source_sha256", 5), "dashboards[0].source_sha256: must be a string or a null"),
    (_drop("target_inventory_sha256"), "target_inventory_sha256: is required but missing"),
    (_drop_entry("action"), "dashboards[1].action: is required but missing"),
    (_set("approved_by", "me"), "approved_by: is not allowed here"),
    (_set_entry("note", "x"), "dashboards[0].note: is not allowed here"),
    (_set_entry("action", "delete"), "dashboards[0].action: must be one of create"),
]


@pytest.mark.parametrize(("edit", "problem"), SAVED_CASES)
def test_saved_plan_failing_its_schema_is_exit_3_located(
    work: Path, edit: Edit, problem: str
) -> None:
    """apply --plan refuses a saved plan of wrong type, missing or extra key: file and path."""
    saved = work / "saved.json"
    _edit(saved, edit)
    plan = work / "plan.yaml"
    result = cli.invoke(
        app, ["--state-dir", str(work / "state"), "apply", str(plan), "--plan", str(saved)]
    )
    assert result.exit_code == 3, result.output
    assert str(saved) in result.output
    assert problem in result.output


def test_what_migrate_writes_passes_its_schema(made: Path) -> None:
    """A manifest and a saved plan just written have no schema problem (writer and reader agree)."""
    manifest = json.loads((made / "bundle" / "manifest.json").read_text())
    saved = json.loads((made / "saved.json").read_text())
    assert format_problems("bundle", manifest) == []
    assert format_problems("saved-plan", saved) == []


def test_saved_plan_actions_are_the_planner_actions() -> None:
    """The saved-plan schema allows exactly the actions `plan` can decide."""
    action = load_schema("saved-plan")["$defs"]["dashboard"]["properties"]["action"]
    assert action["enum"] == [a.value for a in Action]


@pytest.mark.parametrize("name", ["bundle", "saved-plan", "deploy"])
def test_schema_command_prints_the_file_formats(name: str) -> None:
    """`migrate schema bundle|saved-plan` prints the schema the files are checked against."""
    result = cli.invoke(app, ["schema", name])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == load_schema(name)  # type: ignore[arg-type]

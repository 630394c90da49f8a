"""The docs stay true: the README's opening commands, command table and exit-code table match the
CLI, and nothing in the repository cites notes that live outside it."""

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


# Notes that once lived beside the repository, and issue numbers of a tracker the reader may not
# have: a citation of either leaves the reader with nothing to open. Cite docs/ instead.
OUTSIDE_CITATIONS = re.compile(
    # Written with [.] so that a search of the tree for the names themselves does not match.
    r"DESIGN[.]md|\bDESIGN (?:part |[A-C]\d?\b)|DATABRAIN_API[.]md|STYLE[.]md|[.][.]/shared"
    r"|/work/|\bissues? #?\d+",
    re.IGNORECASE,
)
CITING_TREES = ("migrate", "tests", "benchmarks", "docs", "plans", ".ci")
CITING_FILES = ("README.md", "pyproject.toml")


def _repository_text_files() -> list[Path]:
    files = [ROOT / name for name in CITING_FILES]
    for tree in CITING_TREES:
        files += [
            path
            for path in (ROOT / tree).rglob("*")
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
        ]
    # This file names the patterns it looks for; it is the one place they may appear.
    return sorted(path for path in files if path != Path(__file__).resolve())


def test_nothing_cites_a_file_outside_the_repository() -> None:
    """No code, comment, test or doc cites the design, API or style notes that once lived beside
    the repository, or an issue number: the repository explains itself through docs/."""
    offenders = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in _repository_text_files()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if OUTSIDE_CITATIONS.search(line)
    ]
    assert not offenders, "cite docs/contract.md or docs/databrain-api.md instead:\n" + "\n".join(
        offenders
    )


def test_the_docs_pages_keep_the_sections_citations_name() -> None:
    """docs/contract.md has sections A1-A9 and docs/databrain-api.md the headings code cites."""
    contract = (ROOT / "docs" / "contract.md").read_text(encoding="utf-8")
    for number in range(1, 10):
        assert re.search(rf"^## A{number}\. ", contract, re.M), f"A{number} is missing"
    api = (ROOT / "docs" / "databrain-api.md").read_text(encoding="utf-8")
    for heading in (
        "Conventions",
        "Export Dashboard",
        "Import Dashboard",
        "Listing",
        "What is inside `data`",
    ):
        assert re.search(rf"^## {re.escape(heading)}", api, re.M), heading
    assert "[doc]" in api and "[guess]" in api
    assert "docs/contract.md" in README and "docs/databrain-api.md" in README


def test_module_table_names_every_module() -> None:
    """The README's module table names every module of the package, and only those."""
    table = README[README.index("| module | role |") :].split("\n\n", 1)[0]
    named = set(re.findall(r"`([a-z_]+)`", "\n".join(r.split("|")[1] for r in table.splitlines())))
    modules = {p.stem for p in (ROOT / "migrate").glob("*.py") if not p.stem.startswith("_")}
    assert modules - named == set(), "modules missing from the README's table"
    assert named - modules == set(), "the README's table names modules that do not exist"

"""The plan loader: valid plans become frozen Plans; each bad plan is a located exit-3 PlanError."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest

from migrate.errors import PlanError
from migrate.models import DashboardSpec, Endpoint, OnConflict, SchemaPair
from migrate.plan import load_plan, parse_plan
from tests.helpers import dump_plan

GOOD = """\
version: 1
source:
  url: sandbox://demo
  workspace: Sales Dev
target:
  url: ${TARGET_URL:-sandbox://demo}
  workspace: ${TARGET_WORKSPACE:-Sales Prod}
  token_env: DATABRAIN_TARGET_TOKEN
settings:
  concurrency: 4
  schema_pairs: [{replace: analytics_dev, target: analytics}]
dashboards:
  - id: kpi-core
  - id: sales-overview
    target_id: sales-overview-v2
    name: Sales Overview
    depends_on: [kpi-core]
    schema_pairs: [{replace: sales_dev, target: sales}]
"""


def fail(text: str, environ: dict[str, str] | None = None) -> PlanError:
    """Parse `text` as plan.yaml and return the PlanError it must raise."""
    with pytest.raises(PlanError) as info:
        parse_plan(text, path="plan.yaml", environ=environ or {})
    assert info.value.exit_code == 3
    return info.value


def assert_located(error: PlanError, line: int) -> None:
    """The error names the file and the line, and carries a fix."""
    assert error.file == "plan.yaml"
    assert error.line == line
    assert f"plan.yaml:{line}" in str(error)
    assert error.hint
    assert "fix:" in str(error)


def test_good_plan_loads_into_frozen_dataclasses() -> None:
    """A full plan becomes the documented Plan: defaults applied, ${VAR:-default} expanded."""
    plan = parse_plan(GOOD, path="plan.yaml", environ={})
    assert plan.source == Endpoint("sandbox://demo", "Sales Dev")
    assert plan.target == Endpoint("sandbox://demo", "Sales Prod", "DATABRAIN_TARGET_TOKEN")
    assert plan.settings.concurrency == 4
    assert plan.settings.on_conflict is OnConflict.SKIP
    assert plan.settings.infer_dependencies is True
    assert plan.settings.max_rps is None
    assert plan.settings.schema_pairs == (SchemaPair("analytics_dev", "analytics"),)
    assert plan.dashboards[0] == DashboardSpec(id="kpi-core", line=13)
    second = plan.dashboards[1]
    assert (second.target_id, second.name, second.depends_on) == (
        "sales-overview-v2",
        "Sales Overview",
        ("kpi-core",),
    )
    assert second.schema_pairs == (SchemaPair("sales_dev", "sales"),)
    assert second.line == 14
    assert plan.path == "plan.yaml"
    assert plan.digest == hashlib.sha256(GOOD.encode()).hexdigest()


def test_environment_overrides_defaults() -> None:
    """${VAR:-default} takes the variable when it is set."""
    plan = parse_plan(GOOD, environ={"TARGET_WORKSPACE": "Sales Staging"})
    assert plan.target.workspace == "Sales Staging"


def test_dollar_dollar_is_a_literal_dollar() -> None:
    """`$$` escapes a `$`, so `$${X}` is the text `${X}` and needs no variable."""
    plan = parse_plan(GOOD.replace("Sales Dev", "Cost $$ $${X}"), environ={})
    assert plan.source is not None
    assert plan.source.workspace == "Cost $ ${X}"


def test_expanded_number_is_read_as_a_number() -> None:
    """`concurrency: ${N:-8}` is the integer 8, as if written in the plan."""
    plan = parse_plan(GOOD.replace("concurrency: 4", "concurrency: ${N:-8}"), environ={})
    assert plan.settings.concurrency == 8
    plan = parse_plan(GOOD.replace("concurrency: 4", "concurrency: ${N}"), environ={"N": "3"})
    assert plan.settings.concurrency == 3


def test_json_plan_loads() -> None:
    """A JSON plan (even tab-indented) is a plan too."""
    plan = parse_plan(GOOD, environ={})
    doc = json.loads(
        json.dumps(
            {
                "version": 1,
                "target": {"url": "sandbox://x", "workspace": "W"},
                "dashboards": [{"id": "a"}],
            }
        )
    )
    text = json.dumps(doc, indent="\t")
    assert parse_plan(text).dashboards[0].id == "a"
    assert plan.target.url == "sandbox://demo"


def test_minimal_plan_without_source_uses_defaults() -> None:
    """`source` and `settings` are optional; a bundle-only plan names just the target."""
    plan = parse_plan("version: 1\ntarget: {url: sandbox://demo, workspace: W}\ndashboards: []\n")
    assert plan.source is None
    assert plan.settings.concurrency == 8
    assert plan.dashboards == ()


def test_load_plan_reads_file_and_resolves_relative_paths(tmp_path: Path) -> None:
    """load_plan hashes the file bytes and makes token_file/payload_schema relative to the plan."""
    path = tmp_path / "p.yaml"
    text = GOOD.replace("  token_env: DATABRAIN_TARGET_TOKEN\n", "  token_file: secrets/tok\n")
    text = text.replace("concurrency: 4", "payload_schema: strict.json")
    path.write_text(text)
    plan = load_plan(path, environ={})
    assert plan.digest == hashlib.sha256(path.read_bytes()).hexdigest()
    assert plan.path == str(path)
    assert plan.target.token_file == str(tmp_path / "secrets/tok")
    assert plan.settings.payload_schema == str(tmp_path / "strict.json")


def test_missing_file_is_exit_3(tmp_path: Path) -> None:
    """A plan path that does not exist is a PlanError naming it."""
    with pytest.raises(PlanError) as info:
        load_plan(tmp_path / "nope.yaml")
    assert "nope.yaml" in str(info.value)
    assert info.value.hint


def test_unknown_key_suggests_closest() -> None:
    """A misspelt key is refused at its line with the closest valid key suggested."""
    error = fail(GOOD.replace("concurrency", "concurency"))
    assert_located(error, 10)
    assert "concurency" in error.message
    assert "did you mean `concurrency`?" in str(error)


def test_unknown_top_level_key_beats_missing_required() -> None:
    """`targt:` is reported as a misspelling of `target`, not only as `target` missing."""
    error = fail(GOOD.replace("target:", "targt:"))
    assert_located(error, 5)
    assert "`target`" in (error.hint or "")


def test_wrong_type_names_key_and_expectation() -> None:
    """A string where an integer belongs names the key and the expected type."""
    error = fail(GOOD.replace("concurrency: 4", "concurrency: many"))
    assert_located(error, 10)
    assert "settings.concurrency" in error.message
    assert "integer" in error.message


@pytest.mark.parametrize(
    ("old", "new", "words"),
    [
        ("concurrency: 4", "concurrency: 0", "≥ 1"),
        ("concurrency: 4", "on_conflict: overwrite", "skip, fail"),
        ("concurrency: 4", "max_rps: 0", "> 0"),
        ("concurrency: 4", "infer_dependencies: maybe", "boolean"),
    ],
)
def test_wrong_value_names_key_and_expectation(old: str, new: str, words: str) -> None:
    """Out-of-range or unknown values name the key and what would be valid."""
    error = fail(GOOD.replace(old, new))
    assert_located(error, 10)
    assert words in error.message


def test_version_must_be_1() -> None:
    """`version: 2` is refused with the fix."""
    error = fail(GOOD.replace("version: 1", "version: 2"))
    assert_located(error, 1)
    assert "version: 1" in (error.hint or "")


def test_missing_required_section() -> None:
    """A plan without `target` names the missing section."""
    text = GOOD.split("target:", maxsplit=1)[0] + "dashboards: []\n"
    error = fail(text)
    assert_located(error, 1)
    assert "target" in error.message


def test_missing_required_key_in_endpoint() -> None:
    """An endpoint without `workspace` is located at the endpoint."""
    error = fail(GOOD.replace("  workspace: Sales Dev\n", ""))
    assert_located(error, 3)
    assert "`source` is missing required key `workspace`" in error.message


@pytest.mark.parametrize("key", ["token", "password", "api_key", "client_secret"])
def test_literal_secret_refused_without_echo(key: str) -> None:
    """A token-like key is refused, pointing at token_env, and the value never appears."""
    secret = "dbn_live_S3cr3tValue"
    text = GOOD.replace("  workspace: Sales Dev\n", f"  workspace: Sales Dev\n  {key}: {secret}\n")
    error = fail(text)
    assert_located(error, 5)
    assert "token_env" in (error.hint or "")
    assert secret not in str(error)
    assert secret not in repr(error.args)


def test_secret_from_env_var_refused_too() -> None:
    """`token: ${TOKEN}` still puts a token in the plan: refused before expansion."""
    text = GOOD.replace("  workspace: Sales Dev\n", "  workspace: Sales Dev\n  token: ${T}\n")
    error = fail(text, {"T": "abc"})
    assert_located(error, 5)
    assert "abc" not in str(error)


def test_token_env_holding_a_token_is_not_echoed() -> None:
    """A token pasted into token_env fails the name pattern without being echoed."""
    error = fail(GOOD.replace("DATABRAIN_TARGET_TOKEN", "dbn-live-9f8e7d"))
    assert_located(error, 8)
    assert "dbn-live-9f8e7d" not in str(error)


def test_unset_env_var_named_with_line() -> None:
    """An unset variable without default is exit 3 naming the variable and its line."""
    error = fail(GOOD.replace("${TARGET_URL:-sandbox://demo}", "${TARGET_URL}"))
    assert_located(error, 6)
    assert "TARGET_URL" in error.message
    assert "TARGET_URL:-" in (error.hint or "")


def test_malformed_reference() -> None:
    """`${1X}` and an unterminated `${` are refused with the syntax to use."""
    assert_located(fail(GOOD.replace("Sales Dev", "${1X}")), 4)
    assert_located(fail(GOOD.replace("Sales Dev", "${X")), 4)


def test_duplicate_dashboard_ids() -> None:
    """The same id twice is refused at the second entry, naming the first."""
    error = fail(GOOD + "  - id: kpi-core\n")
    assert_located(error, 19)
    assert "line 13" in error.message


def test_two_dashboards_with_one_target_id() -> None:
    """Two entries importing to the same target id are refused."""
    error = fail(GOOD + "  - id: other\n    target_id: sales-overview-v2\n")
    assert_located(error, 19)
    assert "sales-overview-v2" in error.message


def test_depends_on_unknown_dashboard() -> None:
    """depends_on naming no entry is refused, with the closest id suggested."""
    error = fail(GOOD.replace("depends_on: [kpi-core]", "depends_on: [kpi-cor]"))
    assert_located(error, 17)
    assert "did you mean `kpi-core`?" in str(error)


def test_depends_on_deferred_when_globs_present() -> None:
    """With a `match:` entry, an unknown depends_on may be a matched id: recorded, not refused."""
    text = GOOD.replace("depends_on: [kpi-core]", "depends_on: [region-emea]")
    plan = parse_plan(text + '  - match: "region-*"\n', environ={})
    assert plan.deferred_depends_on == ("region-emea",)


def test_dependency_cycle_printed_as_path() -> None:
    """A cycle is reported as `a → b → a` at the first entry on it."""
    text = GOOD.replace(
        "  - id: kpi-core\n", "  - id: kpi-core\n    depends_on: [sales-overview]\n"
    )
    error = fail(text)
    assert "kpi-core → sales-overview → kpi-core" in error.message
    assert_located(error, 13)


def test_self_dependency_is_a_cycle() -> None:
    """A dashboard depending on itself is a cycle of one."""
    error = fail(GOOD.replace("depends_on: [kpi-core]", "depends_on: [sales-overview]"))
    assert "sales-overview → sales-overview" in error.message


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ("  - id: a\n    match: b*\n", "both `id` and `match`"),
        ("  - name: a\n", "neither `id` nor `match`"),
        ("  - match: b*\n    target_id: x\n", "`target_id` on a `match` entry"),
    ],
)
def test_entry_needs_exactly_one_of_id_or_match(entry: str, words: str) -> None:
    """Each dashboard entry has exactly one of id/match, and target_id only with id."""
    error = fail(GOOD + entry)
    assert words in error.message
    assert error.line is not None
    assert error.line >= 19


def test_yaml_syntax_error_has_line_and_column() -> None:
    """Broken YAML is a PlanError with line and column."""
    error = fail(GOOD.replace("  workspace: Sales Dev", "  workspace: [Sales Dev"))
    assert error.line is not None
    assert error.column is not None
    assert "YAML syntax error" in error.message


def test_json_syntax_error_has_line_and_column() -> None:
    """Broken JSON is a PlanError with line and column."""
    error = fail('{\n\t"version": 1,\n\t"target": \n}')
    assert error.line is not None
    assert error.column is not None


def test_duplicate_yaml_key() -> None:
    """A key given twice in one mapping is refused at the second one."""
    error = fail(
        GOOD.replace("  workspace: Sales Dev\n", "  workspace: Sales Dev\n  workspace: X\n")
    )
    assert_located(error, 5)
    assert "duplicate key `workspace`" in error.message


def test_empty_and_non_mapping_plans() -> None:
    """An empty file or a list is refused with the fix."""
    assert "empty" in fail("").message
    assert "mapping" in fail("- a\n- b\n").message


def test_both_token_sources_refused() -> None:
    """An endpoint with token_env and token_file is refused."""
    error = fail(GOOD.replace("  token_env:", "  token_file: x\n  token_env:"))
    assert "both `token_env` and `token_file`" in error.message


def test_python_tags_refused() -> None:
    """YAML tags that would build Python objects are a syntax error, not code execution."""
    error = fail(GOOD.replace("Sales Dev", "!!python/object/apply:os.system ['true']"))
    assert error.line == 4


def test_alias_bomb_is_refused_quickly() -> None:
    """Nested YAML aliases that expand exponentially are refused within the node cap."""
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    lines += [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]" for i in range(1, 12)]
    start = time.perf_counter()
    error = fail("\n".join(lines) + "\n")
    assert time.perf_counter() - start < 5
    assert "more than" in error.message


def test_dump_plan_round_trips() -> None:
    """dump_plan writes YAML that loads back into an equal Plan."""
    plan = parse_plan(GOOD.replace("Sales Dev", "Dev $$"), environ={})
    again = parse_plan(dump_plan(plan), environ={})
    strip = [DashboardSpec(**{**d.__dict__, "line": None}) for d in again.dashboards]
    assert tuple(strip) == tuple(
        DashboardSpec(**{**d.__dict__, "line": None}) for d in plan.dashboards
    )
    assert (again.source, again.target, again.settings) == (plan.source, plan.target, plan.settings)

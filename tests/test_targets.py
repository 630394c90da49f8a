"""Applying one plan to several targets (docs/contract.md A8) on the embedded sandbox: the
source read once, waves in order, workspaces created, filters rebound, embeds mirrored."""

from __future__ import annotations

import asyncio
import json
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

import pytest

from migrate.errors import EndpointError, UsageError
from migrate.events import Outcome
from migrate.filters import column_of, filter_objects
from migrate.fleet import FleetReport, run_targets, select_targets
from migrate.models import ConnectionPolicy
from migrate.plan import load_plan
from migrate.report import fleet_junit_xml, fleet_markdown, fleet_report
from migrate.runner import ApplyReport, RunOptions, run_apply
from migrate.sandbox import Sandbox
from tests.helpers import sandbox_of

PLAN = """\
version: 1
source: {url: 'sandbox://demo', workspace: Sales Dev,
         data_app: {name: Sales Dev App, key_env: T_DEV_APP_KEY}}
settings: {embeds: mirror}
targets:
  staging:
    STAGING
    workspace: Sales Staging
    data_app: {name: Sales Staging App, key_env: T_STG_APP_KEY}
    settings: {schema_pairs: [{replace: analytics_dev, target: analytics_stg}]}
  prod-eu:
    url: 'sandbox://demo'
    workspace: Sales Prod
    data_app: {name: Sales Prod App, key_env: T_PROD_APP_KEY}
    settings:
      schema_pairs: [{replace: analytics_dev, target: analytics}]
      embed_access: {isAllowUnderlyingData: false, datamartName: sales-mart}
  prod-us:
    url: 'sandbox://demo'
    workspace: Sales Prod US
    data_app: {name: Sales Prod App, key_env: T_PROD_APP_KEY}
    create_workspace: {connection_type: DATASOURCE, datasource: pg-prod}
    settings:
      id_suffix: -us
      schema_pairs: [{replace: analytics_dev, target: analytics_us}]
waves: [[staging], [prod-eu, prod-us]]
dashboards:
  - match: "*"
"""
GOOD_STAGING = "url: 'sandbox://demo'"
SCHEMAS = {
    "Sales Staging": "analytics_stg",
    "Sales Prod": "analytics",
    "Sales Prod US": "analytics_us",
}


@pytest.fixture(autouse=True)
def _app_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo data apps' keys, where the plan says they are."""
    monkeypatch.setenv("T_DEV_APP_KEY", "demo-dev-app-key")
    monkeypatch.setenv("T_STG_APP_KEY", "demo-staging-app-key")
    monkeypatch.setenv("T_PROD_APP_KEY", "demo-prod-app-key")
    monkeypatch.delenv("T_NO_SUCH_TOKEN", raising=False)


def run(tmp_path: Path, staging: str = GOOD_STAGING, **kwargs: object) -> FleetReport:
    path = tmp_path / "plan.yaml"
    path.write_text(PLAN.replace("STAGING", staging), encoding="utf-8")
    options = RunOptions(policy=ConnectionPolicy(state_dir=tmp_path / "state"))
    return asyncio.run(run_targets(load_plan(path), options, **kwargs))  # type: ignore[arg-type]


def prepare(tmp_path: Path) -> None:
    """An SQL-only server (schemaPairs leave filter bindings alone), its log emptied."""
    sandbox = sandbox_of(tmp_path / "state")
    sandbox.modes.schema_pairs_sql_only = True
    sandbox.reset_stats()


def test_three_targets_in_two_waves(tmp_path: Path) -> None:
    """Source exported once; every target holds every dashboard with its own schema in SQL and
    in filter bindings; embeds mirrored with the override; wave 2 after wave 1; reports nest."""
    prepare(tmp_path)
    report = run(tmp_path)
    sandbox = sandbox_of(tmp_path / "state")
    assert report.ok, [(t.name, t.unusable, [o.error for o in t.outcomes]) for t in report.targets]
    source_ids = [dash_id for dash_id, _ in sandbox.list_dashboards("Sales Dev")]
    exports = [r for r in sandbox.requests("export") if r.workspace == "Sales Dev"]
    assert sorted(r.dashboard_id or "" for r in exports) == sorted(source_ids)
    assert report.source_exports == len(source_ids)

    for run_ in report.targets:
        workspace = run_.plan.target.workspace
        schema = SCHEMAS[workspace]
        assert {o.result.value for o in run_.outcomes} == {"created"}
        for outcome in run_.outcomes:
            data = sandbox.get_dashboard(workspace, outcome.target_id)
            assert data is not None
            text = json.dumps([m["query"] for m in data["metrics"]])
            assert f"{schema}." in text and "analytics_dev." not in text
            columns = [
                column_of(entry) for item in filter_objects(data) for entry in item["applyOnTables"]
            ]
            assert columns and all(c is not None and c.schema == schema for c in columns)
    assert report.targets[2].workspace == "created, bound to DATASOURCE pg-prod"
    assert sandbox.workspace_binding("Sales Prod US") == ("DATASOURCE", "pg-prod")

    eu = {o.id: o for o in report.targets[1].outcomes}
    assert len(eu["sales-overview"].embeds) == 2
    for embed in eu["sales-overview"].embeds:
        assert embed.embed_id is not None and embed.previous_embed_id is None
        row = sandbox.store.get_embed("Sales Prod App", embed.embed_id)
        assert row is not None and row.dashboard_id == "sales-overview"
        access = json.loads(row.access_settings)
        assert access["isAllowUnderlyingData"] is False
        assert access["datamartName"] == "sales-mart"
    staging = {o.id: o for o in report.targets[0].outcomes}
    embed_id = staging["sales-overview"].embeds[0].embed_id
    assert embed_id is not None
    row = sandbox.store.get_embed("Sales Staging App", embed_id)
    assert row is not None and "datamartName" not in json.loads(row.access_settings)

    staging_end = max(r.finished for r in sandbox.requests() if r.workspace == "Sales Staging")
    wave2_start = min(
        r.started for r in sandbox.requests() if r.workspace in ("Sales Prod", "Sales Prod US")
    )
    assert staging_end <= wave2_start

    document = fleet_report(report)
    assert list(document["targets"]) == ["staging", "prod-eu", "prod-us"]
    assert document["targets"]["prod-eu"]["dashboards"][0]["result"] == "created"
    assert document["waves_ran"] == 2
    suites = ET.fromstring(fleet_junit_xml(report).split("\n", 1)[1]).findall("testsuite")
    assert [s.get("name") for s in suites] == [f"migrate apply {n}" for n in document["targets"]]
    summary = fleet_markdown(report)
    assert summary.splitlines()[0].endswith("waves: 2 of 2 ran ([staging], [prod-eu, prod-us])")
    assert summary.count("\n### ") == 3


def test_a_failing_first_wave_leaves_later_targets_untouched(tmp_path: Path) -> None:
    """Bad staging credentials: its dashboards and wave 2's are blocked, nothing is written."""
    prepare(tmp_path)
    report = run(tmp_path, staging="url: 'https://127.0.0.1:9'\n    token_env: T_NO_SUCH_TOKEN")
    sandbox = sandbox_of(tmp_path / "state")
    assert not report.ok and report.waves_ran == 1
    staging, eu, us = report.targets
    assert staging.unusable is not None and "T_NO_SUCH_TOKEN" in staging.unusable.message
    assert eu.blocked == us.blocked == "wave 1 failed: staging"
    assert {o.result.value for t in report.targets for o in t.outcomes} == {"blocked"}
    assert sandbox.write_count == 0
    assert not any(r.workspace in ("Sales Prod", "Sales Prod US") for r in sandbox.requests())
    assert "Sales Prod US" not in sandbox.workspaces()


def test_an_unusable_target_blocks_only_its_own_dashboards(tmp_path: Path) -> None:
    """In one wave, a target with bad credentials does not stop its siblings."""
    prepare(tmp_path)
    path = tmp_path / "plan.yaml"
    text = PLAN.replace("STAGING", "url: 'https://127.0.0.1:9'\n    token_env: T_NO_SUCH_TOKEN")
    path.write_text(text.replace("waves: [[staging], [prod-eu, prod-us]]\n", ""), "utf-8")
    options = RunOptions(policy=ConnectionPolicy(state_dir=tmp_path / "state"))
    report = asyncio.run(run_targets(load_plan(path), options))
    staging, eu, us = report.targets
    assert staging.unusable is not None
    assert eu.clean and us.clean


def test_target_option_selects_by_name_and_glob(tmp_path: Path) -> None:
    """`--target 'prod-*'` runs only the prod targets; an unknown name is a usage error."""
    prepare(tmp_path)
    report = run(tmp_path, names=("prod-*",))
    assert [t.name for t in report.targets] == ["prod-eu", "prod-us"]
    assert report.waves == (("prod-eu", "prod-us"),)
    sandbox = sandbox_of(tmp_path / "state")
    assert sandbox.list_dashboards("Sales Staging") == []
    plan = load_plan(tmp_path / "plan.yaml")
    with pytest.raises(UsageError):
        select_targets(plan, ["qa"])


def test_plan_previews_workspace_filters_and_embeds(tmp_path: Path) -> None:
    """`plan` writes nothing and shows the workspace to create, rebinds and embeds."""
    prepare(tmp_path)
    report = run(tmp_path, dry_run=True)
    sandbox = sandbox_of(tmp_path / "state")
    assert sandbox.write_count == 0 and "Sales Prod US" not in sandbox.workspaces()
    us = report.targets[2]
    assert us.workspace is not None and us.workspace.startswith("missing")
    assert us.migration is not None
    assert {d.action.value for d in us.migration.dashboards} == {"create"}
    assert us.rebinds["sales-overview"] == ["Order Date", "Region"]
    assert report.targets[1].embeds["sales-overview"] == [
        "Sales Overview",
        "Sales Overview (partners)",
    ]


def test_a_second_apply_is_unchanged_and_creates_no_embed(tmp_path: Path) -> None:
    """Rerun: rebound filters compare equal (unchanged), and no embed is created twice."""
    prepare(tmp_path)
    assert run(tmp_path).ok
    sandbox = sandbox_of(tmp_path / "state")
    embeds = len(sandbox.store.list_embeds("Sales Prod App"))
    again = run(tmp_path)
    assert {o.result.value for t in again.targets for o in t.outcomes} == {"unchanged"}
    assert len(sandbox.store.list_embeds("Sales Prod App")) == embeds


def test_cli_exit_codes_for_targets(tmp_path: Path) -> None:
    """A failing first wave is exit 6; `target` with `targets` is exit 3 naming the fix."""
    from tests.helpers import run_migrate  # noqa: PLC0415

    env = {
        "T_DEV_APP_KEY": "demo-dev-app-key",
        "T_STG_APP_KEY": "demo-staging-app-key",
        "T_PROD_APP_KEY": "demo-prod-app-key",
    }
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        PLAN.replace("STAGING", "url: 'https://127.0.0.1:9'\n    token_env: T_NO_SUCH_TOKEN"),
        encoding="utf-8",
    )
    state = str(tmp_path / "state")
    done = run_migrate("--state-dir", state, "-q", "apply", str(bad), env=env)
    assert done.returncode == 6, done.stderr
    assert "T_NO_SUCH_TOKEN" in done.stderr + done.stdout
    both = tmp_path / "both.yaml"
    both.write_text(
        PLAN.replace("STAGING", GOOD_STAGING).replace(
            "targets:\n", "target: {url: 'sandbox://demo', workspace: W}\ntargets:\n"
        ),
        encoding="utf-8",
    )
    done = run_migrate("--state-dir", state, "plan", str(both), env=env)
    assert done.returncode == 3
    assert "both `target` and `targets`" in done.stderr


ONE_TARGET = """\
version: 1
source: {url: 'sandbox://demo', workspace: Sales Dev,
         data_app: {name: Sales Dev App, key_env: T_DEV_APP_KEY}}
target: {url: 'sandbox://demo', workspace: Sales Prod,
         data_app: {name: Sales Prod App, key_env: T_PROD_APP_KEY}}
settings:
  embeds: mirror
  embed_access: {isAllowUnderlyingData: false}
  schema_pairs: [{replace: analytics_dev, target: analytics}]
dashboards:
  - match: "*"
"""


def apply_one(tmp_path: Path, text: str = ONE_TARGET) -> ApplyReport:
    """`run_apply` of a one-target plan `text`, written to tmp_path/plan.yaml."""
    path = tmp_path / "plan.yaml"
    path.write_text(text, encoding="utf-8")
    options = RunOptions(policy=ConnectionPolicy(state_dir=tmp_path / "state"))
    return asyncio.run(run_apply(load_plan(path), options))


def test_a_one_target_plan_is_served_too(tmp_path: Path) -> None:
    """`target:` plans get the same post-import steps as `targets:`: filter bindings rebound to
    the target's schema, source embeds mirrored with the override, ids read from answers."""
    prepare(tmp_path)
    report = apply_one(tmp_path)
    assert {o.result.value for o in report.outcomes} == {"created"}
    sandbox = sandbox_of(tmp_path / "state")
    assert_filters_on(sandbox, report.outcomes, "analytics")
    by_id = {o.id: o for o in report.outcomes}
    assert len(by_id["sales-overview"].embeds) == 2
    for embed in by_id["sales-overview"].embeds:
        assert embed.embed_id is not None
        row = sandbox.store.get_embed("Sales Prod App", embed.embed_id)
        assert row is not None and json.loads(row.access_settings)["isAllowUnderlyingData"] is False


def test_a_crash_between_import_and_serving_is_finished_by_the_rerun(tmp_path: Path) -> None:
    """What a kill after the imports but before the serving steps leaves — dashboards in the
    target, their journal outcomes missing, no embeds — is served by the next run, once."""
    prepare(tmp_path)
    first = apply_one(tmp_path)
    assert {o.result.value for o in first.outcomes} == {"created"}
    sandbox = sandbox_of(tmp_path / "state")
    for row in sandbox.store.list_embeds("Sales Prod App"):  # the serving never happened
        sandbox.store.delete_embed("Sales Prod App", row.id, delete_dashboard=False)
    (journal,) = (tmp_path / "state" / "journal").glob("*.jsonl")
    kept = [line for line in journal.read_text().splitlines() if '"outcome"' not in line]
    journal.write_text("\n".join(kept) + "\n")  # the kill came before any outcome was written
    second = apply_one(tmp_path)
    assert {o.result.value for o in second.outcomes} == {"unchanged"}
    mirrored = sandbox.store.list_embeds("Sales Prod App")
    assert sorted(e.dashboard_id for e in mirrored) == sorted(
        e.dashboard_id for e in sandbox.store.list_embeds("Sales Dev App")
    )
    third = apply_one(tmp_path)
    assert {o.result.value for o in third.outcomes} == {"unchanged"}
    assert len(sandbox.store.list_embeds("Sales Prod App")) == len(mirrored)


def test_a_replaced_dashboard_is_served_like_a_created_one(tmp_path: Path) -> None:
    """After `on_conflict: replace`, a mirrored embed missing in the target is created and the
    ones the replace re-created are not doubled."""
    prepare(tmp_path)
    apply_one(tmp_path)
    sandbox = sandbox_of(tmp_path / "state")
    before = sandbox.store.list_embeds("Sales Prod App")
    gone = next(e for e in before if e.dashboard_id == "sales-overview")
    sandbox.store.delete_embed("Sales Prod App", gone.id, delete_dashboard=False)
    update = ONE_TARGET.replace("workspace: Sales Dev,", "workspace: Sales Dev Next,").replace(
        "  embeds: mirror\n", "  embeds: mirror\n  on_conflict: replace\n"
    )
    report = apply_one(tmp_path, update)
    results = {o.id: o.result.value for o in report.outcomes}
    assert results["sales-overview"] == "updated"
    after = sandbox.store.list_embeds("Sales Prod App")
    assert sorted((e.dashboard_id, e.name) for e in after) == sorted(
        (e.dashboard_id, e.name) for e in before
    )


def test_a_bad_data_app_key_creates_no_workspace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Credentials are checked before `create_workspace` acts: a target whose data-app key is
    wrong is unusable, and its missing workspace is not created."""
    prepare(tmp_path)
    monkeypatch.setenv("T_PROD_APP_KEY", "not-the-key")
    with pytest.raises(EndpointError):
        run(tmp_path, names=["prod-us"])
    assert not sandbox_of(tmp_path / "state").store.has_workspace("Sales Prod US")


def test_verify_none_still_serves_what_it_imports(tmp_path: Path) -> None:
    """`verify: none` skips the comparison read-back, not the serving: filters a SQL-only
    server left on the source schema are rebound, embeds mirrored."""
    prepare(tmp_path)
    report = apply_one(
        tmp_path, ONE_TARGET.replace("  embeds: mirror\n", "  embeds: mirror\n  verify: none\n")
    )
    assert {o.result.value for o in report.outcomes} == {"created"}
    sandbox = sandbox_of(tmp_path / "state")
    assert_filters_on(sandbox, report.outcomes, "analytics")
    assert len({o.id: o for o in report.outcomes}["sales-overview"].embeds) == 2


def assert_filters_on(sandbox: Sandbox, outcomes: Sequence[Outcome], schema: str) -> None:
    """Every filter binding of the imported dashboards names `schema`, and there are some."""
    columns = []
    for outcome in outcomes:
        data = sandbox.get_dashboard("Sales Prod", outcome.target_id)
        assert data is not None
        columns += [
            column_of(entry) for item in filter_objects(data) for entry in item["applyOnTables"]
        ]
    assert columns and all(c is not None and c.schema == schema for c in columns)


def test_every_target_plans_from_the_one_copy_of_each_export(tmp_path: Path) -> None:
    """The source's exports are held once for the whole run: every target's planned
    dashboards point at the same spool, none stores its own copy."""
    prepare(tmp_path)
    report = run(tmp_path)
    spools = {
        id(item.spool)
        for target in report.targets
        if target.report is not None
        for item in target.report.migration.dashboards
        if item.spool is not None
    }
    assert len(spools) == 1

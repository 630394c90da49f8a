"""Adversarial tests of the post-import steps (docs/contract.md A7, A8): embeds mirrored into a
data app shared by workspaces that hold the same dashboard ids, filters of replaced
dashboards, a bad data-app key, and a run that ended between an import and its serving."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from migrate.errors import EndpointError
from migrate.filters import column_of, filter_objects
from migrate.fleet import FleetReport, run_targets
from migrate.models import ConnectionPolicy
from migrate.plan import load_plan
from migrate.runner import RunOptions
from tests.helpers import sandbox_of

SHARED_APP = """\
version: 1
source: {url: 'sandbox://demo', workspace: Sales Dev,
         data_app: {name: Sales Dev App, key_env: T_DEV_APP_KEY}}
settings: {embeds: mirror}
targets:
  prod-eu:
    url: 'sandbox://demo'
    workspace: Sales Prod
    data_app: {name: Sales Prod App, key_env: T_PROD_APP_KEY}
    settings: {schema_pairs: [{replace: analytics_dev, target: analytics}]}
  prod-us:
    url: 'sandbox://demo'
    workspace: Sales Prod US
    data_app: {name: Sales Prod App, key_env: T_PROD_APP_KEY}
    create_workspace: {connection_type: DATASOURCE, datasource: pg-prod}
    settings: {schema_pairs: [{replace: analytics_dev, target: analytics_us}]}
dashboards:
  - id: sales-overview
"""

REPLACING = """\
version: 1
source: {url: 'sandbox://demo', workspace: SOURCE,
         data_app: {name: SOURCE App, key_env: KEY_ENV}}
settings: {embeds: mirror, on_conflict: replace}
targets:
  prod-eu:
    url: 'sandbox://demo'
    workspace: Sales Prod
    data_app: {name: Sales Prod App, key_env: T_PROD_APP_KEY}
    settings: {schema_pairs: [{replace: analytics_dev, target: analytics}]}
dashboards:
  - id: sales-overview
"""


@pytest.fixture(autouse=True)
def _app_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo data apps' keys, where the plans say they are."""
    monkeypatch.setenv("T_DEV_APP_KEY", "demo-dev-app-key")
    monkeypatch.setenv("T_NEXT_APP_KEY", "demo-dev-next-app-key")
    monkeypatch.setenv("T_PROD_APP_KEY", "demo-prod-app-key")


def run(tmp_path: Path, text: str, *names: str) -> FleetReport:
    path = tmp_path / "plan.yaml"
    path.write_text(text, encoding="utf-8")
    options = RunOptions(policy=ConnectionPolicy(state_dir=tmp_path / "state"))
    return asyncio.run(run_targets(load_plan(path), options, names=names))


def replacing(source: str, key_env: str) -> str:
    return REPLACING.replace("SOURCE", source).replace("KEY_ENV", key_env)


def test_mirror_ignores_a_same_id_embed_of_another_workspace(tmp_path: Path) -> None:
    """A second workspace sharing the data app and the dashboard id gets embeds of its own,
    not the first workspace's (the embed listing names no workspace)."""
    sandbox = sandbox_of(tmp_path / "state")
    assert run(tmp_path, SHARED_APP, "prod-eu").ok
    report = run(tmp_path, SHARED_APP, "prod-us")
    assert report.ok
    (outcome,) = report.targets[0].outcomes
    assert len(outcome.embeds) == 2
    for embed in outcome.embeds:
        assert embed.embed_id is not None
        row = sandbox.store.get_embed("Sales Prod App", embed.embed_id)
        assert row is not None and row.workspace == "Sales Prod US"
    rows = sandbox.store.list_embeds("Sales Prod App")
    assert sorted(row.workspace for row in rows) == ["Sales Prod"] * 2 + ["Sales Prod US"] * 2


def test_a_replaced_dashboard_gets_its_filters_rebound(tmp_path: Path) -> None:
    """On an SQL-only server a replaced dashboard's filters are rebound to the target schema,
    and its embeds are re-created once, not mirrored a second time."""
    sandbox = sandbox_of(tmp_path / "state")
    sandbox.modes.schema_pairs_sql_only = True
    assert run(tmp_path, replacing("Sales Dev", "T_DEV_APP_KEY")).ok
    report = run(tmp_path, replacing("Sales Dev Next", "T_NEXT_APP_KEY"))
    assert report.ok, [o.error for o in report.targets[0].outcomes]
    (outcome,) = report.targets[0].outcomes
    assert outcome.result.value == "updated"
    data = sandbox.get_dashboard("Sales Prod", "sales-overview")
    columns = [column_of(e) for item in filter_objects(data) for e in item["applyOnTables"]]
    assert columns and {c.schema for c in columns if c is not None} == {"analytics"}
    assert len(sandbox.store.list_embeds("Sales Prod App")) == 2
    assert len(outcome.embeds) == 2
    assert all(e.previous_embed_id is not None for e in outcome.embeds)


def test_a_bad_target_data_app_key_stops_the_target_before_any_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With `embeds: mirror` a wrong target data-app key makes the target unusable up front:
    nothing is imported that could not be served."""
    monkeypatch.setenv("T_PROD_APP_KEY", "not-the-key")
    sandbox = sandbox_of(tmp_path / "state")
    with pytest.raises(EndpointError):
        run(tmp_path, SHARED_APP, "prod-eu")
    assert sandbox.list_dashboards("Sales Prod") == []


def test_a_rerun_serves_a_dashboard_an_earlier_run_imported_but_did_not_serve(
    tmp_path: Path,
) -> None:
    """A dashboard imported by a run whose embed creation failed gets its embeds on a rerun."""
    sandbox = sandbox_of(tmp_path / "state")
    # An override the server refuses (400): the first run imports the dashboard, then fails it
    # as "imported, but not served". The user fixes the override and runs again.
    bad = SHARED_APP.replace(
        "target: analytics}]}", "target: analytics}], embed_access: {isAllowUnderlyingData: 0}}"
    )
    first = run(tmp_path, bad, "prod-eu")
    assert [o.result.value for o in first.targets[0].outcomes] == ["failed"]
    assert sandbox.list_dashboards("Sales Prod") != []
    second = run(tmp_path, SHARED_APP, "prod-eu")
    assert second.ok
    assert len(sandbox.store.list_embeds("Sales Prod App")) == 2


def test_a_credential_echoed_into_source_embed_names_is_never_copied_to_a_target(
    tmp_path: Path,
) -> None:
    """A source server echoing the data-app key into listed names: no target embed is created
    with it (the dashboard fails as not served), so the key never reaches another data app."""
    sandbox = sandbox_of(tmp_path / "state")
    sandbox.faults.echo_credentials = "errors"
    report = run(tmp_path, SHARED_APP, "prod-eu")
    (outcome,) = report.targets[0].outcomes
    assert outcome.result.value == "failed"
    assert outcome.error is not None and outcome.error.code == "CREDENTIAL_ECHO"
    sandbox.faults.echo_credentials = "off"
    for row in sandbox.store.list_embeds("Sales Prod App"):
        assert "app-key" not in row.name + row.access_settings

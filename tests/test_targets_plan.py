"""Plans with `targets:` (docs/contract.md A8): per-target views with merged settings, waves,
and the checks a schema cannot make."""

from __future__ import annotations

from pathlib import Path

import pytest

from migrate.errors import PlanError
from migrate.filters import may_need_rebinding, plan_rebindings
from migrate.jsontext import dump_json
from migrate.models import ConnectionType, EmbedsMode, SchemaPair, WorkspaceBinding
from migrate.plan import parse_plan
from tests.helpers import sandbox_of

BASE = """\
version: 1
source: {url: 'sandbox://demo', workspace: Sales Dev,
         data_app: {name: Sales Dev App, key_env: DEV_APP_KEY}}
settings:
  id_prefix: p-
  embeds: mirror
  schema_pairs: [{replace: analytics_dev, target: analytics}]
targets:
  staging:
    url: 'sandbox://demo'
    workspace: Sales Staging
    data_app: {name: Sales Staging App, key_env: STG_APP_KEY}
    settings: {schema_pairs: [{replace: analytics_dev, target: analytics_stg}]}
  prod-eu:
    url: 'sandbox://demo'
    workspace: Sales EU
    data_app: {name: Sales Prod App, key_env: PROD_APP_KEY}
    create_workspace: {connection_type: DATAMART, datamart: sales-mart}
    settings:
      embed_access: {isAllowUnderlyingData: false}
      filter_bindings: [{from: analytics_dev.orders.region_id, to: analytics.orders.region}]
WAVES
dashboards:
  - match: "*"
"""


def load(waves: str = "waves: [[staging], [prod-eu]]", text: str = BASE) -> object:
    return parse_plan(text.replace("WAVES", waves), path="plan.yaml", environ={})


def test_targets_become_views_with_merged_settings() -> None:
    """Each target's settings keys replace the plan's; the others are inherited."""
    plan = load()
    views = {t.name: t for t in plan.targets}  # type: ignore[attr-defined]
    staging, eu = views["staging"].plan.settings, views["prod-eu"].plan.settings
    assert staging.schema_pairs[0].target == "analytics_stg"
    assert eu.schema_pairs[0].target == "analytics"
    assert staging.id_prefix == eu.id_prefix == "p-"
    assert staging.embeds is eu.embeds is EmbedsMode.MIRROR
    assert eu.embed_access == {"isAllowUnderlyingData": False}
    assert staging.embed_access == {}
    assert eu.filter_bindings[0].target.column == "region"
    assert views["prod-eu"].create_workspace == WorkspaceBinding(
        ConnectionType.DATAMART, "sales-mart"
    )
    assert views["staging"].create_workspace is None
    assert views["prod-eu"].plan.target.workspace == "Sales EU"


def test_waves_default_to_one_wave_of_every_target() -> None:
    """Without `waves`, every target runs in one wave, in plan order."""
    assert load(waves="").waves == (("staging", "prod-eu"),)  # type: ignore[attr-defined]
    assert load().waves == (("staging",), ("prod-eu",))  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("waves", "words"),
    [
        ("waves: [[staging], [prod-us]]", "not one of `targets`"),
        ("waves: [[staging, prod-eu], [prod-eu]]", "wave 1 and wave 2"),
        ("waves: [[staging]]", "leaves out prod-eu"),
    ],
)
def test_bad_waves_are_located_plan_errors(waves: str, words: str) -> None:
    """An unknown, repeated or missing target in `waves` is exit 3, with the line."""
    with pytest.raises(PlanError) as caught:
        load(waves=waves)
    assert words in caught.value.message
    assert caught.value.line is not None
    assert caught.value.exit_code == 3


def test_target_and_targets_together_is_exit_3_with_the_fix() -> None:
    """A plan with both `target` and `targets` names both and says how to fix it."""
    text = BASE.replace("targets:\n", "target: {url: 'sandbox://demo', workspace: X}\ntargets:\n")
    with pytest.raises(PlanError) as caught:
        load(text=text)
    assert "both `target` and `targets`" in caught.value.message
    assert "targets:" in (caught.value.hint or "")
    assert caught.value.exit_code == 3


def test_mirror_without_a_target_data_app_is_refused() -> None:
    """`embeds: mirror` on a target without `data_app` is a plan error naming the target."""
    text = BASE.replace("    data_app: {name: Sales Prod App, key_env: PROD_APP_KEY}\n", "")
    with pytest.raises(PlanError) as caught:
        load(text=text)
    assert "prod-eu" in caught.value.message


def test_single_target_plans_are_unchanged() -> None:
    """A `target:` plan has no views and no waves."""
    plan = parse_plan(
        "version: 1\ntarget: {url: 'sandbox://demo', workspace: W}\ndashboards: []\n", environ={}
    )
    assert plan.targets == () and plan.waves == ()


def test_rebinding_prefilter_never_hides_a_rebinding(tmp_path: Path) -> None:
    """`may_need_rebinding` says no only where `plan_rebindings` finds nothing: checked on
    every demo dashboard with and without the pair that names its schema."""
    sandbox = sandbox_of(tmp_path)
    for dash_id, _name in sandbox.list_dashboards("Sales Dev"):
        data = sandbox.get_dashboard("Sales Dev", dash_id)
        for pairs in ((), (SchemaPair("analytics_dev", "analytics"),)):
            found = plan_rebindings(data, dash_id, pairs, ())
            assert may_need_rebinding(dump_json(data), pairs, ()) or not found
    assert may_need_rebinding(b"{}", (), ()) is False

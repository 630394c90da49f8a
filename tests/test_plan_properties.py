"""Hypothesis: any valid plan, dumped as YAML or JSON, loads back into an equal Plan."""

from __future__ import annotations

import dataclasses
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from migrate.models import (
    DashboardSpec,
    DataApp,
    Endpoint,
    OnConflict,
    Plan,
    SchemaPair,
    Settings,
)
from migrate.plan import parse_plan, plan_to_document
from tests.helpers import dump_plan

text = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=12
)
slug = st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True)
env_name = st.from_regex(r"[A-Z_][A-Z0-9_]{0,10}", fullmatch=True)
pairs = st.lists(st.builds(SchemaPair, text, text), max_size=2).map(tuple)

endpoints = st.builds(
    Endpoint,
    url=st.sampled_from(
        ["sandbox://demo", "https://api.usedatabrain.com", "http://127.0.0.1:8787"]
    ),
    workspace=text,
    token_env=st.none() | env_name,
    data_app=st.none() | st.builds(DataApp, text, key_env=st.none() | env_name),
)
settings_ = st.builds(
    Settings,
    concurrency=st.integers(1, 64),
    on_conflict=st.sampled_from(OnConflict),
    id_prefix=st.just("") | slug,
    id_suffix=st.just(""),
    schema_pairs=pairs,
    infer_dependencies=st.booleans(),
    compare_ignore=st.lists(text, max_size=2).map(tuple),
    payload_schema=st.none() | text,
    max_rps=st.none() | st.floats(0.1, 1000),
)


@st.composite
def plans(draw: st.DrawFn) -> Plan:
    """A valid plan: unique ids, acyclic depends_on (each on earlier ids), maybe a glob."""
    ids = draw(st.lists(slug, unique=True, max_size=6))
    entries = []
    for i, dashboard_id in enumerate(ids):
        earlier = ids[:i]
        entries.append(
            DashboardSpec(
                id=dashboard_id,
                target_id=draw(st.none() | st.just(f"{dashboard_id}~t")),
                name=draw(st.none() | text),
                depends_on=tuple(draw(st.lists(st.sampled_from(earlier), unique=True, max_size=3)))
                if earlier
                else (),
                schema_pairs=draw(pairs),
            )
        )
    if draw(st.booleans()):
        entries.append(DashboardSpec(match=draw(st.sampled_from(["*", "region-*", "a?c"]))))
    settings = draw(settings_)
    target = draw(endpoints)
    if settings.on_conflict is OnConflict.REPLACE and target.data_app is None:
        target = dataclasses.replace(target, data_app=DataApp("App", key_env="APP_KEY"))
    return Plan(
        target=target,
        source=draw(st.none() | endpoints),
        settings=settings,
        dashboards=tuple(entries),
    )


def comparable(plan: Plan) -> Plan:
    """The plan without what depends on the file (lines, digest, path)."""
    return dataclasses.replace(
        plan,
        dashboards=tuple(dataclasses.replace(d, line=None) for d in plan.dashboards),
        digest="",
        path="<plan>",
    )


@settings(max_examples=100, deadline=None)
@given(plan=plans())
def test_yaml_round_trip(plan: Plan) -> None:
    """dump_plan → parse_plan gives back the same plan, `$` and unicode included."""
    assert comparable(parse_plan(dump_plan(plan), environ={})) == plan


@settings(max_examples=50, deadline=None)
@given(plan=plans())
def test_json_round_trip(plan: Plan) -> None:
    """The same plan written as JSON loads to the same Plan."""
    text_ = json.dumps(plan_to_document(plan), ensure_ascii=False, indent=2)
    assert comparable(parse_plan(text_, environ={})) == plan

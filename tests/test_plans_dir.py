"""Every plan shipped in plans/ loads and validates, with env vars left at their defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from migrate.plan import load_plan
from migrate.validation import validate_paths

PLANS = sorted((Path(__file__).parent.parent / "plans").glob("*.yaml"))


def test_the_examples_exist() -> None:
    """demo.yaml and the three copyable examples ship in plans/."""
    names = {p.name for p in PLANS}
    assert {"demo.yaml", "one-off.yaml", "promote.yaml", "regions.yaml"} <= names


@pytest.mark.parametrize("path", PLANS, ids=lambda p: p.name)
def test_plan_loads_and_validates(path: Path) -> None:
    """The plan loads with an empty environment and `validate` exits 0 on it."""
    plan = load_plan(path, environ={})
    assert plan.dashboards
    text = path.read_text()
    assert text.startswith("# yaml-language-server: $schema=../migrate/schemas/plan.schema.json")
    assert validate_paths([path]).ok


def test_demo_plan_targets_the_sandbox() -> None:
    """demo.yaml moves every dashboard from Sales Dev to Sales Prod in sandbox://demo."""
    plan = load_plan(Path(__file__).parent.parent / "plans" / "demo.yaml", environ={})
    assert plan.source is not None
    assert (plan.source.url, plan.source.workspace) == ("sandbox://demo", "Sales Dev")
    assert (plan.target.url, plan.target.workspace) == ("sandbox://demo", "Sales Prod")
    assert [d.match for d in plan.dashboards] == ["*"]


def test_promote_plan_is_driven_by_env() -> None:
    """promote.yaml serves both hops of the promotion from environment variables."""
    path = Path(__file__).parent.parent / "plans" / "promote.yaml"
    hop = load_plan(
        path, environ={"SOURCE_WORKSPACE": "Sales Staging", "TARGET_WORKSPACE": "Sales Prod"}
    )
    assert hop.source is not None
    assert (hop.source.workspace, hop.target.workspace) == ("Sales Staging", "Sales Prod")

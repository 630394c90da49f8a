"""Adversarial tests of `on_conflict: replace` (docs/contract.md A7) against a hostile server:
dropped import answers seen through a lagging listing, with and without duplicate refusal."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import apply, results
from tests.test_replace import embeds_by_name, promoted

CHANGED = ("kpi-core", "sales-overview", "customer-churn")


@pytest.mark.parametrize("refuses_duplicates", [True, False])
def test_dropped_imports_behind_a_lagging_listing_land_once(
    tmp_path: Path, refuses_duplicates: bool
) -> None:
    """Every import answer is lost after the commit and listings lag: each changed dashboard
    is still imported exactly once (read back by id, not by listing), updated, embeds kept."""
    sandbox, update, _ = promoted(tmp_path)
    before = embeds_by_name(sandbox)
    sandbox.faults.listing_lag = 3
    sandbox.faults.drop_rate = 1.0
    sandbox.modes.no_duplicate_refusal = not refuses_duplicates
    report = apply(update, tmp_path)
    sandbox.faults.drop_rate = 0.0
    assert {results(report)[d] for d in CHANGED} == {"updated"}, report.outcomes
    ids = [dash_id for dash_id, _ in sandbox.list_dashboards("Sales Prod")]
    for dash_id in CHANGED:
        assert ids.count(dash_id) == 1, dash_id
        assert len(sandbox.requests("import", dash_id)) == 2, dash_id  # promote + replace
    assert sorted(embeds_by_name(sandbox)) == sorted(before)

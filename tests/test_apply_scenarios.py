"""Plan's promises on the demo: plan reads the target, apply does what plan said, nothing is
written twice, and the server's re-minted ids or company-wide id rule never fool the comparison."""

from __future__ import annotations

import copy
import json
from pathlib import Path

from typer.testing import CliRunner

from migrate.cli import app
from migrate.references import find_references
from migrate.report import apply_report
from tests.helpers import actions, apply, plan, results, sandbox_of, write_plan

runner = CliRunner()


def test_plan_and_dry_run_write_nothing(tmp_path: Path) -> None:
    """plan and apply --dry-run make zero writes, and both list every dashboard as create."""
    path = write_plan(tmp_path)
    migration = plan(path, tmp_path)
    assert set(actions(migration).values()) == {"create"}
    dry = runner.invoke(app, ["--state-dir", str(tmp_path), "apply", str(path), "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "create" in dry.stdout
    assert sandbox_of(tmp_path).write_count == 0


def test_reminted_ids_are_not_drift(tmp_path: Path) -> None:
    """With the server re-minting metric ids, plan after apply says unchanged and apply writes 0."""
    sandbox = sandbox_of(tmp_path)
    sandbox.modes.remint_ids = True
    path = write_plan(tmp_path)
    first = apply(path, tmp_path)
    assert set(results(first).values()) == {"created"}, first.outcomes
    source = sandbox.get_dashboard("Sales Dev", "kpi-core")
    target = sandbox.get_dashboard("Sales Prod", "kpi-core")
    assert source and target
    assert source["metrics"][0]["id"] != target["metrics"][0]["id"]  # really re-minted
    assert set(actions(plan(path, tmp_path)).values()) == {"unchanged"}
    writes = sandbox.write_count
    second = apply(path, tmp_path)
    assert set(results(second).values()) == {"unchanged"}
    assert sandbox.write_count == writes


def test_broken_layout_reference_is_drift(tmp_path: Path) -> None:
    """A layout cell in the target pointing at no metric is reported, even with re-minted ids."""
    sandbox = sandbox_of(tmp_path)
    sandbox.modes.remint_ids = True
    path = write_plan(tmp_path)
    apply(path, tmp_path)
    data = copy.deepcopy(sandbox.get_dashboard("Sales Prod", "kpi-core"))
    assert data is not None
    data["layout"][0]["i"] = "00000000-0000-4000-8000-000000000000"
    sandbox.update_dashboard("Sales Prod", "kpi-core", data)
    # Without history of the deploy, today's rules: the difference is skipped.
    assert actions(plan(path, tmp_path, history_dir=tmp_path / "none"))["kpi-core"] == "skip"
    # With it, the edit since the deploy is drift: a conflict (on_drift: fail).
    drifted = next(d for d in plan(path, tmp_path).dashboards if d.id == "kpi-core")
    assert drifted.action.value == "conflict" and drifted.drifted


def test_company_unique_ids_conflict_with_fix_and_no_retry(tmp_path: Path) -> None:
    """Ids held by another workspace of the company: conflict with the id_prefix fix, exit 6, one
    import attempt each; with id_prefix the same migration succeeds."""
    sandbox = sandbox_of(tmp_path)
    sandbox.modes.company_unique_ids = True
    path = write_plan(tmp_path)
    result = runner.invoke(
        app,
        ["--state-dir", str(tmp_path), "apply", str(path), "--report", str(tmp_path / "r.json")],
    )
    assert result.exit_code == 6, result.output
    report = json.loads((tmp_path / "r.json").read_text())
    conflicts = [d for d in report["dashboards"] if d["result"] == "conflict"]
    assert conflicts, report["dashboards"]
    assert all("id_prefix" in d["error"]["message"] for d in conflicts)
    assert {d["result"] for d in report["dashboards"]} <= {"conflict", "blocked"}
    for dash in conflicts:
        assert len(sandbox.requests("import", dash["target_id"])) == 1
    assert sandbox.write_count == 0

    prefixed = write_plan(tmp_path, settings="  id_prefix: 'prod-'\n")
    second = apply(prefixed, tmp_path)
    assert set(results(second).values()) == {"created"}
    assert all(o.target_id.startswith("prod-") for o in second.outcomes)


def test_id_prefix_rewrites_every_dashboard_reference(tmp_path: Path) -> None:
    """With id_prefix, every dashboard-id reference inside imported payloads names a target id."""
    sandbox = sandbox_of(tmp_path)
    path = write_plan(tmp_path, settings="  id_prefix: 'p-'\n")
    report = apply(path, tmp_path)
    assert report.ok
    source_ids = [i for i, _ in sandbox.list_dashboards("Sales Dev")]
    target_ids = [i for i, _ in sandbox.list_dashboards("Sales Prod")]
    assert sorted(target_ids) == sorted(f"p-{i}" for i in source_ids)
    found_target_refs = 0
    for target_id in target_ids:
        data = sandbox.get_dashboard("Sales Prod", target_id)
        assert find_references(data, source_ids) == []
        found_target_refs += len(find_references(data, target_ids))
    assert found_target_refs > 0  # the demo has cross-dashboard links


def test_edited_target_is_skip_with_diff_or_conflict(tmp_path: Path) -> None:
    """Editing a target copy makes plan say skip with a diff (others unchanged) when no deploy
    history knows it, conflict (drift) when one does; with on_conflict: fail it is conflict,
    plan exits 6 and apply exits 6."""
    sandbox = sandbox_of(tmp_path)
    path = write_plan(tmp_path)
    assert apply(path, tmp_path).ok
    data = copy.deepcopy(sandbox.get_dashboard("Sales Prod", "sales-overview"))
    assert data is not None
    data["metrics"][0]["name"] = "Edited in the UI"
    sandbox.update_dashboard("Sales Prod", "sales-overview", data)
    # The deploy history sees the edit: drift, a conflict by default (docs/contract.md A9).
    assert actions(plan(path, tmp_path))["sales-overview"] == "conflict"
    # Without that history, or with on_drift: skip, the difference is skipped.
    migration = plan(path, tmp_path, history_dir=tmp_path / "no-history")
    lenient = write_plan(tmp_path, settings="  on_drift: skip\n")
    assert actions(plan(lenient, tmp_path))["sales-overview"] == "skip"
    path = write_plan(tmp_path)
    acts = actions(migration)
    assert acts.pop("sales-overview") == "skip"
    assert set(acts.values()) == {"unchanged"}
    item = next(d for d in migration.dashboards if d.id == "sales-overview")
    assert any(c.path.endswith(".name") and c.after == "Edited in the UI" for c in item.changes)

    strict = write_plan(tmp_path, settings="  on_conflict: fail\n")
    shown = runner.invoke(app, ["--state-dir", str(tmp_path), "plan", str(strict)])
    assert shown.exit_code == 6
    assert "conflict" in shown.stdout and "Edited in the UI" in shown.stdout
    applied = runner.invoke(app, ["--state-dir", str(tmp_path), "apply", str(strict)])
    assert applied.exit_code == 6


def test_selection_blocks_missing_dependency(tmp_path: Path) -> None:
    """Selecting a dashboard without its dependencies blocks it; +ID brings them along."""
    path = write_plan(tmp_path)
    alone = plan(path, tmp_path, selectors=("exec-summary",))
    assert actions(alone) == {"exec-summary": "blocked"}
    with_deps = plan(path, tmp_path, selectors=("+exec-summary",))
    assert len(with_deps.dashboards) > 1
    assert set(actions(with_deps).values()) == {"create"}
    assert with_deps.dashboards[-1].id == "exec-summary"


def test_plan_previews_schema_pairs_and_warns_on_a_typo(tmp_path: Path) -> None:
    """plan shows how many places each schema pair touches, and warns about one touching none."""
    path = write_plan(
        tmp_path,
        settings="  schema_pairs:\n    - {replace: analytics_dev, target: analytics}\n"
        "    - {replace: analytcs_dev, target: analytics}\n",
    )
    shown = runner.invoke(app, ["--state-dir", str(tmp_path), "plan", str(path)])
    assert shown.exit_code == 0, shown.output
    assert "analytics_dev → analytics:" in shown.stdout
    assert "analytcs_dev → analytics: 0 places in 0 dashboards" in shown.stdout
    assert "schema pair 'analytcs_dev' matches nothing" in shown.stderr
    as_json = runner.invoke(app, ["--state-dir", str(tmp_path), "plan", str(path), "-f", "json"])
    pairs = json.loads(as_json.stdout)["schema_pairs"]
    assert {p["replace"]: p["occurrences"] > 0 for p in pairs} == {
        "analytics_dev": True,
        "analytcs_dev": False,
    }


def test_deferred_dependency_on_nothing_is_a_located_plan_error(tmp_path: Path) -> None:
    """A depends_on beside a glob names nothing once the inventory is known: exit 3, naming
    the plan file and the missing dashboard."""
    path = write_plan(tmp_path, dashboards='  - match: "region-*"\n    depends_on: [nope]\n')
    result = runner.invoke(app, ["--state-dir", str(tmp_path), "plan", str(path)])
    assert result.exit_code == 3, result.output
    assert str(path) in result.stderr and "'nope'" in result.stderr
    assert sandbox_of(tmp_path).write_count == 0


def test_verify_none_skips_the_read_back_and_the_report_says_so(tmp_path: Path) -> None:
    """With settings.verify: none a created dashboard costs export + import only (no read-back
    export of the target), and the report's `verify` is `none`; the default reads back."""
    for verify, exports_per_created in (("none", 1), ("readback", 2)):
        state = tmp_path / verify
        state.mkdir()
        path = write_plan(state, settings=f"  verify: {verify}\n")
        report = apply(path, state)
        created = list(results(report).values()).count("created")
        assert created > 0
        assert apply_report(report)["verify"] == verify
        exports = len(sandbox_of(state).requests("export"))
        assert exports == exports_per_created * created

"""`on_conflict: replace` (docs/contract.md A7): changed dashboards are replaced under the same id,
their embeds re-created, nothing else touched, and nothing lost when the new version is refused."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from migrate.cli import app
from migrate.diff import normalize_for_compare
from migrate.sandbox import Sandbox
from migrate.sandbox.store import EmbedRow
from tests.helpers import actions, apply, plan, results, sandbox_of

runner = CliRunner()

CHANGED = {"kpi-core", "sales-overview", "customer-churn"}
PAIRS = "  schema_pairs: [{replace: analytics_dev, target: analytics}]\n"
APP = "Sales Prod App"


def write_plans(tmp: Path, *, data_app: str = "{name: 'Sales Prod App'}") -> tuple[Path, Path]:
    """The first promotion (Sales Dev → Sales Prod) and the update from Sales Dev Next."""
    first = tmp / "promote.yaml"
    first.write_text(
        "version: 1\n"
        "source: {url: 'sandbox://demo', workspace: 'Sales Dev'}\n"
        "target: {url: 'sandbox://demo', workspace: 'Sales Prod'}\n"
        f"settings:\n{PAIRS}"
        "dashboards:\n  - match: '*'\n"
    )
    update = tmp / "update.yaml"
    update.write_text(
        "version: 1\n"
        "source: {url: 'sandbox://demo', workspace: 'Sales Dev Next'}\n"
        f"target: {{url: 'sandbox://demo', workspace: 'Sales Prod', data_app: {data_app}}}\n"
        f"settings:\n{PAIRS}  on_conflict: replace\n"
        "dashboards:\n  - match: '*'\n"
    )
    return first, update


def add_host_embed(
    sandbox: Sandbox, dashboard_id: str, name: str, access: dict[str, object]
) -> str:
    """An embed a host application made on a target dashboard (id minted by the sandbox)."""
    embed_id = sandbox.mint_embed_id(dashboard_id)
    sandbox.store.insert_embed(
        EmbedRow(
            id=embed_id,
            data_app=APP,
            workspace="Sales Prod",
            dashboard_id=dashboard_id,
            name=name,
            type="dashboard",
            metric_id=None,
            access_settings=json.dumps(access),
            created_at="2025-01-01T00:00:00.000Z",
            updated_at="2025-01-01T00:00:00.000Z",
        )
    )
    return embed_id


def promoted(tmp: Path) -> tuple[Sandbox, Path, dict[str, tuple[str, dict[str, object]]]]:
    """Sales Prod promoted from Sales Dev, with host embeds: two on sales-overview, one on
    kpi-core, none on customer-churn. Returns the sandbox, the update plan and name → embed."""
    first, update = write_plans(tmp)
    report = apply(first, tmp)
    assert report.ok
    sandbox = sandbox_of(tmp)
    embeds: dict[str, tuple[str, dict[str, object]]] = {}
    for dashboard_id, name, access in (
        ("sales-overview", "Portal overview", {"isAllowEmailReports": True}),
        ("sales-overview", "Partner overview", {"datamartName": "sales-mart"}),
        ("kpi-core", "Portal KPIs", {"isAllowUnderlyingData": False}),
        ("exec-summary", "Exec", {}),
    ):
        embeds[name] = (add_host_embed(sandbox, dashboard_id, name, access), access)
    return sandbox, update, embeds


def embeds_by_name(sandbox: Sandbox) -> dict[str, tuple[str, str, dict[str, object]]]:
    """name → (embed id, dashboard id, access settings) of the target data app's embeds."""
    return {
        row.name: (row.id, row.dashboard_id, json.loads(row.access_settings))
        for row in sandbox.store.list_embeds(APP)
    }


def test_update_replaces_exactly_the_changed_dashboards(tmp_path: Path) -> None:
    """plan shows the three changed dashboards as update (zero writes); apply replaces each with
    one delete and one import, re-creates their embeds with names and access settings, touches
    nothing else; a second apply writes nothing."""
    sandbox, update, embeds = promoted(tmp_path)
    writes = sandbox.write_count
    before = {k: len(sandbox.requests(k)) for k in ("import", "delete_embed", "create_embed")}
    migration = plan(update, tmp_path)
    planned = actions(migration)
    assert {k for k, v in planned.items() if v == "update"} == CHANGED
    assert {v for k, v in planned.items() if k not in CHANGED} == {"unchanged"}
    overview = next(d for d in migration.dashboards if d.id == "sales-overview")
    assert overview.changes and {e.name for e in overview.embeds} == {
        "Portal overview",
        "Partner overview",
    }
    assert any("embed ids may change" in w or "ids may change" in w for w in migration.warnings)
    assert sandbox.write_count == writes
    assert {k: len(sandbox.requests(k)) for k in before} == before

    report = apply(update, tmp_path)
    assert report.ok, [(o.id, o.result, o.error) for o in report.outcomes]
    got = results(report)
    assert {k for k, v in got.items() if v == "updated"} == CHANGED
    assert {v for k, v in got.items() if k not in CHANGED} == {"unchanged"}
    for dash_id in sandbox.list_dashboards("Sales Dev Next"):
        assert normalize_for_compare(
            sandbox.get_dashboard("Sales Prod", dash_id[0])
        ) == normalize_for_compare(_expected(sandbox, dash_id[0]))
    for dash_id in CHANGED:
        assert len(sandbox.requests("delete_embed", dash_id)) == 1
        assert len(sandbox.requests("import", dash_id)) == 2  # the promotion and the replace
    untouched = {d for d, _ in sandbox.list_dashboards("Sales Prod")} - CHANGED
    for dash_id in untouched:
        assert len(sandbox.requests("import", dash_id)) == 1
        assert not sandbox.requests("delete_embed", dash_id)
    now = embeds_by_name(sandbox)
    assert set(now) == set(embeds)  # same names, no temporary embed left
    for name, (old_id, access) in embeds.items():
        new_id, _dash, new_access = now[name]
        assert new_access == access
        if name == "Exec":
            assert new_id == old_id  # its dashboard was not replaced
    by_id = {o.id: o for o in report.outcomes}
    changes = {c.name: c for c in by_id["sales-overview"].embeds}
    assert set(changes) == {"Portal overview", "Partner overview"}
    assert changes["Portal overview"].previous_embed_id == embeds["Portal overview"][0]
    assert changes["Portal overview"].embed_id == now["Portal overview"][0]
    assert by_id["customer-churn"].embeds == ()

    writes = sandbox.write_count
    creates = len(sandbox.requests("create_embed"))
    again = apply(update, tmp_path)
    assert set(results(again).values()) == {"unchanged"}
    assert sandbox.write_count == writes
    assert len(sandbox.requests("create_embed")) == creates
    assert not sandbox.requests("delete_embed", "kpi-core")[1:]


def _expected(sandbox: Sandbox, dash_id: str) -> object:
    """What the target should hold for `dash_id`: the Sales Dev Next version, schema renamed."""
    text = json.dumps(sandbox.get_dashboard("Sales Dev Next", dash_id))
    return json.loads(text.replace("analytics_dev", "analytics"))


def test_replace_without_data_app_is_a_plan_error(tmp_path: Path) -> None:
    """on_conflict: replace without target.data_app exits 3 and names the fix."""
    path = tmp_path / "p.yaml"
    path.write_text(
        "version: 1\n"
        "source: {url: 'sandbox://demo', workspace: 'Sales Dev'}\n"
        "target: {url: 'sandbox://demo', workspace: 'Sales Prod'}\n"
        "settings: {on_conflict: replace}\n"
        "dashboards:\n  - match: '*'\n"
    )
    result = runner.invoke(app, ["--state-dir", str(tmp_path), "plan", str(path)])
    assert result.exit_code == 3, result.output
    assert "data_app" in result.output


def test_bad_data_app_key_exits_5_before_any_write(tmp_path: Path) -> None:
    """A wrong data-app key: exit 5 naming the data app, zero writes, the key never shown."""
    first, _ = write_plans(tmp_path)
    assert apply(first, tmp_path).ok
    _, update = write_plans(tmp_path, data_app="{name: 'Sales Prod App', key_env: APP_KEY}")
    sandbox = sandbox_of(tmp_path)
    writes = sandbox.write_count
    result = runner.invoke(
        app,
        ["--state-dir", str(tmp_path), "apply", str(update)],
        env={"APP_KEY": "wrong-key-123456"},
    )
    assert result.exit_code == 5, result.output
    assert "bad credentials for data app" in result.output
    assert "wrong-key-123456" not in result.output
    assert sandbox.write_count == writes
    assert not sandbox.requests("delete_embed")


def test_plan_detailed_exitcode_is_10_for_updates(tmp_path: Path) -> None:
    """plan --detailed-exitcode exits 10 when the only work is updates, and lists them."""
    _sandbox, update, _ = promoted(tmp_path)
    result = runner.invoke(
        app, ["--state-dir", str(tmp_path), "plan", str(update), "--detailed-exitcode"]
    )
    assert result.exit_code == 10, result.output
    assert "update" in result.output


def test_refused_new_version_restores_the_previous_one(tmp_path: Path) -> None:
    """The server refusing a new version for good: the snapshot is imported again, the embeds
    re-created, the result failed saying the previous version was restored, exit 6."""
    sandbox, update, embeds = promoted(tmp_path)
    previous = normalize_for_compare(sandbox.get_dashboard("Sales Prod", "sales-overview"))
    sandbox.faults.refuse_import_ids = {"sales-overview"}
    report_path = tmp_path / "report.json"
    result = runner.invoke(
        app,
        ["--state-dir", str(tmp_path), "apply", str(update), "--report", str(report_path)],
    )
    assert result.exit_code == 6, result.output
    report = json.loads(report_path.read_text())
    entry = next(d for d in report["dashboards"] if d["id"] == "sales-overview")
    assert entry["result"] == "failed"
    assert "previous version was restored" in entry["error"]["message"]
    assert normalize_for_compare(sandbox.get_dashboard("Sales Prod", "sales-overview")) == previous
    now = embeds_by_name(sandbox)
    assert set(now) == set(embeds)
    assert {name for name, (_, dash, _) in now.items() if dash == "sales-overview"} == {
        "Portal overview",
        "Partner overview",
    }
    others = {d["result"] for d in report["dashboards"] if d["id"] in CHANGED - {"sales-overview"}}
    assert others == {"updated"}
    assert len(sandbox.list_dashboards("Sales Prod")) == len(
        {d for d, _ in sandbox.list_dashboards("Sales Prod")}
    )


def test_reports_list_embeds_and_changed_ids(tmp_path: Path) -> None:
    """The JSON report gives each replaced dashboard's embeds, the Markdown summary lists the
    changed embed ids, JUnit counts updated as passed."""
    _sandbox, update, embeds = promoted(tmp_path)
    files = {name: tmp_path / name for name in ("r.json", "s.md", "j.xml")}
    result = runner.invoke(
        app,
        [
            "--state-dir",
            str(tmp_path),
            "apply",
            str(update),
            "--report",
            str(files["r.json"]),
            "--summary",
            str(files["s.md"]),
            "--junit",
            str(files["j.xml"]),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(files["r.json"].read_text())
    kpi = next(d for d in report["dashboards"] if d["id"] == "kpi-core")
    assert kpi["result"] == "updated"
    assert [e["name"] for e in kpi["embeds"]] == ["Portal KPIs"]
    assert kpi["embeds"][0]["previous_embed_id"] == embeds["Portal KPIs"][0]
    summary = files["s.md"].read_text()
    # The delete took the embed with the dashboard: the re-created one has a new id, and the
    # summary names both so host applications can be updated.
    assert kpi["embeds"][0]["embed_id"] not in (None, embeds["Portal KPIs"][0])
    assert embeds["Portal KPIs"][0] in summary and kpi["embeds"][0]["embed_id"] in summary
    junit = files["j.xml"].read_text()
    assert 'failures="0"' in junit


def test_readme_update_in_one_command(tmp_path: Path) -> None:
    """README: after `migrate apply plans/demo.yaml`, `migrate apply plans/demo-update.yaml`
    reports 3 updated and the rest unchanged."""
    root = Path(__file__).resolve().parent.parent
    base = ["--state-dir", str(tmp_path), "apply"]
    first = runner.invoke(app, [*base, str(root / "plans" / "demo.yaml")])
    assert first.exit_code == 0, first.output
    second = runner.invoke(app, [*base, str(root / "plans" / "demo-update.yaml")])
    assert second.exit_code == 0, second.output
    assert "3 updated, 11 unchanged" in second.output


def test_embeds_a_killed_replace_took_survive_a_source_change(tmp_path: Path) -> None:
    """Killed after its import but before re-creating embeds, with the source changed before the
    rerun: the rerun replaces again and still re-creates the embeds the first delete took."""
    sandbox, update, embeds = promoted(tmp_path)
    report = apply(update, tmp_path)
    assert results(report)["sales-overview"] == "updated"
    # The state a kill right after the delete's confirmation leaves: the journal ends at the
    # `deleted` record of sales-overview, and the embeds the delete took are not back yet.
    (journal,) = (tmp_path / "journal").glob("*.jsonl")
    lines = journal.read_text().splitlines()
    cut = next(
        i
        for i, line in enumerate(lines)
        if '"replace"' in line and '"sales-overview"' in line and '"step":"deleted"' in line
    )
    journal.write_text("\n".join(lines[: cut + 1]) + "\n")
    for row in sandbox.store.list_embeds(APP):
        if row.dashboard_id == "sales-overview":
            sandbox.store.delete_embed(APP, row.id, delete_dashboard=False)
    # Meanwhile the source moves on: the rerun must replace again.
    data = sandbox.get_dashboard("Sales Dev Next", "sales-overview")
    assert data is not None
    data["description"] = "third version"
    sandbox.update_dashboard("Sales Dev Next", "sales-overview", data)

    again = apply(update, tmp_path)
    assert results(again)["sales-overview"] == "updated"
    now = embeds_by_name(sandbox)
    for name in ("Portal overview", "Partner overview"):
        assert now[name][1] == "sales-overview" and now[name][2] == embeds[name][1]
    assert not any(name.startswith("migrate-temp") for name in now)

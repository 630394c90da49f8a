"""Deploy history, drift and rollback (docs/contract.md A9): every apply that writes is a
deploy record with provenance and snapshots; an edit made in the target is seen by a plan that
shares only the history; a rollback restores what a deploy left and is a deploy itself."""

from __future__ import annotations

import json
import os
import signal
import stat
import time
from pathlib import Path

from typer.testing import CliRunner

from migrate.cli import app
from migrate.diff import normalize_for_compare
from migrate.sandbox import Sandbox, SandboxConfig, running_server
from migrate.sandbox import create_app as create_sandbox
from tests.helpers import run_migrate, start_migrate

cli = CliRunner()
ENV = {"KTOK": "tk-history", "APP_KEY": "demo-prod-app-key", "GITHUB_SHA": "", "CI_COMMIT_SHA": ""}
CHANGED = {"kpi-core", "sales-overview", "customer-churn"}


def write_plan(path: Path, url: str, source: str, *, drift: str = "fail") -> Path:
    """A replace plan from `source` to Sales Prod on the real server."""
    path.write_text(
        "version: 1\n"
        f"source: {{url: '{url}', workspace: '{source}', token_env: KTOK}}\n"
        f"target: {{url: '{url}', workspace: 'Sales Prod', token_env: KTOK,"
        " data_app: {name: 'Sales Prod App', key_env: APP_KEY}}\n"
        "settings:\n  concurrency: 2\n  on_conflict: replace\n"
        f"  on_drift: {drift}\n"
        "dashboards:\n  - match: '*'\n"
    )
    return path


def prod(sandbox: Sandbox) -> dict[str, object]:
    """Sales Prod's dashboards, normalized."""
    return {
        dash_id: normalize_for_compare(sandbox.get_dashboard("Sales Prod", dash_id))
        for dash_id, _ in sandbox.list_dashboards("Sales Prod")
    }


def deploys(state: Path, plan: Path, history: Path) -> list[dict[str, object]]:
    """`migrate history --format json`'s deploys, newest first."""
    done = run_migrate(
        "--state-dir",
        str(state),
        "history",
        str(plan),
        "--history",
        str(history),
        "-f",
        "json",
        env=ENV,
    )
    assert done.returncode == 0, done.stderr
    found: list[dict[str, object]] = json.loads(done.stdout)["deploys"]
    return found


def test_deploy_drift_overwrite_and_rollback(tmp_path: Path) -> None:
    """Deploy, change, deploy: history lists both with counts and provenance; an edit in the
    target is a conflict with both diffs from another state dir sharing only the history;
    overwrite takes it over; rollback to the first deploy restores what it left and is a
    deploy of its own."""
    server = create_sandbox(
        SandboxConfig(db_path=tmp_path / "srv.db", token="tk-history", seed="demo")
    )
    sandbox: Sandbox = server.state.sandbox
    history = tmp_path / "history"
    one, two = tmp_path / "state-a", tmp_path / "state-b"
    old_umask = os.umask(0o000)
    try:
        with running_server(server) as url:
            first = write_plan(tmp_path / "first.yaml", url, "Sales Dev")
            update = write_plan(tmp_path / "update.yaml", url, "Sales Dev Next")
            base = ("--history", str(history))
            done = run_migrate(
                "--state-dir", str(one), "apply", str(first), *base, "--note", "c1", env=ENV
            )
            assert done.returncode == 0, done.stderr
            after_first = prod(sandbox)
            env = {**ENV, "GITHUB_SHA": "c2sha", "GITHUB_ACTOR": "octo"}
            done = run_migrate("--state-dir", str(one), "apply", str(update), *base, env=env)
            assert done.returncode == 0, done.stderr
            listed = deploys(one, update, history)
            assert [d["commit"] for d in listed] == ["c2sha", "c1"]
            assert listed[0]["actor"] == "octo"
            assert listed[0]["counts"] == {"updated": 3, "unchanged": 11}
            assert listed[1]["counts"] == {"created": 14}
            for deploy in listed:
                assert len(str(deploy["plan_sha256"])) == 64
                assert deploy["bundle_manifest_sha256"] is None
            updated = [d for d in listed[0]["dashboards"] if d["result"] == "updated"]  # type: ignore[union-attr]
            assert {d["id"] for d in updated} == CHANGED
            assert all(d["snapshot"] and d["snapshot_before"] and d["sha256"] for d in updated)

            # Someone edits kpi-core in the target.
            data = sandbox.get_dashboard("Sales Prod", "kpi-core")
            assert data is not None
            data["name"] = "Edited in prod"
            sandbox.update_dashboard("Sales Prod", "kpi-core", data)
            writes = sandbox.write_count
            planned = run_migrate(
                "--state-dir", str(two), "plan", str(update), *base, "-f", "json", env=ENV
            )
            assert planned.returncode == 6, planned.stderr
            kpi = next(d for d in json.loads(planned.stdout)["dashboards"] if d["id"] == "kpi-core")
            assert kpi["action"] == "conflict" and kpi["drifted"] is True
            assert [c["path"] for c in kpi["drift"]["deployed_to_target"]] == ["data.name"]
            assert kpi["drift"]["deployed_to_target"][0]["after"] == "Edited in prod"
            assert kpi["drift"]["deployed_to_source"] == []
            applied = run_migrate("--state-dir", str(two), "apply", str(update), *base, env=ENV)
            assert applied.returncode == 6
            assert sandbox.write_count == writes  # nothing else to do, and the edit kept

            over = write_plan(tmp_path / "over.yaml", url, "Sales Dev Next", drift="overwrite")
            done = run_migrate("--state-dir", str(two), "apply", str(over), *base, env=ENV)
            assert done.returncode == 0, done.stderr
            kpi_now = sandbox.get_dashboard("Sales Prod", "kpi-core")
            assert kpi_now is not None and kpi_now["name"] != "Edited in prod"

            first_id = str(listed[-1]["deploy_id"])
            writes, before_dry = sandbox.write_count, prod(sandbox)
            dry = run_migrate(
                "--state-dir",
                str(two),
                "rollback",
                str(update),
                "--to",
                first_id,
                *base,
                "--dry-run",
                env=ENV,
            )
            assert dry.returncode == 0, dry.stderr
            assert sandbox.write_count == writes and prod(sandbox) == before_dry != after_first
            done = run_migrate(
                "--state-dir", str(two), "rollback", str(update), "--to", first_id, *base, env=ENV
            )
            assert done.returncode == 0, done.stderr
            assert prod(sandbox) == after_first
            latest = deploys(two, update, history)[0]
            assert latest["rollback_of"] == first_id
            assert latest["counts"] == {"updated": 3, "unchanged": 11}

            unknown = run_migrate(
                "--state-dir",
                str(two),
                "rollback",
                str(update),
                "--to",
                "20200101T000000.000Z-abcdef",
                *base,
                env=ENV,
            )
            assert unknown.returncode == 3 and "20200101T000000.000Z-abcdef" in unknown.stderr
    finally:
        os.umask(old_umask)
    for path in [history, *history.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))
        if path.is_file():
            assert b"tk-history" not in path.read_bytes()
            assert b"demo-prod-app-key" not in path.read_bytes()


def test_a_missing_snapshot_stops_the_rollback_before_any_write(tmp_path: Path) -> None:
    """A rollback whose snapshot is gone is exit 3 naming the dashboard, with zero writes."""
    server = create_sandbox(
        SandboxConfig(db_path=tmp_path / "srv.db", token="tk-history", seed="demo")
    )
    sandbox: Sandbox = server.state.sandbox
    state = tmp_path / "state"
    with running_server(server) as url:
        first = write_plan(tmp_path / "first.yaml", url, "Sales Dev")
        assert run_migrate("--state-dir", str(state), "apply", str(first), env=ENV).returncode == 0
        deploy = deploys(state, first, state / "history")[0]
        kpi = next(d for d in deploy["dashboards"] if d["id"] == "kpi-core")  # type: ignore[union-attr]
        snapshot = next((state / "history").rglob(f"{kpi['snapshot']}.json"))
        snapshot.unlink()
        writes = sandbox.write_count
        done = run_migrate(
            "--state-dir",
            str(state),
            "rollback",
            str(first),
            "--to",
            str(deploy["deploy_id"]),
            env=ENV,
        )
        assert done.returncode == 3, done.stderr
        assert "kpi-core" in done.stderr and "snapshot" in done.stderr
        assert sandbox.write_count == writes


def test_sigkill_during_rollback_then_rerun_finishes_it_once(tmp_path: Path) -> None:
    """A rollback killed after its first write is finished by the re-run: each changed
    dashboard deleted once and imported once more, the target equal to the first deploy."""
    server = create_sandbox(
        SandboxConfig(db_path=tmp_path / "srv.db", token="tk-history", seed="demo")
    )
    sandbox: Sandbox = server.state.sandbox
    sandbox.faults.latency_ms = 5
    state = tmp_path / "state"
    with running_server(server) as url:
        first = write_plan(tmp_path / "first.yaml", url, "Sales Dev")
        update = write_plan(tmp_path / "update.yaml", url, "Sales Dev Next")
        assert run_migrate("--state-dir", str(state), "apply", str(first), env=ENV).returncode == 0
        after_first = prod(sandbox)
        assert run_migrate("--state-dir", str(state), "apply", str(update), env=ENV).returncode == 0
        first_id = str(deploys(state, update, state / "history")[-1]["deploy_id"])
        writes = ("import", "create_embed", "delete_embed")

        def count() -> int:
            return sum(len(sandbox.requests(kind)) for kind in writes)  # type: ignore[arg-type]

        reach = count() + 2
        proc = start_migrate(
            "--state-dir",
            str(state),
            "rollback",
            str(update),
            "--to",
            first_id,
            env=ENV,
            capture=False,
        )
        deadline = time.monotonic() + 60
        while count() < reach and proc.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.002)
        assert proc.poll() is None, "the rollback ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        while sandbox.in_flight:
            time.sleep(0.002)
        done = run_migrate(
            "--state-dir", str(state), "rollback", str(update), "--to", first_id, env=ENV
        )
        assert done.returncode == 0, done.stderr
        assert prod(sandbox) == after_first
        for dash_id in CHANGED:
            assert len(sandbox.requests("delete_embed", dash_id)) == 2, dash_id  # type: ignore[arg-type]
            assert len(sandbox.requests("import", dash_id)) == 3, dash_id  # type: ignore[arg-type]


def test_history_text_lists_deploys_newest_first(tmp_path: Path) -> None:
    """`migrate history` on a plan with no deploys says so, then lists two deploys newest
    first with their commits; `migrate schema deploy` prints the deploy record's schema."""
    plan = tmp_path / "plan.yaml"
    head = (
        "version: 1\nsource: {url: 'sandbox://demo', workspace: 'Sales Dev'}\n"
        "target: {url: 'sandbox://demo', workspace: 'Sales Prod'}\ndashboards:\n"
    )
    plan.write_text(head + "  - id: kpi-core\n")
    state = ["--state-dir", str(tmp_path / "s")]
    result = cli.invoke(app, [*state, "history", str(plan)])
    assert result.exit_code == 0, result.output
    assert "no deploy recorded" in result.stdout
    for dashboard, commit in (("kpi-core", "c-first"), ("sales-overview", "c-second")):
        plan.write_text(head + f"  - id: {dashboard}\n")
        applied = cli.invoke(app, [*state, "apply", str(plan), "--note", commit])
        assert applied.exit_code == 0, applied.output
    listed = cli.invoke(app, [*state, "history", str(plan)])
    assert listed.exit_code == 0, listed.output
    assert 0 <= listed.stdout.index("c-second") < listed.stdout.index("c-first")
    schema = cli.invoke(app, ["schema", "deploy"])
    assert schema.exit_code == 0 and "deploy_id" in json.loads(schema.stdout)["required"]


def test_a_run_that_writes_nothing_appends_nothing(tmp_path: Path) -> None:
    """The second apply of the same plan writes nothing and leaves deploys.jsonl as it was;
    a torn last line is skipped on reading and the next record starts on a line of its own."""
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "version: 1\nsource: {url: 'sandbox://demo', workspace: 'Sales Dev'}\n"
        "target: {url: 'sandbox://demo', workspace: 'Sales Prod'}\n"
        "dashboards:\n  - id: kpi-core\n"
    )
    state = tmp_path / "s"
    assert cli.invoke(app, ["--state-dir", str(state), "apply", str(plan)]).exit_code == 0
    (log,) = state.rglob("deploys.jsonl")
    first = log.read_bytes()
    assert cli.invoke(app, ["--state-dir", str(state), "apply", str(plan)]).exit_code == 0
    assert log.read_bytes() == first
    log.write_bytes(first + b'{"deploy_id": "torn')
    plan.write_text(plan.read_text() + "  - id: data-quality\n")
    assert cli.invoke(app, ["--state-dir", str(state), "apply", str(plan)]).exit_code == 0
    shown = cli.invoke(app, ["--state-dir", str(state), "history", str(plan), "-f", "json"])
    listed = json.loads(shown.stdout)["deploys"]
    assert [d["counts"] for d in listed] == [{"created": 1, "unchanged": 1}, {"created": 1}]

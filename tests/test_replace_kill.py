"""A replace killed (SIGKILL) at any step is finished by the next run (docs/contract.md A7):
every dashboard present once and equal to its source, one delete per changed dashboard, the
embeds back with their names and access settings, no temporary embed left."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from migrate.diff import normalize_for_compare
from migrate.replace import TEMP_EMBED_PREFIX
from migrate.sandbox import Sandbox, SandboxConfig, running_server
from migrate.sandbox import create_app as create_sandbox
from migrate.sandbox.store import EmbedRow
from tests.helpers import run_migrate, start_migrate

ENV = {"KTOK": "tk-replace", "APP_KEY": "demo-prod-app-key"}
CHANGED = ("kpi-core", "sales-overview", "customer-churn")
WRITES = ("import", "create_embed", "delete_embed")


def wait_until(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    """Poll `condition` until it holds; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


def writes(sandbox: Sandbox) -> int:
    """Replace writes the server has seen: imports and embed creates and deletes."""
    return sum(len(sandbox.requests(kind)) for kind in WRITES)  # type: ignore[arg-type]


def write_plan(path: Path, url: str, source: str, *, replace: bool) -> Path:
    """A plan from `source` to Sales Prod on the real server, replacing when asked."""
    app = ", data_app: {name: 'Sales Prod App', key_env: APP_KEY}" if replace else ""
    settings = "  on_conflict: replace\n" if replace else ""
    path.write_text(
        "version: 1\n"
        f"source: {{url: '{url}', workspace: '{source}', token_env: KTOK}}\n"
        f"target: {{url: '{url}', workspace: 'Sales Prod', token_env: KTOK{app}}}\n"
        f"settings:\n  concurrency: 2\n{settings}"
        "dashboards:\n  - match: '*'\n"
    )
    return path


def embeds(sandbox: Sandbox) -> dict[str, tuple[str, str]]:
    """name → (dashboard id, access settings JSON) of Sales Prod App's embeds."""
    rows = sandbox.store.list_embeds("Sales Prod App")
    assert len(rows) == len({row.name for row in rows}), "an embed was created twice"
    return {row.name: (row.dashboard_id, row.access_settings) for row in rows}


def assert_equal(sandbox: Sandbox, source: str) -> None:
    """Sales Prod holds every dashboard of `source` exactly once, with equal content."""
    ids = [dash_id for dash_id, _ in sandbox.list_dashboards("Sales Prod")]
    assert len(ids) == len(set(ids))
    assert set(ids) == {dash_id for dash_id, _ in sandbox.list_dashboards(source)}
    for dash_id in ids:
        assert normalize_for_compare(
            sandbox.get_dashboard("Sales Prod", dash_id)
        ) == normalize_for_compare(sandbox.get_dashboard(source, dash_id)), dash_id


def kill_after(proc: subprocess.Popen[str], sandbox: Sandbox, reach: int) -> bool:
    """SIGKILL `proc` once the server has seen `reach` replace writes, then let in-flight
    requests settle; False when the process ended first."""
    while writes(sandbox) < reach:
        if proc.poll() is not None:
            return False
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    wait_until(lambda: sandbox.in_flight == 0)
    return True


@pytest.mark.slow
def test_sigkill_sweep_over_the_replace_steps(tmp_path: Path) -> None:
    """Two rounds of three replaces (Dev Next over Dev, then back), each killed after every
    write the server sees; every re-run continues from the journal and the snapshots."""
    server = create_sandbox(
        SandboxConfig(db_path=tmp_path / "srv.db", token="tk-replace", seed="demo")
    )
    sandbox: Sandbox = server.state.sandbox
    sandbox.faults.latency_ms = 5
    state = tmp_path / "state"
    with running_server(server) as url:
        first = write_plan(tmp_path / "first.yaml", url, "Sales Dev", replace=False)
        done = run_migrate("--state-dir", str(state), "apply", str(first), env=ENV)
        assert done.returncode == 0, done.stderr
        for index, (dash_id, name, access) in enumerate(
            (
                ("sales-overview", "Portal overview", {"isAllowEmailReports": True}),
                ("sales-overview", "Partner overview", {"datamartName": "sales-mart"}),
                ("kpi-core", "Portal KPIs", {"isAllowUnderlyingData": False}),
            )
        ):
            sandbox.store.insert_embed(
                EmbedRow(
                    id=sandbox.mint_embed_id(dash_id),
                    data_app="Sales Prod App",
                    workspace="Sales Prod",
                    dashboard_id=dash_id,
                    name=name,
                    type="dashboard",
                    metric_id=None,
                    access_settings=json.dumps(access),
                    created_at=f"2025-01-0{index + 1}T00:00:00.000Z",
                    updated_at=f"2025-01-0{index + 1}T00:00:00.000Z",
                )
            )
        before = embeds(sandbox)
        kills = 0
        for round_, source in enumerate(("Sales Dev Next", "Sales Dev"), start=1):
            plan = write_plan(tmp_path / f"round{round_}.yaml", url, source, replace=True)
            while True:
                proc = start_migrate(
                    "--state-dir", str(state), "apply", str(plan), env=ENV, capture=False
                )
                if not kill_after(proc, sandbox, writes(sandbox) + 1):
                    assert proc.returncode == 0
                    break
                kills += 1
            done = run_migrate("--state-dir", str(state), "apply", str(plan), env=ENV)
            assert done.returncode == 0, done.stderr
            assert_equal(sandbox, source)
            for dash_id in CHANGED:
                assert len(sandbox.requests("delete_embed", dash_id)) == round_, dash_id
                assert len(sandbox.requests("import", dash_id)) == 1 + round_, dash_id
            assert embeds(sandbox) == before
            assert not any(name.startswith(TEMP_EMBED_PREFIX) for name in embeds(sandbox))
        assert kills >= 20, kills

"""The demo as a newcomer runs it: `migrate apply plans/demo.yaml` on the embedded sandbox, and the
same CLI against a real sandbox server on a loopback port."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from migrate.cli import app
from migrate.connection import embedded_app
from migrate.sandbox import SandboxConfig, running_server
from tests.helpers import run_migrate, start_migrate

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "plans" / "demo.yaml"
runner = CliRunner()


def sandbox_state(state_dir: Path) -> object:
    """The embedded demo sandbox's `Sandbox` object (shared with the CLI in this process)."""
    return embedded_app(state_dir, "demo").state.sandbox


def test_demo_apply_creates_everything_then_nothing(tmp_path: Path) -> None:
    """First apply creates every demo dashboard (exit 0); the second writes nothing (exit 0)."""
    state = tmp_path / "state"
    report = tmp_path / "report.json"
    first = runner.invoke(
        app, ["--state-dir", str(state), "apply", str(DEMO), "--report", str(report)]
    )
    assert first.exit_code == 0, first.output
    doc = json.loads(report.read_text())
    assert doc["summary"]["total"] >= 12
    assert doc["summary"]["created"] == doc["summary"]["total"]
    assert {d["result"] for d in doc["dashboards"]} == {"created"}
    assert set(doc) >= {"version", "source", "target", "started_at", "finished_at", "summary"}
    sandbox = sandbox_state(state)
    writes = sandbox.write_count  # type: ignore[attr-defined]
    assert writes == doc["summary"]["total"]

    second = runner.invoke(
        app, ["--state-dir", str(state), "apply", str(DEMO), "--report", str(report)]
    )
    assert second.exit_code == 0, second.output
    doc2 = json.loads(report.read_text())
    assert {d["result"] for d in doc2["dashboards"]} == {"unchanged"}
    assert sandbox.write_count == writes  # type: ignore[attr-defined]


def test_demo_plan_detailed_exitcode_before_and_after(tmp_path: Path) -> None:
    """plan --detailed-exitcode is 10 before the apply and 0 after it; plan never writes."""
    state = tmp_path / "state"
    args = ["--state-dir", str(state), "plan", str(DEMO), "--detailed-exitcode"]
    before = runner.invoke(app, args)
    assert before.exit_code == 10, before.output
    assert "create" in before.stdout
    assert sandbox_state(state).write_count == 0  # type: ignore[attr-defined]
    assert runner.invoke(app, ["--state-dir", str(state), "apply", str(DEMO)]).exit_code == 0
    after = runner.invoke(app, args)
    assert after.exit_code == 0, after.output
    assert "create " not in after.stdout


def test_demo_state_survives_between_processes(tmp_path: Path) -> None:
    """Two separate `python -m migrate` processes share the embedded sandbox's state."""
    args = ("--state-dir", str(tmp_path / "s"), "apply", str(DEMO))
    first = run_migrate(*args, timeout=120)
    assert first.returncode == 0, first.stderr
    assert "created" in first.stdout
    second = run_migrate(*args, timeout=120)
    assert second.returncode == 0, second.stderr
    assert "unchanged" in second.stdout and "created" not in second.stdout


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    """Block until something listens on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port}")


@pytest.mark.slow
def test_cli_against_real_sandbox_server(tmp_path: Path) -> None:
    """`migrate sandbox` on a loopback port serves `migrate inventory` and `migrate apply`."""
    port = free_port()
    env = {"SBX_TOKEN": "s3cret-e2e", "MIGRATE_SANDBOX_TOKEN": "s3cret-e2e"}
    db = str(tmp_path / "sbx.db")
    server = start_migrate(
        "sandbox", "--port", str(port), "--db", db, "--seed", "demo", env=env, capture=False
    )
    try:
        wait_for_port(port)
        url = f"http://127.0.0.1:{port}"
        inv = run_migrate(
            "inventory",
            "--url",
            url,
            "--workspace",
            "Sales Dev",
            "--token-env",
            "SBX_TOKEN",
            env=env,
            timeout=60,
        )
        assert inv.returncode == 0, inv.stderr
        assert "kpi-core" in inv.stdout
        plan = tmp_path / "plan.yaml"
        plan.write_text(
            "version: 1\n"
            f"source: {{url: '{url}', workspace: Sales Dev, token_env: SBX_TOKEN}}\n"
            f"target: {{url: '{url}', workspace: Sales Staging, token_env: SBX_TOKEN}}\n"
            "dashboards:\n  - match: 'region-*'\n  - id: sales-by-region\n"
        )
        cmd = ("--state-dir", str(tmp_path / "st"), "apply", str(plan))
        applied = run_migrate(*cmd, env=env, timeout=120)
        assert applied.returncode == 0, applied.stderr
        assert "4 created" in applied.stdout
        bad = run_migrate(*cmd, env={**env, "SBX_TOKEN": "wrong"}, timeout=60)
        assert bad.returncode == 5
        assert "SBX_TOKEN" in bad.stderr and "wrong" not in bad.stderr
    finally:
        server.terminate()
        server.wait(timeout=20)


def test_running_server_thread_serves_the_cli(tmp_path: Path) -> None:
    """A real server in a thread answers a CLI subprocess: unknown workspace is exit 5."""
    config = SandboxConfig(db_path=tmp_path / "t.db", seed="demo", token="tkn-thread")
    with running_server(config) as url:
        res = run_migrate(
            "inventory",
            "--url",
            url,
            "--workspace",
            "Nope",
            "--token-env",
            "TOK",
            env={"TOK": "tkn-thread"},
            timeout=60,
        )
    assert res.returncode == 5
    assert "'Nope'" in res.stderr and "Sales Dev" in res.stderr

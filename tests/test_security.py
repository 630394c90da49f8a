"""Security: no token leaks into output or files, transport rules hold, files are owner-only."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse
from starlette.routing import Route
from typer.testing import CliRunner

from migrate.cli import app
from migrate.client import DatabrainClient
from migrate.errors import BadResponseError
from migrate.sandbox import SandboxConfig, running_server
from migrate.sandbox import create_app as create_sandbox
from tests.helpers import run_migrate

ROOT = Path(__file__).resolve().parent.parent
CANARY = "CANARY-7f3a9c-do-not-leak"
runner = CliRunner()


def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run `python -m migrate ARGS` in a subprocess and capture everything it prints."""
    return run_migrate(*args, env=env, cwd=cwd, timeout=120)


def plan_text(url: str, target: str = "Sales Prod") -> str:
    """A plan against `url` with the token in $CANARY_TOKEN."""
    return (
        "version: 1\n"
        f"source: {{url: '{url}', workspace: Sales Dev, token_env: CANARY_TOKEN}}\n"
        f"target: {{url: '{url}', workspace: '{target}', token_env: CANARY_TOKEN}}\n"
        "dashboards:\n  - match: 'region-*'\n  - id: sales-by-region\n"
    )


@pytest.mark.slow
def test_canary_token_never_reaches_output_or_files(tmp_path: Path) -> None:
    """Every command, succeeding and failing, with --debug, against a healthy server and one
    that fails every request: the token appears in no output and in no file the tool wrote."""
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CANARY_TOKEN": CANARY}
    outputs: list[str] = []
    sandbox_app = create_sandbox(
        SandboxConfig(db_path=tmp_path / "ok.db", seed="demo", token=CANARY)
    )
    broken_app = create_sandbox(
        SandboxConfig(db_path=tmp_path / "bad.db", seed="demo", token=CANARY, fail_rate=1.0)
    )
    with running_server(sandbox_app) as url, running_server(broken_app) as bad_url:
        (work / "plan.yaml").write_text(plan_text(url))
        (work / "bad.yaml").write_text(plan_text(bad_url))
        (work / "wrongws.yaml").write_text(plan_text(url, target="Nope"))
        commands = [
            ["--debug", "plan", "plan.yaml", "--format", "json", "--out", "saved.json"],
            ["--debug", "plan", "plan.yaml", "--format", "markdown"],
            [
                "--debug",
                "apply",
                "plan.yaml",
                "--report",
                "r.json",
                "--junit",
                "j.xml",
                "--summary",
                "s.md",
            ],
            ["--debug", "apply", "plan.yaml", "--plan", "saved.json"],
            ["--debug", "apply", "plan.yaml", "--dry-run"],
            ["--debug", "graph", "plan.yaml", "--format", "json"],
            ["--debug", "validate", "plan.yaml", "r.json"],
            [
                "--debug",
                "inventory",
                "--url",
                url,
                "--workspace",
                "Sales Dev",
                "--token-env",
                "CANARY_TOKEN",
            ],
            ["--debug", "apply", "bad.yaml", "--report", "bad.json"],
            ["--debug", "plan", "bad.yaml"],
            ["--debug", "apply", "wrongws.yaml"],
            ["--debug", "export", "plan.yaml", "--out", "bundle"],
            ["--debug", "apply", "plan.yaml", "--bundle", "bundle", "--report", "b.json"],
            ["--debug", "history", "plan.yaml", "--format", "json"],
            ["--debug", "rollback", "plan.yaml", "--to", "20200101T000000.000Z-abcdef"],
            [
                "--debug",
                "inventory",
                "--url",
                bad_url,
                "--workspace",
                "Sales Dev",
                "--token-env",
                "CANARY_TOKEN",
            ],
        ]
        codes = []
        for args in commands:
            result = run(args, env, work)
            codes.append(result.returncode)
            outputs.append(result.stdout + result.stderr)
        # A wrong token: the error names the variable, not the value.
        wrong = run(["--debug", "plan", "plan.yaml"], {**env, "CANARY_TOKEN": CANARY + "x"}, work)
        outputs.append(wrong.stdout + wrong.stderr)
        assert wrong.returncode == 5 and "CANARY_TOKEN" in wrong.stderr
    assert 0 in codes and any(code not in (0, 1) for code in codes), codes
    assert 1 not in codes, list(zip(commands, codes, strict=True))
    for text in outputs:
        assert CANARY not in text
    written = [p for p in work.rglob("*") if p.is_file()]
    assert len(written) > 5
    for path in written:
        assert CANARY.encode() not in path.read_bytes(), path


def test_redirect_to_another_listener_carries_no_token(tmp_path: Path) -> None:
    """A redirect to a second loopback listener is not followed: it never sees a request."""
    seen: list[dict[str, str]] = []

    async def record(request: Request) -> JSONResponse:
        seen.append(dict(request.headers))
        return JSONResponse({"data": [], "error": None})

    catcher = Starlette(routes=[Route("/{path:path}", record, methods=["GET", "POST"])])
    with running_server(catcher) as catcher_url:

        async def bounce(request: Request) -> RedirectResponse:
            return RedirectResponse(f"{catcher_url}/api/v2/workspace", status_code=307)

        bouncer = Starlette(routes=[Route("/{path:path}", bounce, methods=["GET", "POST"])])
        with running_server(bouncer) as bounce_url:

            async def go() -> None:
                async with DatabrainClient(bounce_url, CANARY) as client:
                    await client.list_workspaces()

            with pytest.raises(BadResponseError, match="redirect"):
                asyncio.run(go())
    assert seen == []


def test_plain_http_to_remote_host_is_refused_before_connecting(tmp_path: Path) -> None:
    """http:// to a non-loopback host: exit 3 from a plan, exit 2 from a flag, no connection."""
    plan = tmp_path / "p.yaml"
    plan.write_text(plan_text("http://databrain.example.com"))
    env_token = {"CANARY_TOKEN": CANARY}
    from_plan = runner.invoke(app, ["--state-dir", str(tmp_path), "plan", str(plan)], env=env_token)
    assert from_plan.exit_code == 3, from_plan.output
    assert "plain http" in from_plan.stderr and "--allow-insecure-http" in from_plan.stderr
    from_flag = runner.invoke(
        app,
        [
            "inventory",
            "--url",
            "http://10.1.2.3",
            "--workspace",
            "W",
            "--token-env",
            "CANARY_TOKEN",
        ],
        env=env_token,
    )
    assert from_flag.exit_code == 2, from_flag.output


def test_token_file_must_be_owner_only(tmp_path: Path) -> None:
    """A token_file readable by others is refused (exit 5) without printing its content."""
    token = tmp_path / "token"
    token.write_text(CANARY)
    token.chmod(0o644)
    plan = tmp_path / "p.yaml"
    plan.write_text(
        "version: 1\n"
        "source: {url: 'https://a.example', workspace: S, token_file: token}\n"
        "target: {url: 'https://a.example', workspace: T, token_file: token}\n"
        "dashboards:\n  - id: x\n"
    )
    result = runner.invoke(app, ["--state-dir", str(tmp_path), "plan", str(plan)])
    assert result.exit_code == 5
    assert "chmod 600" in result.stderr and CANARY not in result.output


def test_state_and_reports_are_owner_only_under_umask_000(tmp_path: Path) -> None:
    """With umask 000, the state dir, journals, locks, sandbox db and reports are owner-only."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    plan = tmp_path / "p.yaml"
    plan.write_text((ROOT / "plans" / "demo.yaml").read_text())
    code = (
        "import os, sys; os.umask(0); from migrate.cli import main; "
        f"sys.argv = ['migrate', '--state-dir', {str(tmp_path / 'st')!r}, 'apply', {str(plan)!r},"
        f" '--report', {str(tmp_path / 'out' / 'r.json')!r}, '--junit',"
        f" {str(tmp_path / 'out' / 'j.xml')!r}]; main()"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    checked = 0
    for path in [*(tmp_path / "st").rglob("*"), *(tmp_path / "out").glob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        assert mode & 0o077 == 0, f"{path} is {oct(mode)}"
        checked += 1
    assert checked >= 5


SOURCE_CANARY = "CANARY-src-51d0-do-not-leak"
TARGET_CANARY = "CANARY-tgt-9e27-do-not-leak"


def echo_plan_text(source_url: str, target_url: str, extra: str = "") -> str:
    """A plan whose source and target tokens are two different canaries."""
    return (
        "version: 1\n"
        f"source: {{url: '{source_url}', workspace: Sales Dev, token_env: CANARY_SRC}}\n"
        f"target: {{url: '{target_url}', workspace: Sales Prod, token_env: CANARY_TGT}}\n"
        f"dashboards:\n  - match: 'region-*'\n  - id: sales-by-region\n{extra}"
    )


@pytest.mark.slow
def test_servers_echoing_credentials_leak_them_into_no_output_and_no_file(tmp_path: Path) -> None:
    """Source and target echo the Authorization header into listings, error bodies of exports
    and imports, HTML error pages and export payloads: neither token reaches the console, nor
    any file the tool writes (reports, JUnit, summary, saved plan, journal, bundle), and no
    command ends in an internal error."""
    work = tmp_path / "work"
    work.mkdir()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "CANARY_SRC": SOURCE_CANARY,
        "CANARY_TGT": TARGET_CANARY,
    }

    def echoing(name: str, token: str, mode: str, fail_rate: float = 0.0) -> Starlette:
        # Seed 2: the target's listing goes through, then imports meet 5xx pages.
        config = SandboxConfig(
            db_path=tmp_path / f"{name}.db",
            seed="demo",
            token=token,
            echo_credentials=mode,  # type: ignore[arg-type]  # a literal the config checks
            fail_rate=fail_rate,
            random_seed=2,
        )
        return create_sandbox(config)

    source = echoing("source", SOURCE_CANARY, "errors")
    target = echoing("target", TARGET_CANARY, "errors")
    flaky_target = echoing("flaky", TARGET_CANARY, "errors", fail_rate=0.4)
    leaky_source = echoing("leaky", SOURCE_CANARY, "all")
    with (
        running_server(source) as src,
        running_server(target) as tgt,
        running_server(flaky_target) as flaky,
        running_server(leaky_source) as leaky,
    ):
        (work / "plan.yaml").write_text(echo_plan_text(src, tgt))
        (work / "flaky.yaml").write_text(echo_plan_text(src, flaky))
        (work / "missing.yaml").write_text(echo_plan_text(src, tgt, "  - id: no-such-board\n"))
        (work / "leaky.yaml").write_text(echo_plan_text(leaky, tgt))
        outputs = ["--report", "r.json", "--junit", "j.xml", "--summary", "s.md"]
        source_env, target_env = ["--token-env", "CANARY_SRC"], ["--token-env", "CANARY_TGT"]
        commands = [
            ["--debug", "plan", "plan.yaml", "--out", "saved.json"],
            ["--debug", "plan", "plan.yaml", "--format", "markdown"],
            ["--debug", "export", "plan.yaml", "--out", "bundle"],
            ["--debug", "apply", "flaky.yaml", *outputs],
            ["--debug", "apply", "plan.yaml", "--plan", "saved.json", "--report", "p.json"],
            ["--debug", "apply", "plan.yaml", "--report", "again.json"],
            ["--debug", "apply", "plan.yaml", "--bundle", "bundle", "--report", "b.json"],
            ["--debug", "apply", "missing.yaml", "--report", "m.json", "--junit", "m.xml"],
            ["--debug", "apply", "leaky.yaml", "--report", "l.json", "--summary", "l.md"],
            ["--debug", "export", "leaky.yaml", "--out", "leaky-bundle"],
            ["--debug", "inventory", "--url", src, "--workspace", "Sales Dev", *source_env],
            ["--debug", "inventory", "--url", flaky, "--workspace", "Nope", *target_env],
        ]
        results = [run(args, env, work) for args in commands]
        requests = [r.kind for r in flaky_target.state.sandbox.requests()]
    codes = [r.returncode for r in results]
    assert 1 not in codes, [(c, r.stderr[-500:]) for c, r in zip(codes, results, strict=True)]
    assert codes[2] == 0 and codes[-3] == 5, codes  # the echoing export is refused, not written
    assert "import" in requests  # imports were answered (and some failed with echoing pages)
    for result in results:
        for canary in (SOURCE_CANARY, TARGET_CANARY):
            assert canary not in result.stdout + result.stderr
    written = [p for p in work.rglob("*") if p.is_file()]
    names = {p.name for p in written}
    assert {"r.json", "j.xml", "s.md", "saved.json", "manifest.json", "m.json"} <= names, names
    assert any(p.suffix == ".jsonl" for p in written)  # the journal
    assert "***" in (work / "bundle" / "manifest.json").read_text()  # names echoed, redacted
    for path in written:
        data = path.read_bytes()
        for canary in (SOURCE_CANARY, TARGET_CANARY):
            assert canary.encode() not in data, path

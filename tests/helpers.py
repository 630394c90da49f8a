"""Test helpers: plans on the embedded sandbox, handles on that sandbox's state, and the one way
tests start `python -m migrate` in a child process."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import yaml

from migrate.connection import ConnectionPolicy, embedded_app
from migrate.jsontext import dump_json
from migrate.models import Plan
from migrate.plan import load_plan, plan_to_document
from migrate.planner import MigrationPlan
from migrate.runner import ApplyReport, RunOptions, run_apply, run_plan
from migrate.sandbox import Sandbox
from migrate.transport import asgi_transport

ROOT = Path(__file__).resolve().parent.parent


def write_plan(
    tmp: Path,
    *,
    source: str = "Sales Dev",
    target: str = "Sales Prod",
    dashboards: str = '  - match: "*"\n',
    settings: str = "",
    name: str = "demo",
) -> Path:
    """A plan file on `sandbox://name` moving `source` to `target`."""
    text = (
        "version: 1\n"
        f"source: {{url: 'sandbox://{name}', workspace: '{source}'}}\n"
        f"target: {{url: 'sandbox://{name}', workspace: '{target}'}}\n"
        + (f"settings:\n{settings}" if settings else "")
        + f"dashboards:\n{dashboards}"
    )
    path = tmp / "plan.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def sandbox_of(state_dir: Path, name: str = "demo") -> Sandbox:
    """The embedded sandbox behind `sandbox://name` for this state dir."""
    sandbox: Sandbox = embedded_app(state_dir, name).state.sandbox
    return sandbox


def apply(plan: Path, state_dir: Path, **options: Any) -> ApplyReport:
    """run_apply on a plan file."""
    opts = RunOptions(policy=ConnectionPolicy(state_dir=state_dir), **options)
    return asyncio.run(run_apply(load_plan(plan), opts))


def plan(plan_path: Path, state_dir: Path, **options: Any) -> MigrationPlan:
    """run_plan on a plan file."""
    opts = RunOptions(policy=ConnectionPolicy(state_dir=state_dir), **options)
    return asyncio.run(run_plan(load_plan(plan_path), opts))


def results(report: ApplyReport) -> dict[str, str]:
    """dashboard id → result value."""
    return {o.id: o.result.value for o in report.outcomes}


def actions(migration: MigrationPlan) -> dict[str, str]:
    """dashboard id → action value."""
    return {d.id: d.action.value for d in migration.dashboards}


class _PlanDumper(yaml.SafeDumper):
    """Quotes what the plan loader reads as a YAML 1.2 number (`0E0`, `1e-3`)."""


_PlanDumper.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def dump_plan(plan: Plan) -> str:
    """`plan` as YAML text that `parse_plan` reads back into an equal Plan."""
    return yaml.dump(
        plan_to_document(plan), Dumper=_PlanDumper, sort_keys=False, allow_unicode=True
    )


def migrate_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a child `migrate`: ours, minus any real DATABRAIN_* credentials, with
    this checkout importable, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATABRAIN")}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra or {})
    return env


def start_migrate(
    *args: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    capture: bool = True,
) -> subprocess.Popen[str]:
    """`python -m migrate ARGS` in a child process (env as `migrate_env(env)`); its output piped
    when `capture`, else discarded."""
    sink = subprocess.PIPE if capture else subprocess.DEVNULL
    return subprocess.Popen(
        [sys.executable, "-m", "migrate", *args],
        env=migrate_env(env),
        cwd=cwd,
        stdout=sink,
        stderr=sink,
        text=True,
    )


def run_migrate(
    *args: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """Run `python -m migrate ARGS` to its end and capture what it prints."""
    proc = start_migrate(*args, env=env, cwd=cwd)
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


class ExportWire(httpx.AsyncBaseTransport):
    """The sandbox app behind a recorder of import bodies that answers exports of the source
    workspace "Src" with given bytes (a server that writes its JSON as it likes)."""

    IMPORT = "/api/v2/data-app/import-dashboard"
    EXPORT = "/api/v2/data-app/export-dashboard"

    def __init__(self, app: Any, exports: dict[str, bytes]) -> None:
        self.inner = asgi_transport(app)
        self.exports = exports
        self.imports: list[bytes] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = request.content
        if request.url.path == self.IMPORT:
            self.imports.append(body)
        if request.url.path == self.EXPORT and b'"workspaceName":"Src"' in body:
            for dash_id, raw in self.exports.items():
                if dump_json(dash_id) in body:
                    return httpx.Response(
                        200, content=raw, headers={"Content-Type": "application/json"}
                    )
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()

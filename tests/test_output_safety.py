"""What the tool prints and writes stays safe and usable whatever the server sends, saved plans
record the plan as expanded, and ordinary local trouble ends in a clean message and exit code."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from typer.testing import CliRunner

from migrate.cli import app
from migrate.sandbox import SandboxConfig, running_server
from migrate.sandbox import create_app as create_sandbox
from migrate.sandbox.seed import demo_dashboards
from tests.helpers import sandbox_of, write_plan

ROOT = Path(__file__).resolve().parent.parent

runner = CliRunner()

PAIRS = "  schema_pairs:\n    - {replace: analytics, target: '${PROD_SCHEMA}'}\n"


def test_saved_plan_is_stale_when_an_env_value_in_the_plan_changed(tmp_path: Path) -> None:
    """A plan whose schema pair comes from ${PROD_SCHEMA}, saved with one value and applied with
    another, is refused as stale (exit 7) and nothing is imported; the same value applies."""
    state = str(tmp_path / "state")
    plan = write_plan(tmp_path, dashboards="  - id: sales-by-region\n", settings=PAIRS)
    saved = tmp_path / "saved.json"
    made = runner.invoke(
        app,
        ["--state-dir", state, "plan", str(plan), "--out", str(saved)],
        env={"PROD_SCHEMA": "prod_a"},
    )
    assert made.exit_code == 0, made.output
    stale = runner.invoke(
        app,
        ["--state-dir", state, "apply", str(plan), "--plan", str(saved)],
        env={"PROD_SCHEMA": "prod_b"},
    )
    assert stale.exit_code == 7, stale.output
    assert "environment variable" in stale.stderr
    assert sandbox_of(Path(state)).write_count == 0
    same = runner.invoke(
        app,
        ["--state-dir", state, "apply", str(plan), "--plan", str(saved)],
        env={"PROD_SCHEMA": "prod_a"},
    )
    assert same.exit_code == 0, same.output
    assert re.fullmatch(r"[0-9a-f]{64}", json.loads(saved.read_text())["plan"]["expanded_sha256"])


# --- a server whose ids and names are hostile --------------------------------------------------

SURROGATE_ID = "bad\ud800id"
INJECTION_ID = (
    "evil\x1b[31m\x9b2J <script>x</script> [l](https://evil.example)"
    " ![i](https://evil.example/i.png)\n::error file=x.py::pwned"
)
LONG_ID = "L" * 5000
HOSTILE_NAME = (
    "<script>alert(1)</script> [click](https://evil.example) ![x](https://evil.example/x.png)"
)


def hostile_app() -> Starlette:
    """A Databrain-shaped server whose dashboards have a lone-surrogate id, an id carrying
    terminal escapes and a GitHub Actions command, and a 5,000-character id; names hold HTML,
    a Markdown link and a remote image. Exports and imports work."""
    _, _, payload = demo_dashboards()[0]
    boards: dict[str, dict[str, Any]] = {"Sales Dev": {}, "Sales Prod": {}}
    for dash_id in (SURROGATE_ID, INJECTION_ID, LONG_ID):
        boards["Sales Dev"][dash_id] = dict(payload)

    def answer(document: Any, status: int = 200) -> Response:
        # ensure_ascii: a lone surrogate travels as its \ud800 escape, as valid JSON allows.
        return Response(json.dumps(document).encode(), status, media_type="application/json")

    async def listing(request: Request) -> Response:
        body = json.loads(await request.body())
        held = boards.get(body["workspaceName"], {})
        ids = sorted(held)[(body.get("pageNumber", 1) - 1) * 10 :][:10]
        return answer(
            {"data": [{"name": HOSTILE_NAME, "externalDashboardId": i} for i in ids], "error": None}
        )

    async def export(request: Request) -> Response:
        body = json.loads(await request.body())
        data = boards[body["workspaceName"]].get(body["dashboardId"])
        if data is None:
            return answer({"error": {"code": "INVALID_DASHBOARD_ID", "message": "not found"}}, 400)
        meta = {"workspaceName": body["workspaceName"], "dashboardId": body["dashboardId"]}
        return answer({"_meta": meta, "data": data})

    async def import_(request: Request) -> Response:
        body = json.loads(await request.body())
        boards[body["workspaceName"]][body["dashboardId"]] = body["importDashboardData"]
        response = {"dashboardId": body["dashboardId"], "workspaceName": body["workspaceName"]}
        return answer({"data": {"response": response}, "error": None})

    return Starlette(
        routes=[
            Route("/api/v2/workspace/dashboards", listing, methods=["POST"]),
            Route("/api/v2/data-app/export-dashboard", export, methods=["POST"]),
            Route("/api/v2/data-app/import-dashboard", import_, methods=["POST"]),
        ]
    )


def cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess[bytes]:
    """`python -m migrate ARGS` in a subprocess; its output as bytes, exactly as written."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HOSTILE_TOKEN": "hostile-token-1"}
    return subprocess.run(
        [sys.executable, "-m", "migrate", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        timeout=120,
        check=False,
    )


def test_hostile_ids_and_names_are_escaped_everywhere_and_kept_whole_in_json(
    tmp_path: Path,
) -> None:
    """Against a server whose ids hold a lone surrogate, terminal escapes, a newline followed by
    `::error` and 5,000 characters, and whose names hold HTML and Markdown links: apply succeeds
    (no exit 1); the console holds no escape character, no line a CI runner reads as a command,
    no row wider than a screen; JUnit is well-formed XML; the Markdown summary holds no raw HTML,
    link or image; the JSON report keeps every id whole."""
    with running_server(hostile_app()) as url:
        (tmp_path / "plan.yaml").write_text(
            "version: 1\n"
            f"source: {{url: '{url}', workspace: Sales Dev, token_env: HOSTILE_TOKEN}}\n"
            f"target: {{url: '{url}', workspace: Sales Prod, token_env: HOSTILE_TOKEN}}\n"
            "dashboards:\n  - match: '*'\n"
        )
        planned = cli(["plan", "plan.yaml"], tmp_path)
        applied = cli(
            ["apply", "plan.yaml", "--report", "r.json", "--junit", "j.xml", "--summary", "s.md"],
            tmp_path,
        )
        listed = cli(
            ["inventory", "--url", url, "--workspace", "Sales Dev", "--token-env", "HOSTILE_TOKEN"],
            tmp_path,
        )
    for result in (planned, applied, listed):
        assert result.returncode == 0, result.stderr.decode(errors="replace")
        for stream in (result.stdout, result.stderr):
            text = stream.decode("utf-8")  # strict: a raw surrogate could not even be written
            assert "\x1b" not in text and "\x9b" not in text
            assert not any(line.lstrip().startswith("::") for line in text.splitlines())
            assert all(len(line) < 200 for line in text.splitlines()), "a row is padded"
    report = json.loads((tmp_path / "r.json").read_text())
    assert {d["id"] for d in report["dashboards"]} == {SURROGATE_ID, INJECTION_ID, LONG_ID}
    assert {d["result"] for d in report["dashboards"]} == {"created"}
    suite = ET.fromstring((tmp_path / "j.xml").read_bytes())
    assert len(suite.findall(".//testcase")) == 3
    summary = (tmp_path / "s.md").read_text()
    assert "\x1b" not in summary
    for raw in ("<script", "](https", "!["):  # inert only inside code spans
        assert raw in summary and _in_code(summary, raw), raw
    assert not any(line.lstrip().startswith("::") for line in summary.splitlines())


def _in_code(markdown: str, raw: str) -> bool:
    """True when every occurrence of `raw` in `markdown` sits inside a code span."""
    inside = re.findall(r"(`+) (.*?) \1", markdown)
    return markdown.count(raw) == sum(body.count(raw) for _, body in inside)


# --- ordinary local trouble ---------------------------------------------------------------------


def test_unwritable_output_path_is_a_usage_error_before_any_import(tmp_path: Path) -> None:
    """--report (or --junit, --summary, plan --out) where no file can be written: exit 2 naming
    the flag, before any request; nothing is imported."""
    state = tmp_path / "state"
    plan = write_plan(tmp_path, dashboards="  - id: sales-by-region\n")
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    for flag, target in (
        ("--report", blocker / "r.json"),
        ("--junit", tmp_path),
        ("--summary", blocker / "sub" / "s.md"),
    ):
        result = runner.invoke(
            app, ["--state-dir", str(state), "apply", str(plan), flag, str(target)]
        )
        assert result.exit_code == 2, result.output
        assert flag in result.stderr and "cannot write" in result.stderr
    planned = runner.invoke(
        app, ["--state-dir", str(state), "plan", str(plan), "--out", str(blocker / "saved.json")]
    )
    assert planned.exit_code == 2, planned.output
    assert sandbox_of(state).write_count == 0


def test_state_dir_that_is_a_file_is_a_clean_error(tmp_path: Path) -> None:
    """--state-dir naming a file: exit 3 naming the state dir, no traceback."""
    plan = write_plan(tmp_path, dashboards="  - id: sales-by-region\n")
    state = tmp_path / "state"
    state.write_text("not a folder")
    result = runner.invoke(app, ["--state-dir", str(state), "apply", str(plan)])
    assert result.exit_code == 3, result.output
    assert "state dir" in result.stderr and str(state) in result.stderr


def test_journal_that_is_a_symlink_or_a_folder_is_a_clean_error(tmp_path: Path) -> None:
    """A journal replaced by a symlink or a folder: exit 3 naming it, nothing imported."""
    plan = write_plan(tmp_path, dashboards="  - id: sales-by-region\n")
    for kind in ("symlink", "folder"):
        state = tmp_path / kind
        runner.invoke(app, ["--state-dir", str(state), "apply", str(plan)])  # makes the journal
        (journal,) = (state / "journal").glob("*.jsonl")
        journal.unlink()
        if kind == "symlink":
            journal.symlink_to(tmp_path / "elsewhere.jsonl")
        else:
            journal.mkdir()
        result = runner.invoke(app, ["--state-dir", str(state), "apply", str(plan)])
        assert result.exit_code == 3, result.output
        assert "journal" in result.stderr and "Traceback" not in result.output


def test_journal_write_failing_mid_run_stops_before_the_next_import(tmp_path: Path) -> None:
    """A journal that cannot grow (file size limit: EFBIG, as a full disk gives ENOSPC) ends the
    run with a clean message and exit 3, and no import is sent after the failed write."""
    sandbox_app = create_sandbox(SandboxConfig(db_path=tmp_path / "s.db", seed="demo"))
    work = tmp_path / "work"
    work.mkdir()
    limit = 700  # bytes: the journal's start record and a few intents fit, not all of them
    code = (
        "import resource, sys; from migrate.cli import main; "
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit})); "
        "sys.argv = ['migrate', 'apply', 'plan.yaml', '-c', '1']; main()"
    )
    with running_server(sandbox_app) as url:
        (work / "plan.yaml").write_text(
            "version: 1\n"
            f"source: {{url: '{url}', workspace: Sales Dev, token_env: SANDBOX_TOKEN}}\n"
            f"target: {{url: '{url}', workspace: Sales Prod, token_env: SANDBOX_TOKEN}}\n"
            "dashboards:\n  - match: '*'\n"
        )
        env = {**os.environ, "PYTHONPATH": str(ROOT), "SANDBOX_TOKEN": "sandbox-token"}
        result = subprocess.run(
            [sys.executable, "-c", code],
            env=env,
            cwd=work,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        imports = len(sandbox_app.state.sandbox.requests(kind="import"))
    assert result.returncode == 3, result.stderr
    assert "cannot write the journal" in result.stderr and "Traceback" not in result.stderr
    (journal,) = (work / ".migrate" / "journal").glob("*.jsonl")
    intents = journal.read_text().count('"event":"intent"')
    assert 0 < imports <= intents < 14  # every import sent was journaled first; then it stopped


def test_validate_bundle_rejects_a_payload_whose_meta_names_another_dashboard(
    tmp_path: Path,
) -> None:
    """A bundle whose manifest and sha256s agree but whose export `_meta.dashboardId` names
    another dashboard: validate --bundle exits 4 naming it, as apply --bundle refuses it."""
    state = str(tmp_path / "state")
    plan = write_plan(tmp_path, dashboards="  - id: sales-by-region\n")
    bundle = tmp_path / "bundle"
    made = runner.invoke(app, ["--state-dir", state, "export", str(plan), "--out", str(bundle)])
    assert made.exit_code == 0, made.output
    manifest_path = bundle / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    (entry,) = manifest["dashboards"]
    export_path = bundle / entry["file"]
    document = json.loads(export_path.read_text())
    document["_meta"]["dashboardId"] = "someone-else"
    raw = json.dumps(document).encode()
    export_path.write_bytes(raw)
    entry["sha256"] = hashlib.sha256(raw).hexdigest()
    manifest_path.write_text(json.dumps(manifest))
    checked = runner.invoke(app, ["validate", "--bundle", str(bundle)])
    assert checked.exit_code == 4, checked.output
    assert "_meta.dashboardId" in checked.output and "someone-else" in checked.output
    applied = runner.invoke(
        app, ["--state-dir", state, "apply", str(plan), "--bundle", str(bundle)]
    )
    assert applied.exit_code == 6, applied.output

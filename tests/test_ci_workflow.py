"""The CI recipe (plans/ci/github-actions.yml): valid YAML, the promotion shape of the README,
and every `migrate` command line in it run against the embedded sandbox with dummy secrets."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import yaml

from migrate.plan import load_plan
from tests.helpers import sandbox_of

ROOT = Path(__file__).parent.parent
WORKFLOW = ROOT / "plans" / "ci" / "github-actions.yml"
PLAN = ROOT / "plans" / "ci" / "promote.yaml"
_EXPR = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
VARS = {"DATABRAIN_URL": "sandbox://demo"}  # repository variables as a test run sets them


def _workflow() -> dict[Any, Any]:
    document = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def _triggers(workflow: dict[Any, Any]) -> dict[str, Any]:
    # YAML 1.1 reads the key `on` as True; GitHub reads it as "on".
    value = workflow.get("on", workflow.get(True))
    assert isinstance(value, dict)
    return value


def _scripts(job: dict[str, Any]) -> list[str]:
    return [step["run"] for step in job["steps"] if "run" in step]


def _migrate_lines(script: str) -> list[str]:
    return [line.strip() for line in script.splitlines() if line.strip().startswith("migrate ")]


def test_workflow_is_valid_yaml_with_the_promotion_shape() -> None:
    """PR → plan; push to main → export → staging → prod (behind the production environment)."""
    workflow = _workflow()
    triggers = _triggers(workflow)
    assert triggers["push"]["branches"] == ["main"]
    assert "pull_request" in triggers
    jobs = workflow["jobs"]
    assert set(jobs) == {"plan", "export", "staging", "prod"}
    assert "pull_request" in jobs["plan"]["if"]
    assert "push" in jobs["export"]["if"]
    assert jobs["staging"]["needs"] == "export"
    assert jobs["prod"]["needs"] == "staging"
    assert jobs["prod"]["environment"] == "production"
    assert workflow["permissions"] == {"contents": "read"}
    for name, job in jobs.items():
        assert job["runs-on"] == "ubuntu-latest"
        scripts = _scripts(job)
        assert any(s.strip() == "python -m pip install ." for s in scripts), name
        for step in job["steps"]:
            if "uses" in step:
                assert re.fullmatch(r"actions/[a-z-]+(/[a-z-]+)?@v\d+", step["uses"]), step["uses"]


def test_pull_request_plan_goes_to_the_step_summary_and_tolerates_exit_10() -> None:
    """The PR job runs plan --detailed-exitcode --format markdown into $GITHUB_STEP_SUMMARY."""
    (script,) = [s for s in _scripts(_workflow()["jobs"]["plan"]) if "migrate" in s]
    (line,) = _migrate_lines(script)
    assert "--detailed-exitcode" in line
    assert "--format markdown" in line
    assert '>> "$GITHUB_STEP_SUMMARY"' in line
    assert "-eq 10" in script


def test_bundle_moves_through_an_artifact() -> None:
    """export uploads the bundle folder; staging and prod download that same artifact."""
    jobs = _workflow()["jobs"]
    (upload,) = [s for s in jobs["export"]["steps"] if "upload-artifact" in s.get("uses", "")]
    name = upload["with"]["name"]
    assert upload["with"]["path"].rstrip("/") == "bundle"
    assert any(
        line.endswith("--out bundle") for line in _migrate_lines(_scripts(jobs["export"])[1])
    )
    for hop in ("staging", "prod"):
        (download,) = [s for s in jobs[hop]["steps"] if "download-artifact" in s.get("uses", "")]
        assert download["with"] == {"name": name, "path": "bundle"}
        (line,) = [ln for s in _scripts(jobs[hop]) for ln in _migrate_lines(s) if " apply " in ln]
        for flag in (
            "--bundle bundle",
            "--report ",
            "--junit ",
            '--summary "$GITHUB_STEP_SUMMARY"',
        ):
            assert flag in line, (hop, flag)


def test_one_run_at_a_time_per_target() -> None:
    """Each applying job has its own concurrency group, never cancelled mid-apply."""
    jobs = _workflow()["jobs"]
    groups = [jobs[hop]["concurrency"]["group"] for hop in ("staging", "prod")]
    assert len(set(groups)) == 2
    assert all("${{" not in group for group in groups)  # per target, not per run or branch
    assert all(
        jobs[hop]["concurrency"]["cancel-in-progress"] is False for hop in ("staging", "prod")
    )


def test_tokens_come_from_secrets_into_the_plans_token_env() -> None:
    """Secrets reach only env vars the plan names in token_env; no script mentions a secret."""
    plan = load_plan(PLAN, environ={})
    assert plan.source is not None
    token_vars = {plan.source.token_env, plan.target.token_env}
    assert token_vars == {"DATABRAIN_SOURCE_TOKEN", "DATABRAIN_TARGET_TOKEN"}
    text = WORKFLOW.read_text(encoding="utf-8")
    workflow = _workflow()
    for job in workflow["jobs"].values():
        for key, value in job.get("env", {}).items():
            if "secrets." in str(value):
                assert key in token_vars, key
        for script in _scripts(job):
            assert "${{" not in script  # no expression (nor secret) is pasted into a shell
            assert "--token" not in script
    assert "secrets." not in yaml.safe_dump(workflow.get("env", {}))
    assert text.count("secrets.") == 5  # dev+staging for plan, dev for export, one per hop
    assert "secrets.DATABRAIN_DEV_TOKEN" not in yaml.safe_dump(workflow["jobs"]["staging"])
    assert "secrets.DATABRAIN_DEV_TOKEN" not in yaml.safe_dump(workflow["jobs"]["prod"])


def test_promote_plan_is_env_driven_with_sandbox_defaults() -> None:
    """plans/ci/promote.yaml defaults to sandbox dev → staging, each part from an env var."""
    plan = load_plan(PLAN, environ={})
    assert plan.source is not None
    assert (plan.source.url, plan.source.workspace) == ("sandbox://demo", "Sales Dev")
    assert (plan.target.url, plan.target.workspace) == ("sandbox://demo", "Sales Staging")
    hop = load_plan(
        PLAN, environ={"DATABRAIN_URL": "https://api.example.com", "TARGET_WORKSPACE": "Sales Prod"}
    )
    assert hop.target.url == "https://api.example.com"
    assert hop.target.workspace == "Sales Prod"


# --- running the workflow's commands ------------------------------------------------------------


def _evaluate(expression: str) -> str:
    """The tiny part of GitHub's expression language the recipe uses: a || b || 'literal'."""
    for operand in (part.strip() for part in expression.split("||")):
        if operand.startswith("'") and operand.endswith("'"):
            value = operand[1:-1]
        elif operand.startswith("secrets."):
            value = f"dummy-{operand.removeprefix('secrets.').lower()}"
        elif operand.startswith("vars."):
            value = VARS.get(operand.removeprefix("vars."), "")
        else:
            raise AssertionError(f"unexpected expression in an env value: {expression}")
        if value:
            return value
    return ""


def _env(*maps: dict[str, Any]) -> dict[str, str]:
    merged: dict[str, str] = {}
    for mapping in maps:
        for key, value in (mapping or {}).items():
            merged[key] = _EXPR.sub(lambda m: _evaluate(m.group(1)), str(value))
    return merged


def test_every_migrate_command_in_the_workflow_runs_against_the_sandbox(tmp_path: Path) -> None:
    """Run each job's shell steps in order (PR, then push) with a `migrate` = python -m migrate."""
    workflow = _workflow()
    work = tmp_path / "repo"
    (work / "plans" / "ci").mkdir(parents=True)
    shutil.copy(PLAN, work / "plans" / "ci" / "promote.yaml")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    shim = bin_dir / "migrate"
    shim.write_text(
        "#!/bin/sh\n"
        f'"{sys.executable}" -m migrate "$@"\n'
        "rc=$?\n"
        'printf \'%s %s\\n\' "$rc" "$1" >> "$MIGRATE_SHIM_LOG"\n'
        "exit $rc\n"
    )
    shim.chmod(shim.stat().st_mode | stat.S_IXUSR)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DATABRAIN", "GITHUB"))}
    base["PATH"] = f"{bin_dir}{os.pathsep}{base.get('PATH', '')}"
    base["PYTHONPATH"] = str(ROOT)
    base["MIGRATE_SHIM_LOG"] = str(log)

    expected: list[str] = []
    summaries: dict[str, str] = {}
    for name in ("plan", "export", "staging", "prod"):  # the PR run, then the push run
        job = workflow["jobs"][name]
        summary = tmp_path / f"summary-{name}.md"
        summary.write_text("")
        for step in job["steps"]:
            script = step.get("run")
            if script is None or "pip install" in script:
                continue  # actions are GitHub's; migrate is importable from the checkout
            expected += [line.split()[1] for line in _migrate_lines(script)]
            env = {
                **base,
                **_env(workflow.get("env", {}), job.get("env", {}), step.get("env", {})),
                "GITHUB_STEP_SUMMARY": str(summary),
            }
            script_file = tmp_path / f"{name}.sh"
            script_file.write_text(script)
            done = subprocess.run(
                ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script_file)],
                cwd=work,
                env=env,
                capture_output=True,
                text=True,
                check=False,
                timeout=300,
            )
            assert done.returncode == 0, (name, step.get("name"), done.stdout, done.stderr)
        summaries[name] = summary.read_text()

    calls = log.read_text().split("\n")[:-1]
    assert [call.split()[1] for call in calls] == expected
    assert [call.split()[0] for call in calls] == ["10" if c == "plan" else "0" for c in expected]
    assert "|" in summaries["plan"]  # the Markdown plan table
    manifest = work / "bundle" / "manifest.json"
    ids = {d["id"] for d in json.loads(manifest.read_text())["dashboards"]}
    assert len(ids) == 14
    sandbox = sandbox_of(work / ".migrate")
    for hop, workspace in (("staging", "Sales Staging"), ("prod", "Sales Prod")):
        assert {i for i, _ in sandbox.list_dashboards(workspace)} == ids, hop
        assert "|" in summaries[hop]
        cases = ET.parse(work / f"junit-{hop}.xml").getroot().iter("testcase")
        assert len(list(cases)) == len(ids)
        report = json.loads((work / f"report-{hop}.json").read_text())
        digest = hashlib.sha256(manifest.read_bytes()).hexdigest()
        assert digest in json.dumps(report)  # the report proves which bundle reached the target
        assert "### Deploy history" in summaries[hop] and "14 created" in summaries[hop]


def test_history_is_kept_per_target_between_runs() -> None:
    """Each applying job restores its target's history before applying and saves it after,
    even when the apply failed, under its own key prefix; the PR plan restores staging's."""
    jobs = _workflow()["jobs"]
    prefixes = set()
    for hop in ("staging", "prod"):
        steps = jobs[hop]["steps"]
        uses = [s.get("uses", "") for s in steps]
        restore = uses.index("actions/cache/restore@v4")
        save = uses.index("actions/cache/save@v4")
        apply_at = next(i for i, s in enumerate(steps) if "migrate apply" in s.get("run", ""))
        assert restore < apply_at < save
        assert steps[save]["if"] == "always()"
        assert steps[restore]["with"]["path"] == steps[save]["with"]["path"] == ".migrate/history"
        prefix = steps[restore]["with"]["restore-keys"]
        assert steps[save]["with"]["key"].startswith(prefix)
        prefixes.add(prefix)
    assert len(prefixes) == 2
    plan_steps = jobs["plan"]["steps"]
    (restore_step,) = [s for s in plan_steps if s.get("uses") == "actions/cache/restore@v4"]
    assert restore_step["with"]["restore-keys"] == "migrate-history-staging-"

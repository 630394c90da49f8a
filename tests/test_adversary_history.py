"""Adversarial checks of deploy history, drift and rollback (docs/contract.md A9): rollback of
one selected target, tampered history files, drift edge cases, and tokens kept out of what
`history` prints."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from migrate.cli import app
from migrate.connection import embedded_app, target_key
from migrate.models import Endpoint
from migrate.sandbox import Sandbox
from migrate.snapshots import target_folder

cli = CliRunner()
KEYS = {"SK": "demo-staging-app-key", "PK": "demo-prod-app-key"}


def fleet_plan(path: Path, source: str, *, drift: str = "fail") -> Path:
    """Two targets of the embedded demo sandbox, replace on, two dashboards."""
    path.write_text(
        "version: 1\n"
        f"source: {{url: 'sandbox://demo', workspace: '{source}'}}\n"
        f"settings: {{on_conflict: replace, on_drift: {drift}}}\n"
        "targets:\n"
        "  staging: {url: 'sandbox://demo', workspace: 'Sales Staging',"
        " data_app: {name: Sales Staging App, key_env: SK}}\n"
        "  prod: {url: 'sandbox://demo', workspace: 'Sales Prod',"
        " data_app: {name: Sales Prod App, key_env: PK}}\n"
        "dashboards:\n  - id: kpi-core\n  - id: sales-overview\n"
    )
    return path


def one_plan(path: Path, source: str, *, drift: str = "fail", data_app: bool = True) -> Path:
    """One target (Sales Prod) of the embedded demo sandbox, two dashboards."""
    app_part = ", data_app: {name: Sales Prod App, key_env: PK}" if data_app else ""
    conflict = "replace" if data_app else "skip"
    path.write_text(
        "version: 1\n"
        f"source: {{url: 'sandbox://demo', workspace: '{source}'}}\n"
        f"target: {{url: 'sandbox://demo', workspace: 'Sales Prod'{app_part}}}\n"
        f"settings: {{on_conflict: {conflict}, on_drift: {drift}}}\n"
        "dashboards:\n  - id: kpi-core\n  - id: sales-overview\n"
    )
    return path


def run(state: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    """`migrate --state-dir STATE ARGS` in process."""
    return cli.invoke(app, ["--state-dir", str(state), *args], env={**KEYS, **(env or {})})


def histories(state: Path, plan: Path) -> dict[str | None, list[dict[str, Any]]]:
    """target name → its deploys, newest first (`history --format json`)."""
    shown = run(state, "history", str(plan), "-f", "json")
    assert shown.exit_code == 0, shown.output
    doc = json.loads(shown.stdout)
    if "targets" in doc:
        return {t["name"]: t["deploys"] for t in doc["targets"]}
    return {None: doc["deploys"]}


def sandbox_of(state: Path) -> Sandbox:
    """The embedded demo sandbox the in-process CLI runs against."""
    found: Sandbox = embedded_app(state, "demo").state.sandbox
    return found


def test_rollback_with_target_rolls_back_only_that_target_once(tmp_path: Path) -> None:
    """`rollback --to ID --target prod` on a `targets:` plan restores prod alone, once, as a
    record of its own; staging keeps its state and history; a re-run changes nothing."""
    state = tmp_path / "s"
    first = fleet_plan(tmp_path / "first.yaml", "Sales Dev")
    update = fleet_plan(tmp_path / "update.yaml", "Sales Dev Next")
    assert run(state, "apply", str(first)).exit_code == 0
    box = sandbox_of(state)
    after_first = {d: box.get_dashboard("Sales Prod", d) for d in ("kpi-core", "sales-overview")}
    assert run(state, "apply", str(update)).exit_code == 0
    staging_before = {
        d: box.get_dashboard("Sales Staging", d) for d in ("kpi-core", "sales-overview")
    }
    before = histories(state, update)
    first_prod = before["prod"][-1]["deploy_id"]
    done = run(state, "rollback", str(update), "--to", first_prod, "--target", "prod")
    assert done.exit_code == 0, done.output
    now = histories(state, update)
    assert now["staging"] == before["staging"]
    assert len(now["prod"]) == 3 and now["prod"][0]["rollback_of"] == first_prod
    assert now["prod"][0]["counts"] == {"updated": 2}
    assert {d: box.get_dashboard("Sales Prod", d) for d in after_first} == after_first
    assert {d: box.get_dashboard("Sales Staging", d) for d in staging_before} == staging_before
    writes = box.write_count
    again = run(state, "rollback", str(update), "--to", first_prod)
    assert again.exit_code == 0, again.output
    assert box.write_count == writes and histories(state, update) == now
    wrong = run(state, "rollback", str(update), "--to", first_prod, "--target", "staging")
    assert wrong.exit_code == 3 and "not in the history" in wrong.stderr


def _deployed(tmp_path: Path) -> tuple[Path, Path, dict[str, Any]]:
    """A one-target deploy of two dashboards: (state dir, plan, its history record)."""
    state = tmp_path / "s"
    plan = one_plan(tmp_path / "plan.yaml", "Sales Dev")
    done = run(state, "apply", str(plan))
    assert done.exit_code == 0, done.output
    return state, plan, histories(state, plan)[None][0]


def _snapshot(state: Path, record: dict[str, Any], dash_id: str) -> Path:
    """The snapshot file a record holds for `dash_id`."""
    digest = next(d["snapshot"] for d in record["dashboards"] if d["id"] == dash_id)
    found: Path = next(state.rglob(f"{digest}.json"))
    return found


def test_tampered_history_files_are_exit_3_without_traceback(tmp_path: Path) -> None:
    """A snapshot swapped for a symlink or FIFO, a deploy id with `..`, and a deploys.jsonl
    that is a FIFO are exit 3 with a message naming the problem; no write, no traceback."""
    state, plan, record = _deployed(tmp_path)
    box = sandbox_of(state)
    writes = box.write_count
    snap = _snapshot(state, record, "kpi-core")
    copy = tmp_path / "outside.json"
    copy.write_bytes(snap.read_bytes())
    snap.unlink()
    snap.symlink_to(copy)
    done = run(state, "rollback", str(plan), "--to", record["deploy_id"])
    assert done.exit_code == 3 and "kpi-core" in done.stderr, done.output
    snap.unlink()
    os.mkfifo(snap)
    done = run(state, "rollback", str(plan), "--to", record["deploy_id"])
    assert done.exit_code == 3 and "FIFO" in done.stderr, done.output
    done = run(state, "rollback", str(plan), "--to", "../../" + record["deploy_id"])
    assert done.exit_code == 3 and "not in the history" in done.stderr
    (log,) = state.rglob("deploys.jsonl")
    log.unlink()
    os.mkfifo(log)
    shown = run(state, "history", str(plan))
    assert shown.exit_code == 3 and "FIFO" in shown.stderr, shown.output
    assert box.write_count == writes
    assert "Traceback" not in done.output + shown.output


def test_garbage_and_forged_records_are_skipped_not_trusted(tmp_path: Path) -> None:
    """Garbage lines, a deeply nested line, and records whose deploy id or snapshot name is a
    path are left out of the history; the real deploy is still listed."""
    state, plan, record = _deployed(tmp_path)
    (log,) = state.rglob("deploys.jsonl")
    line = {k: v for k, v in record.items() if k != "counts"}  # as deploys.jsonl holds it
    forged_id = {**line, "deploy_id": "../../etc/passwd"}
    forged_snap = json.loads(json.dumps(line))
    forged_snap["deploy_id"] = "20200101T000000.000Z-abcdef"
    forged_snap["dashboards"][0]["snapshot"] = "../../../../etc/passwd"
    log.write_bytes(
        log.read_bytes()
        + b"\x00\xff garbage\n"
        + b"[" * 100_000
        + b"\n"
        + json.dumps(forged_id).encode()
        + b"\n"
        + json.dumps(forged_snap).encode()
        + b"\n"
    )
    listed = histories(state, plan)[None]
    assert [d["deploy_id"] for d in listed] == [record["deploy_id"]]
    done = run(state, "rollback", str(plan), "--to", "20200101T000000.000Z-abcdef")
    assert done.exit_code == 3 and "not in the history" in done.stderr


def test_an_altered_snapshot_does_not_silently_disable_drift(tmp_path: Path) -> None:
    """When the snapshot of the last deploy was altered, a plan cannot tell an edit in the
    target from our own copy: it is exit 3 naming the snapshot, not a silent replace."""
    state, _, record = _deployed(tmp_path)
    box = sandbox_of(state)
    data = box.get_dashboard("Sales Prod", "kpi-core")
    assert data is not None
    data["name"] = "Edited in prod"
    box.update_dashboard("Sales Prod", "kpi-core", data)
    snap = _snapshot(state, record, "kpi-core")
    snap.chmod(0o600)
    snap.write_bytes(snap.read_bytes().replace(b"{", b"{ ", 1))
    writes = box.write_count
    done = run(state, "apply", str(one_plan(tmp_path / "next.yaml", "Sales Dev Next")))
    assert done.exit_code == 3, done.output
    assert "altered" in done.stderr and "Traceback" not in done.output
    assert box.write_count == writes


def test_an_edit_that_only_reorders_keys_is_not_drift(tmp_path: Path) -> None:
    """A target copy whose keys were reordered equals what was deployed: not drift, and the
    next deploy of a new version replaces it without a conflict."""
    state, _, _ = _deployed(tmp_path)
    box = sandbox_of(state)
    data = box.get_dashboard("Sales Prod", "kpi-core")
    assert data is not None
    box.update_dashboard("Sales Prod", "kpi-core", dict(reversed(list(data.items()))))
    nxt = one_plan(tmp_path / "next.yaml", "Sales Dev Next")
    planned = run(state, "plan", str(nxt), "-f", "json")
    kpi = next(d for d in json.loads(planned.stdout)["dashboards"] if d["id"] == "kpi-core")
    assert kpi["drifted"] is False and kpi["action"] == "update", kpi


def test_overwrite_without_a_data_app_is_a_clear_conflict(tmp_path: Path) -> None:
    """`on_drift: overwrite` on a target with no data app cannot replace: an edited dashboard
    is a conflict saying so, and nothing is written."""
    state = tmp_path / "s"
    plan = one_plan(tmp_path / "plan.yaml", "Sales Dev", drift="overwrite", data_app=False)
    assert run(state, "apply", str(plan)).exit_code == 0
    box = sandbox_of(state)
    data = box.get_dashboard("Sales Prod", "kpi-core")
    assert data is not None
    data["name"] = "Edited in prod"
    box.update_dashboard("Sales Prod", "kpi-core", data)
    writes = box.write_count
    done = run(state, "apply", str(plan))
    assert done.exit_code == 6, done.output
    assert "data_app" in done.output and box.write_count == writes


def test_history_never_prints_a_token_of_the_plan(tmp_path: Path) -> None:
    """A deploys.jsonl holding the value of a token the plan names (written by another tool or
    an older run) is printed by `history` (text and JSON) with that value redacted."""
    state = tmp_path / "s"
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "version: 1\nsource: {url: 'https://src.example', workspace: S, token_env: SRC_TOK}\n"
        "target: {url: 'https://tgt.example', workspace: T, token_env: TGT_TOK,"
        " data_app: {name: App, key_env: APP_TOK}}\n"
        "dashboards:\n  - id: a\n"
    )
    canaries = {
        "SRC_TOK": "canary-src-7f3a",
        "TGT_TOK": "canary-tgt-91bc",
        "APP_TOK": "canary-app-2d",
    }
    record = {
        "deploy_id": "20260101T000000.000Z-abcdef",
        "started_at": "x",
        "finished_at": "y",
        "plan_sha256": "",
        "bundle_manifest_sha256": None,
        "commit": " ".join(canaries.values()),
        "actor": canaries["TGT_TOK"],
        "dashboards": [],
    }
    folder = target_folder(
        state / "history", target_key(Endpoint(url="https://tgt.example", workspace="T"))
    )
    folder.mkdir(parents=True)
    (folder / "deploys.jsonl").write_text(json.dumps(record) + "\n")
    for fmt in ("text", "json"):
        shown = run(state, "history", str(plan), "-f", fmt, env=canaries)
        assert shown.exit_code == 0, shown.output
        assert "abcdef" in shown.stdout
        for value in canaries.values():
            assert value not in shown.output, (fmt, value)


def test_a_symlinked_history_folder_is_refused(tmp_path: Path) -> None:
    """A target folder or its snapshots/ swapped for a symlink to elsewhere is exit 3: the
    history is never read from (nor written to) outside the history folder."""
    state, plan, record = _deployed(tmp_path)
    (log,) = state.rglob("deploys.jsonl")
    snapshots = log.parent / "snapshots"
    outside = tmp_path / "outside-snapshots"
    snapshots.rename(outside)
    snapshots.symlink_to(outside)
    done = run(state, "rollback", str(plan), "--to", record["deploy_id"], "--dry-run")
    assert done.exit_code == 3 and "symlink" in done.stderr, done.output
    snapshots.unlink()
    outside.rename(snapshots)
    folder = log.parent
    moved = tmp_path / "outside-target"
    folder.rename(moved)
    folder.symlink_to(moved)
    shown = run(state, "history", str(plan))
    assert shown.exit_code == 3 and "symlink" in shown.stderr, shown.output
    assert "Traceback" not in done.output + shown.output

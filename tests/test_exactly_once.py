"""Never a duplicate, never a wrong equal: apply against servers that misbehave — minting their
own dashboard ids, answering a stored import with a refusal, listing writes late, storing a
second copy instead of refusing one, or changing ids that must survive an import."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from migrate.cli import app
from migrate.journal import Held, read_journal
from migrate.sandbox import Sandbox
from tests.helpers import actions, plan, sandbox_of, write_plan
from tests.test_reliability import APPLY_ENV, slow_server, wait_until

runner = CliRunner()
__all__ = ["slow_server"]  # the fixture, shared with the reliability tests

SOURCE, TARGET = "Sales Dev", "Sales Prod"


def apply_cli(path: Path, state: Path) -> tuple[int, dict[str, dict[str, Any]], str]:
    """`migrate apply PLAN --report`: (exit code, dashboard id -> its report entry, stderr)."""
    report = state / "report.json"
    report.unlink(missing_ok=True)
    result = runner.invoke(
        app, ["--state-dir", str(state), "apply", str(path), "--report", str(report)]
    )
    entries = json.loads(report.read_text())["dashboards"] if report.exists() else []
    return result.exit_code, {d["id"]: d for d in entries}, result.stderr


def copies(sandbox: Sandbox, workspace: str = TARGET) -> Counter[str]:
    """How many copies of each dashboard id the workspace stores (the listing lag aside)."""
    return Counter(dash_id for dash_id, _ in sandbox.list_dashboards(workspace))


def imports(sandbox: Sandbox) -> Counter[str | None]:
    """How many import requests the server saw, per requested dashboard id."""
    return Counter(r.dashboard_id for r in sandbox.requests("import"))


def set_in_source(sandbox: Sandbox, *, datasource_id: str | None, filter_id: str | None) -> None:
    """Give every metric of the source a `datasourceId` and every filter an `id` (a fresh UUID
    per item when the value is None)."""
    for dash_id, _ in sandbox.list_dashboards(SOURCE):
        data = sandbox.get_dashboard(SOURCE, dash_id)
        assert data is not None
        for metric in data.get("metrics", []):
            metric["datasourceId"] = datasource_id or str(uuid.uuid4())
        for item in data.get("filters", []):
            item["id"] = filter_id or str(uuid.uuid4())
        sandbox.update_dashboard(SOURCE, dash_id, data)


def test_server_minted_dashboard_id_is_failed_and_never_imported_again(tmp_path: Path) -> None:
    """An import answered with another dashboard id fails naming it, once; a re-run imports
    nothing and still says failed (exit 6)."""
    sandbox = sandbox_of(tmp_path)
    sandbox.modes.mint_dashboard_ids = True
    path = write_plan(tmp_path)
    code, first, _ = apply_cli(path, tmp_path)
    assert code == 6
    foreign = {i: d for i, d in first.items() if d["result"] == "failed"}
    assert foreign and {d["result"] for d in first.values()} <= {"failed", "blocked"}
    stored = copies(sandbox)
    assert sum(stored.values()) == len(foreign) == sandbox.write_count
    for dash_id, entry in foreign.items():
        assert entry["error"]["code"] == "FOREIGN_ID"
        (minted,) = [
            i for i in stored if sandbox.get_dashboard(TARGET, i) and i in entry["error"]["message"]
        ]
        assert minted != dash_id and "target_id" in entry["error"]["message"]
    sent = imports(sandbox)
    code, second, _ = apply_cli(path, tmp_path)
    assert code == 6
    assert imports(sandbox) == sent and copies(sandbox) == stored
    assert {i: d["result"] for i, d in second.items()} == {i: d["result"] for i, d in first.items()}
    assert all(second[i]["error"]["code"] == "FOREIGN_ID" for i in foreign)


def test_lagging_listing_never_resends_a_landed_import(tmp_path: Path) -> None:
    """Every import response lost, listings lagging, no duplicate refusal: the id is read back,
    so each dashboard is imported once and stored once."""
    sandbox = sandbox_of(tmp_path)
    sandbox.modes.no_duplicate_refusal = True
    sandbox.faults.listing_lag = 3
    sandbox.faults.drop_rate = 1.0
    path = write_plan(tmp_path)
    code, results, _ = apply_cli(path, tmp_path)
    assert code == 0, results
    assert {d["result"] for d in results.values()} == {"created"}
    assert set(copies(sandbox).values()) == {1}
    assert set(imports(sandbox).values()) == {1}
    assert sandbox.write_count == len(results)


def test_refusal_of_an_id_the_listing_misses_reads_it_back(tmp_path: Path) -> None:
    """A duplicate refusal for an id a lagging listing does not show is checked by reading the
    id back: the re-run finds every dashboard unchanged, with no advice to set id_prefix."""
    sandbox = sandbox_of(tmp_path)
    sandbox.faults.listing_lag = 1000
    path = write_plan(tmp_path)
    code, first, _ = apply_cli(path, tmp_path)
    assert code == 0 and {d["result"] for d in first.values()} == {"created"}
    code, second, _ = apply_cli(path, tmp_path)
    assert code == 0, second
    assert {d["result"] for d in second.values()} == {"unchanged"}
    assert set(copies(sandbox).values()) == {1}


def test_changed_datasource_and_filter_ids_are_not_equal(tmp_path: Path) -> None:
    """A server that changes metric datasourceIds and filter ids (UUIDs) on import: the
    read-back differs, so apply fails (exit 6), and plan never calls the copies unchanged."""
    sandbox = sandbox_of(tmp_path)
    set_in_source(sandbox, datasource_id=None, filter_id=None)
    sandbox.modes.remint_other_ids = True
    sandbox.modes.remint_ids = True  # re-minted metric ids alone stay equal
    path = write_plan(tmp_path)
    code, results, _ = apply_cli(path, tmp_path)
    assert code == 6
    failed = [d for d in results.values() if d["result"] == "failed"]
    assert failed and all(d["error"]["code"] == "READBACK_MISMATCH" for d in failed)
    paths = [c["path"] for d in failed for c in d["changes"]]
    assert paths and all(p.endswith((".datasourceId", ".id")) for p in paths), paths
    assert "unchanged" not in actions(plan(path, tmp_path)).values()


def test_corrupted_import_stays_failed_until_equal(tmp_path: Path) -> None:
    """A dashboard this tool imported and read back different stays failed (exit 6) on re-runs,
    with no new import, until the target copy equals the source; then the hold ends."""
    sandbox = sandbox_of(tmp_path)
    set_in_source(sandbox, datasource_id="ds-analytics", filter_id="flt-region")
    sandbox.modes.remint_other_ids = True
    path = write_plan(tmp_path)
    code, first, _ = apply_cli(path, tmp_path)
    assert code == 6
    failed = sorted(i for i, d in first.items() if d["result"] == "failed")
    assert failed
    writes = sandbox.write_count
    for _ in range(2):
        code, again, _ = apply_cli(path, tmp_path)
        assert code == 6
        assert sorted(i for i, d in again.items() if d["result"] == "failed") == failed
        assert all(again[i]["error"]["code"] == "READBACK_MISMATCH" for i in failed)
        assert sandbox.write_count == writes
    sandbox.modes.remint_other_ids = False  # the server is fixed, the user repairs the copies
    for dash_id in failed:
        data = sandbox.get_dashboard(SOURCE, dash_id)
        assert data is not None
        sandbox.update_dashboard(TARGET, dash_id, data)
    code, repaired, _ = apply_cli(path, tmp_path)
    assert code == 0, repaired
    assert all(repaired[i]["result"] == "unchanged" for i in failed)
    edited = sandbox.get_dashboard(TARGET, failed[0])
    assert edited is not None
    edited["name"] = "edited in the UI"
    sandbox.update_dashboard(TARGET, failed[0], edited)
    code, later, _ = apply_cli(path, tmp_path)
    assert code == 0 and later[failed[0]]["result"] == "skipped", later  # a user's edit, not ours
    assert set(copies(sandbox).values()) == {1}


def test_import_refused_after_it_was_stored_is_created(tmp_path: Path) -> None:
    """An import answered 400 that the server stored all the same is `created`, sent once."""
    sandbox = sandbox_of(tmp_path)
    sandbox.faults.refuse_after_store_rate = 1.0
    path = write_plan(tmp_path)
    code, results, _ = apply_cli(path, tmp_path)
    assert code == 0, results
    assert {d["result"] for d in results.values()} == {"created"}
    assert set(imports(sandbox).values()) == {1}
    assert set(copies(sandbox).values()) == {1}


def test_interrupt_during_export_blocks_every_dashboard(
    tmp_path: Path, slow_server: tuple[Sandbox, Path]
) -> None:
    """SIGINT while the source is exported: exit 6 with the resume command, dashboards blocked
    (none invalid), nothing imported; the re-run completes."""
    sandbox, plan_path = slow_server
    sandbox.faults.latency_ms = 200
    state, report = tmp_path / "state", tmp_path / "report.json"
    args = ["--state-dir", str(state), "apply", str(plan_path), "--report", str(report)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "migrate", *args],
        env=APPLY_ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_until(lambda: len(sandbox.requests("export")) >= 3)
    proc.send_signal(signal.SIGINT)
    _out, errs = proc.communicate(timeout=120)
    assert proc.returncode == 6, errs
    assert "migrate apply" in errs
    results = Counter(d["result"] for d in json.loads(report.read_text())["dashboards"])
    assert results["invalid"] == 0 and results["blocked"] > 0, results
    assert sandbox.write_count == 0


def test_a_hold_lasts_until_created_or_unchanged(tmp_path: Path) -> None:
    """A journaled hold is read back with its server id, survives other outcomes, and ends
    with a `created` or `unchanged` outcome."""
    path = tmp_path / "j.jsonl"
    lines = [
        {"event": "outcome", "target_id": "a", "result": "failed", "held": "foreign_id",
         "server_id": "srv-1"},
        {"event": "outcome", "target_id": "b", "result": "failed", "held": "readback_differs"},
        {"event": "outcome", "target_id": "a", "result": "failed"},
        {"event": "outcome", "target_id": "b", "result": "unchanged"},
    ]  # fmt: skip
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    prior = read_journal(path)
    assert prior is not None
    assert prior.held == {"a": Held("foreign_id", "srv-1")}
    with path.open("a") as out:
        out.write(json.dumps({"event": "outcome", "target_id": "a", "result": "created"}) + "\n")
    prior = read_journal(path)
    assert prior is not None and prior.held == {}


def test_a_hold_survives_an_edit_of_the_plan(tmp_path: Path) -> None:
    """Holds are facts about the target: a plan edited after the failure still imports nothing
    again and still fails the held dashboards (the journal is keyed by target, not by plan)."""
    sandbox = sandbox_of(tmp_path)
    sandbox.modes.mint_dashboard_ids = True
    path = write_plan(tmp_path)
    code, first, _ = apply_cli(path, tmp_path)
    assert code == 6
    held = {i for i, d in first.items() if d["error"] and d["error"]["code"] == "FOREIGN_ID"}
    assert held
    sent, stored = imports(sandbox), copies(sandbox)
    write_plan(tmp_path, settings="  concurrency: 3\n")  # another plan digest, same target
    code, second, _ = apply_cli(path, tmp_path)
    assert code == 6
    assert imports(sandbox) == sent and copies(sandbox) == stored
    assert all(second[i]["error"]["code"] == "FOREIGN_ID" for i in held)

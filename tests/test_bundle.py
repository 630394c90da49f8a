"""Bundles (docs/contract.md A4): export from the sandbox, verify, and plan from a bundle."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from migrate.bundle import (
    BundleItem,
    BundleSource,
    safe_name,
    verify_bundle,
    write_bundle,
)
from migrate.cli import app
from migrate.connection import ConnectionPolicy, open_client
from migrate.errors import BundleError, PayloadInvalidError, PlanError
from migrate.models import Action, Endpoint, ExportFile, SourceInfo
from migrate.plan import load_plan
from migrate.planner import make_plan
from migrate.runner import ExportSummary, RunOptions, run_export
from tests.helpers import run_migrate, sandbox_of, write_plan

ROOT = Path(__file__).parent.parent
cli = CliRunner()


def _export(tmp_path: Path, *, selectors: tuple[str, ...] = (), **plan: Any) -> ExportSummary:
    path = write_plan(tmp_path, **plan)
    policy = ConnectionPolicy(state_dir=tmp_path / "state")
    return asyncio.run(
        run_export(
            load_plan(path),
            tmp_path / "bundle",
            RunOptions(selectors=tuple(selectors), policy=policy),
        )
    )


def _api_export(state: Path, workspace: str, dashboard_id: str) -> ExportFile:
    async def go() -> ExportFile:
        client = open_client(
            Endpoint("sandbox://demo", workspace), policy=ConnectionPolicy(state_dir=state)
        )
        try:
            return await client.export_dashboard(workspace, dashboard_id)
        finally:
            await client.aclose()

    return asyncio.run(go())


def _manifest(bundle: Path) -> dict[str, Any]:
    value: dict[str, Any] = json.loads((bundle / "manifest.json").read_text())
    return value


def test_export_writes_the_a4_layout(tmp_path: Path) -> None:
    """manifest.json lists every source dashboard with file, sha256 and dependencies."""
    summary = _export(tmp_path)
    bundle = tmp_path / "bundle"
    assert summary.manifest == bundle / "manifest.json"
    manifest = _manifest(bundle)
    assert manifest["format"] == "migrate-bundle"
    assert manifest["version"] == 1
    assert manifest["source"] == {"url": "sandbox://demo", "workspace": "Sales Dev"}
    assert manifest["exported_at"].endswith("Z")
    ids = [d["id"] for d in manifest["dashboards"]]
    assert sorted(ids) == sorted(
        i for i, _ in sandbox_of(tmp_path / "state").list_dashboards("Sales Dev")
    )
    assert len(ids) == 14
    for entry in manifest["dashboards"]:
        assert entry["file"] == f"dashboards/{safe_name(entry['id'])}"
        raw = (bundle / entry["file"]).read_bytes()
        assert hashlib.sha256(raw).hexdigest() == entry["sha256"]
        for dep in entry["depends_on"]:
            assert ids.index(dep) < ids.index(entry["id"])  # dependency order
    exec_summary = next(d for d in manifest["dashboards"] if d["id"] == "exec-summary")
    assert "sales-overview" in exec_summary["depends_on"]
    assert (
        summary.manifest_sha256
        == hashlib.sha256((bundle / "manifest.json").read_bytes()).hexdigest()
    )
    assert sorted(p.name for p in bundle.iterdir()) == ["dashboards", "manifest.json"]


def test_export_files_are_exactly_what_the_api_returned(tmp_path: Path) -> None:
    """Each bundle file is byte-for-byte the export-dashboard response (but its export time)."""
    _export(tmp_path)
    stamp = re.compile(rb'"exportedAt":"[^"]*"')
    for entry in _manifest(tmp_path / "bundle")["dashboards"]:
        api = _api_export(tmp_path / "state", "Sales Dev", entry["id"])
        written = (tmp_path / "bundle" / entry["file"]).read_bytes()
        assert stamp.search(api.raw)
        assert stamp.sub(b"", written) == stamp.sub(b"", api.raw)


def test_export_selects_with_the_graph(tmp_path: Path) -> None:
    """`+region-emea` exports it and everything it depends on, nothing else."""
    summary = _export(tmp_path, selectors=("+region-emea",))
    ids = [d.id for d in summary.dashboards]
    assert ids[-1] == "region-emea"
    assert set(ids) == {"region-emea", "sales-by-region", "sales-overview", "kpi-core"}


def test_export_never_contacts_the_target(tmp_path: Path) -> None:
    """A target that is unreachable and has no token does not stop an export."""
    path = tmp_path / "plan.yaml"
    path.write_text(
        "version: 1\n"
        "source: {url: 'sandbox://demo', workspace: 'Sales Dev'}\n"
        "target: {url: 'https://127.0.0.1:9', workspace: 'X', token_env: MIGRATE_TEST_UNSET}\n"
        "dashboards:\n  - id: kpi-core\n"
    )
    policy = ConnectionPolicy(state_dir=tmp_path / "state")
    summary = asyncio.run(run_export(load_plan(path), tmp_path / "b", RunOptions(policy=policy)))
    assert [d.id for d in summary.dashboards] == ["kpi-core"]


def test_export_needs_a_source(tmp_path: Path) -> None:
    """A plan without `source` cannot export (exit 3)."""
    path = tmp_path / "plan.yaml"
    path.write_text(
        "version: 1\ntarget: {url: 'sandbox://demo', workspace: 'Sales Prod'}\n"
        "dashboards:\n  - match: '*'\n"
    )
    policy = ConnectionPolicy(state_dir=tmp_path / "state")
    with pytest.raises(PlanError, match="no `source`"):
        asyncio.run(run_export(load_plan(path), tmp_path / "b", RunOptions(policy=policy)))


def test_invalid_payload_writes_nothing(tmp_path: Path) -> None:
    """One payload failing the schema is exit 4 naming it and its JSON path; no bundle."""
    state = tmp_path / "state"
    sandbox = sandbox_of(state)
    data = sandbox.get_dashboard("Sales Dev", "product-mix")
    assert data is not None
    sandbox.update_dashboard("Sales Dev", "product-mix", {**data, "metrics": {"a": 1}})
    with pytest.raises(PayloadInvalidError) as caught:
        _export(tmp_path)
    assert caught.value.exit_code == 4
    assert "product-mix" in str(caught.value)
    assert "data.metrics" in str(caught.value)
    assert any(v.path.startswith("product-mix: data.metrics") for v in caught.value.violations)
    leftovers = sorted(p.name for p in tmp_path.iterdir())
    assert leftovers == ["plan.yaml", "state"]


def test_export_refuses_a_folder_that_is_not_a_bundle(tmp_path: Path) -> None:
    """--out pointing at a folder with other files is refused; the files stay."""
    (tmp_path / "bundle").mkdir()
    (tmp_path / "bundle" / "notes.txt").write_text("mine")
    with pytest.raises(BundleError, match="not empty"):
        _export(tmp_path)
    assert (tmp_path / "bundle" / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle", "plan.yaml", "state"]


def test_export_replaces_an_earlier_bundle_whole(tmp_path: Path) -> None:
    """A second export over an earlier bundle leaves exactly the new bundle."""
    _export(tmp_path)
    summary = _export(tmp_path, dashboards="  - id: kpi-core\n")
    assert [d.id for d in summary.dashboards] == ["kpi-core"]
    assert [p.name for p in (tmp_path / "bundle" / "dashboards").iterdir()] == ["kpi-core.json"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    verify_bundle(tmp_path / "bundle")


def test_write_into_an_empty_folder(tmp_path: Path) -> None:
    """An existing empty --out folder is fine."""
    (tmp_path / "b").mkdir()
    write_bundle(tmp_path / "b", SourceInfo("u", "w"), [BundleItem("a", "A", b'{"data":{}}')])
    assert [p.name for p in verify_bundle(tmp_path / "b")] == ["a.json"]


# --- verify -----------------------------------------------------------------------------------


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    """A freshly exported bundle of Sales Dev."""
    _export(tmp_path)
    return tmp_path / "bundle"


def _refusal(bundle: Path) -> str:
    with pytest.raises(BundleError) as caught:
        verify_bundle(bundle)
    assert caught.value.exit_code == 3
    return str(caught.value)


def test_verify_returns_the_export_files(bundle: Path) -> None:
    """A good bundle verifies and lists its 14 files in manifest order."""
    files = verify_bundle(bundle)
    assert [f"dashboards/{p.name}" for p in files] == [
        d["file"] for d in _manifest(bundle)["dashboards"]
    ]


def test_verify_names_a_tampered_file(bundle: Path) -> None:
    """A changed byte is a sha256 mismatch naming that file."""
    target = bundle / "dashboards" / "kpi-core.json"
    target.write_bytes(target.read_bytes().replace(b"analytics_dev", b"analytics_prd", 1))
    message = _refusal(bundle)
    assert str(target) in message
    assert "sha256" in message
    assert message.count("dashboards/") == 1


def test_verify_names_missing_and_extra_files(bundle: Path) -> None:
    """A deleted file and two planted files are each named."""
    (bundle / "dashboards" / "kpi-core.json").unlink()
    (bundle / "dashboards" / "extra.json").write_text("{}")
    (bundle / "README").write_text("hi")
    message = _refusal(bundle)
    assert "kpi-core.json: missing" in message
    assert "extra.json: extra file" in message
    assert "README: extra file" in message
    assert "3 problems" in message


@pytest.mark.parametrize(
    "manifest",
    [b"", b"{not json", b'{"format": "zip", "version": 1}', b"[]", b'{"a": 1, "a": 2}'],
)
def test_verify_refuses_a_bad_manifest(bundle: Path, manifest: bytes) -> None:
    """An empty, unparseable or foreign manifest is refused, naming manifest.json."""
    (bundle / "manifest.json").write_bytes(manifest)
    assert "manifest.json" in _refusal(bundle)


def test_verify_refuses_a_missing_manifest(bundle: Path) -> None:
    """No manifest: not a bundle."""
    (bundle / "manifest.json").unlink()
    assert "manifest.json: missing" in _refusal(bundle)


@pytest.mark.parametrize(
    "file", ["../../etc/passwd", "/etc/passwd", "dashboards/../manifest.json", "dashboards/x.json"]
)
def test_verify_refuses_a_file_entry_outside_its_safe_name(bundle: Path, file: str) -> None:
    """A manifest `file` that escapes dashboards/ or is not the id's safe name is refused."""
    manifest = _manifest(bundle)
    manifest["dashboards"][0]["file"] = file
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    message = _refusal(bundle)
    assert "never leaves dashboards/" in message


# --- bundle as a payload source ---------------------------------------------------------------


def test_bundle_source_plans_like_the_live_source(bundle: Path, tmp_path: Path) -> None:
    """make_plan from a bundle: every dashboard `create`, in order, source described by hash."""
    plan = load_plan(write_plan(tmp_path, target="Sales Staging"))
    source = BundleSource(bundle)

    async def go() -> Any:
        target = open_client(plan.target, policy=ConnectionPolicy(state_dir=tmp_path / "state"))
        try:
            return await make_plan(plan, source, target)
        finally:
            await target.aclose()

    migration = asyncio.run(go())
    assert {d.action for d in migration.dashboards} == {Action.CREATE}
    assert len(migration.dashboards) == 14
    assert migration.source == SourceInfo(
        "sandbox://demo", "Sales Dev", bundle=str(bundle), manifest_sha256=source.manifest_sha256
    )
    exec_summary = next(d for d in migration.dashboards if d.id == "exec-summary")
    entry = next(e for e in source.entries if e.id == "exec-summary")
    assert set(entry.depends_on) == set(exec_summary.depends_on)


def test_bundle_source_refuses_a_tampered_bundle_on_open(bundle: Path) -> None:
    """Opening a tampered bundle raises BundleError naming the file."""
    target = bundle / "dashboards" / "exec-summary.json"
    target.write_bytes(target.read_bytes() + b" ")
    with pytest.raises(BundleError, match=r"exec-summary\.json"):
        BundleSource(bundle)


def test_bundle_source_rechecks_each_file_as_it_reads(bundle: Path) -> None:
    """A file changed after the bundle was opened is refused when it is read."""
    source = BundleSource(bundle)
    target = bundle / "dashboards" / "kpi-core.json"
    target.write_bytes(target.read_bytes() + b" ")
    with pytest.raises(BundleError, match=r"kpi-core\.json"):
        asyncio.run(source.export("kpi-core"))


# --- validate --bundle (CLI) ------------------------------------------------------------------


def test_validate_bundle_exit_0(bundle: Path) -> None:
    """`migrate validate --bundle` on a fresh export exits 0."""
    result = cli.invoke(app, ["validate", "--bundle", str(bundle)])
    assert result.exit_code == 0, result.output
    assert "valid bundle" in result.output


def test_validate_bundle_tampered_exit_3_naming_the_file(bundle: Path) -> None:
    """A tampered file makes `validate --bundle` exit 3 and name it."""
    target = bundle / "dashboards" / "support-sla.json"
    target.write_bytes(target.read_bytes().replace(b"{", b"{ ", 1))
    result = cli.invoke(app, ["validate", "--bundle", str(bundle)])
    assert result.exit_code == 3, result.output
    assert "support-sla.json" in result.output


def test_validate_bundle_payload_failing_schema_exit_4(tmp_path: Path) -> None:
    """A consistent bundle whose payload fails the schema is exit 4 with the JSON path."""
    raw = json.dumps({"_meta": {}, "data": {"metrics": {"a": 1}}}).encode()
    write_bundle(tmp_path / "b", SourceInfo("u", "w"), [BundleItem("bad", "Bad", raw)])
    result = cli.invoke(app, ["validate", "--bundle", str(tmp_path / "b")])
    assert result.exit_code == 4, result.output
    assert "bad.json: data.metrics" in result.output


# --- export / apply --bundle (CLI, subprocess) ------------------------------------------------


def _migrate(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_migrate("--state-dir", str(cwd / "state"), *args, cwd=cwd, timeout=120)


def test_cli_promotes_one_bundle_dev_staging_prod(tmp_path: Path) -> None:
    """One exported bundle applied to staging then prod: each holds exactly its dashboards."""
    plan = write_plan(tmp_path, target="Sales Staging")
    result = _migrate(tmp_path, "export", str(plan), "--out", "bundle")
    assert result.returncode == 0, result.stderr
    assert "manifest.json" in result.stdout
    ids = {d["id"] for d in _manifest(tmp_path / "bundle")["dashboards"]}
    digest = hashlib.sha256((tmp_path / "bundle" / "manifest.json").read_bytes()).hexdigest()
    for workspace in ("Sales Staging", "Sales Prod"):
        hop = tmp_path / workspace.replace(" ", "-")
        hop.mkdir()
        plan = write_plan(hop, target=workspace)
        report = hop / "report.json"
        result = _migrate(
            tmp_path, "apply", str(plan), "--bundle", "bundle", "--report", str(report)
        )
        assert result.returncode == 0, result.stderr
        held = {i for i, _ in sandbox_of(tmp_path / "state").list_dashboards(workspace)}
        assert held == ids
        document = json.loads(report.read_text())
        assert document["source"]["manifest_sha256"] == digest or (
            document.get("bundle", {}).get("manifest_sha256") == digest
        )


def test_cli_apply_refuses_a_tampered_bundle_naming_the_file(tmp_path: Path) -> None:
    """`apply --bundle` on a tampered bundle exits 3 naming the file and writes nothing."""
    plan = write_plan(tmp_path, target="Sales Staging")
    assert _migrate(tmp_path, "export", str(plan), "--out", "bundle").returncode == 0
    target = tmp_path / "bundle" / "dashboards" / "kpi-core.json"
    target.write_bytes(target.read_bytes() + b"\n")
    result = _migrate(tmp_path, "apply", str(plan), "--bundle", "bundle")
    assert result.returncode == 3, result.stderr
    assert "kpi-core.json" in result.stderr
    assert sandbox_of(tmp_path / "state").list_dashboards("Sales Staging") == []
    result = _migrate(tmp_path, "validate", "--bundle", "bundle")
    assert result.returncode == 3
    assert "kpi-core.json" in result.stdout + result.stderr


def test_cli_apply_bundle_needs_no_source(tmp_path: Path) -> None:
    """A plan without `source` applies from a bundle."""
    plan = write_plan(tmp_path, target="Sales Staging")
    assert _migrate(tmp_path, "export", str(plan), "--out", "bundle").returncode == 0
    bare = tmp_path / "bare.yaml"
    bare.write_text(
        "version: 1\ntarget: {url: 'sandbox://demo', workspace: 'Sales Prod'}\n"
        "settings:\n  schema_pairs: [{replace: analytics_dev, target: analytics}]\n"
        "dashboards:\n  - match: '*'\n"
    )
    result = _migrate(tmp_path, "apply", str(bare), "--bundle", "bundle")
    assert result.returncode == 0, result.stderr
    assert len(sandbox_of(tmp_path / "state").list_dashboards("Sales Prod")) == 14


def test_cli_export_invalid_payload_exit_4(tmp_path: Path) -> None:
    """`migrate export` with a payload failing the schema exits 4 and writes no bundle."""
    sandbox = sandbox_of(tmp_path / "state")
    data = sandbox.get_dashboard("Sales Dev", "kpi-core")
    assert data is not None
    sandbox.update_dashboard("Sales Dev", "kpi-core", {**data, "layout": "oops"})
    plan = write_plan(tmp_path)
    result = _migrate(tmp_path, "export", str(plan), "--out", "bundle")
    assert result.returncode == 4, result.stderr
    assert "kpi-core" in result.stderr
    assert not (tmp_path / "bundle").exists()

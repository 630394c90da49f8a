"""Hostile inputs against the fast paths of apply: text spliced as it arrived, trusted parses,
bytes rewrites, deferred fsyncs and the learned rate (each must behave as the slow path)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from migrate.client import ClientOptions, DatabrainClient
from migrate.errors import CredentialEchoError, MigrateError
from migrate.events import Progress
from migrate.importer import Importer
from migrate.jsontext import dump_json
from migrate.models import Result
from migrate.plan import load_plan
from migrate.planner import make_plan
from migrate.redaction import register_secret
from migrate.retry import RetryPolicy
from migrate.sandbox import SandboxConfig, create_app
from migrate.source import LiveSource
from migrate.spool import PayloadSpool
from tests.helpers import ExportWire, actions, apply, plan, results, sandbox_of, write_plan

_TOKEN = "adv-token-4242"


def _export(dash_id: str, data_text: bytes) -> bytes:
    """An export file of `dash_id` in Src whose `data` is written as `data_text`."""
    meta = dump_json({"dashboardId": dash_id, "workspaceName": "Src"})
    return b'{"_meta":' + meta + b',"data":' + data_text + b"}"


def _setup(
    tmp: Path, payloads: dict[str, Any], exports: dict[str, bytes]
) -> tuple[Any, ExportWire]:
    """A fresh sandbox holding `payloads` in Src (and an empty Dst), behind an `ExportWire`."""
    app = create_app(SandboxConfig(db_path=":memory:", seed=None, token=_TOKEN))
    sandbox = app.state.sandbox
    sandbox.store.add_workspace("Dst")
    for dash_id, data in payloads.items():
        sandbox.put_dashboard("Src", dash_id, dash_id, data)
    return sandbox, ExportWire(app, exports)


def test_an_escaped_credential_echo_is_refused(tmp_path: Path) -> None:
    """A server that echoes the token with one letter written as a \\u escape is refused as
    an echo: nothing is imported, and the token reaches no import body."""
    register_secret(_TOKEN)
    echoed = b'{"layout":[],"note":"\\u0061dv-token-4242"}'
    sandbox, wire = _setup(tmp_path, {"d1": {"layout": []}}, {"d1": _export("d1", echoed)})
    plan_obj = load_plan(write_plan(tmp_path, source="Src", target="Dst"))

    async def go() -> list[Result]:
        options = ClientOptions(retry=RetryPolicy(attempts=1))
        async with DatabrainClient("http://sbx", _TOKEN, transport=wire, options=options) as c:
            spool = PayloadSpool(tmp_path / "spool", memory_budget=0)
            migration = await make_plan(
                plan_obj, LiveSource(c, "Src", "http://sbx"), c, spool=spool
            )
            item = migration.dashboards[0]
            assert isinstance(item.failure, CredentialEchoError)
            outcomes = await Importer(migration, c, fail_fast=False).run(Progress())
            return [o.result for o in outcomes]

    found = asyncio.run(go())
    assert Result.CREATED not in found
    assert wire.imports == []
    assert sandbox.get_dashboard("Dst", "d1") is None


@pytest.mark.parametrize("settings", ["", "  id_prefix: 'p-'\n"])
def test_a_truncated_spool_file_fails_cleanly_without_sending(
    tmp_path: Path, settings: str
) -> None:
    """A spool file cut short on disk between planning and importing fails that dashboard
    (or the run, as a MigrateError) before any import body is sent: never a partial body."""
    data = {"layout": [], "sql": "SELECT 1", "pad": "x" * 200}
    sandbox, wire = _setup(tmp_path, {"d1": data}, {})
    plan_obj = load_plan(write_plan(tmp_path, source="Src", target="Dst", settings=settings))
    spool_dir = tmp_path / "spool"

    async def go() -> list[Result] | None:
        options = ClientOptions(retry=RetryPolicy(attempts=1))
        async with DatabrainClient("http://sbx", _TOKEN, transport=wire, options=options) as c:
            spool = PayloadSpool(spool_dir, memory_budget=0)
            migration = await make_plan(
                plan_obj, LiveSource(c, "Src", "http://sbx"), c, spool=spool
            )
            files = list(spool_dir.rglob("*.json"))
            assert len(files) == 1
            files[0].write_bytes(files[0].read_bytes()[:-40])
            try:
                outcomes = await Importer(migration, c, fail_fast=False).run(Progress())
            except MigrateError:
                return None
            return [o.result for o in outcomes]

    found = asyncio.run(go())
    assert found is None or found == [Result.FAILED]
    assert wire.imports == []
    assert sandbox.get_dashboard("Dst", "d1") is None


_ODD: dict[str, Any] = {
    "odd-escapes": {"layout": [], "s": 'a/b\u2028c\u00e9\U0001f600\x01"\\', "k/\u2028": 1},
    "odd-numbers": {
        "layout": [],
        "big": 2**70,
        "neg": -(2**65),
        "floats": [1e16, -0.0, 1.0, 0.1, 5e-324, 1.7976931348623157e308],
        "edge": [2**63 - 1, -(2**63), 2**64 - 1],
    },
    "odd-nesting": {
        "data": {"data": {"layout": "data"}},
        "layout": [{"data": [], "schemaName": "analytics"}],
        "z": "odd-escapes",
    },
    "odd-refs": {"layout": [], "a": "odd-escapes", "b": "xodd-escapesx", "odd-numbers": "k"},
}


def test_apply_then_plan_with_odd_payloads_reports_no_drift(tmp_path: Path) -> None:
    """Payloads with escapes, wide integers, odd floats and `data` keys inside data, applied
    (through the text path where the export is compact orjson text, the parsed path for the
    integers orjson cannot write), then planned again: every dashboard is unchanged, none
    drifted."""
    state = tmp_path / "state"
    plan_path = write_plan(
        tmp_path, source="Odd Src", target="Odd Dst", settings="  on_drift: fail\n"
    )
    sandbox = sandbox_of(state)
    sandbox.store.add_workspace("Odd Dst")
    for dash_id, data in _ODD.items():
        sandbox.put_dashboard("Odd Src", dash_id, dash_id, data)
    report = apply(plan_path, state)
    assert set(results(report).values()) == {"created"}, results(report)
    for dash_id, data in _ODD.items():
        assert sandbox.get_dashboard("Odd Dst", dash_id) == data
    again = plan(plan_path, state)
    assert set(actions(again).values()) == {"unchanged"}, actions(again)
    assert not any(d.drifted for d in again.dashboards)

"""Imports that send a payload's text as it arrived: the same bytes as the parsed payload
would send, and the structured path whenever that text is not shown to be what it writes."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from migrate.client import ClientOptions, DatabrainClient
from migrate.events import Progress
from migrate.history import History, content_sha256
from migrate.importer import Importer
from migrate.jsontext import dump_json
from migrate.models import Result
from migrate.plan import load_plan
from migrate.planner import MigrationPlan, make_plan
from migrate.retry import RetryPolicy
from migrate.sandbox import SandboxConfig, create_app
from migrate.source import LiveSource
from migrate.spool import PayloadSpool
from tests.helpers import ExportWire, write_plan


def _run(
    tmp: Path,
    payloads: dict[str, Any],
    *,
    exports: dict[str, bytes] | None = None,
    settings_text: str = "  schema_pairs: [{replace: analytics_dev, target: analytics}]\n",
    budget: int = 0,
) -> tuple[MigrationPlan, list[Result], list[bytes]]:
    """Plan and import `payloads` from workspace Src to Dst of a fresh sandbox; returns the
    plan, the results and the import bodies the server received. Each created copy's content
    digest, as the history noted it, must be that of the copy the sandbox holds."""
    app = create_app(SandboxConfig(db_path=":memory:", seed=None, token="good-token"))
    sandbox = app.state.sandbox
    sandbox.store.add_workspace("Dst")
    for dash_id, data in payloads.items():
        sandbox.put_dashboard("Src", dash_id, dash_id, data)
    wire = ExportWire(app, exports or {})
    plan = load_plan(write_plan(tmp, source="Src", target="Dst", settings=settings_text))

    async def go() -> tuple[MigrationPlan, list[Result]]:
        options = ClientOptions(retry=RetryPolicy(attempts=1))
        async with DatabrainClient(
            "http://sbx", "good-token", transport=wire, options=options
        ) as c:
            spool = PayloadSpool(tmp, memory_budget=budget)
            migration = await make_plan(plan, LiveSource(c, "Src", "http://sbx"), c, spool=spool)
            history = History(tmp / "history", "key")
            outcomes = await Importer(migration, c, fail_fast=False, history=history).run(
                Progress()
            )
            for outcome in outcomes:
                if outcome.result is Result.CREATED:
                    assert outcome.snapshot is not None
                    held = sandbox.get_dashboard("Dst", outcome.target_id)
                    assert history.content(outcome.snapshot) == content_sha256(held)
            return migration, [o.result for o in outcomes]

    migration, found = asyncio.run(go())
    return migration, found, wire.imports


def _export(dash_id: str, data_text: bytes) -> bytes:
    """An export file of `dash_id` in Src whose `data` is written as `data_text`."""
    meta = dump_json({"dashboardId": dash_id, "workspaceName": "Src"})
    return b'{"_meta":' + meta + b',"data":' + data_text + b"}"


def _envelope(dash_id: str, data: Any, pairs: bool = True) -> bytes:
    """What the structured path writes for an import of `data` into Dst."""
    body: dict[str, Any] = {"workspaceName": "Dst", "dashboardId": dash_id}
    body["importDashboardData"] = data
    if pairs:
        body["schemaPairs"] = [{"replaceSchema": "analytics_dev", "targetSchema": "analytics"}]
    return dump_json(body)


_ODD_TEXT = st.text(
    st.sampled_from(['"', "\\", "/", "\n", "\x01", "\u2028", "é", "😀", "a", ".", " "])
    | st.characters(),
    max_size=12,
).filter(lambda s: not any(0xD800 <= ord(c) <= 0xDFFF for c in s))
_STRINGS = _ODD_TEXT | st.sampled_from(
    ["analytics_dev.orders", 'SELECT * FROM "analytics_dev".t', "analytics_dev", "x.analytics_dev."]
)
_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _STRINGS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_STRINGS, inner, max_size=4),
    max_leaves=20,
)
_PAYLOADS = st.dictionaries(_STRINGS, _VALUES, max_size=6).map(
    lambda d: {**d, "layout": [], "schemaName": "analytics_dev"}
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=_PAYLOADS, budget=st.sampled_from([0, 1 << 24]))
def test_text_body_equals_structured_body(
    tmp_path: Path, data: dict[str, Any], budget: int
) -> None:
    """A compact export is sent as its text, byte for byte what its parse sends (a trailing
    space, which the structured path drops, forces that path for the comparison)."""
    # A fresh folder per example (an object's id can repeat once it is collected).
    fast_dir = Path(tempfile.mkdtemp(prefix="f", dir=tmp_path))
    slow_dir = Path(tempfile.mkdtemp(prefix="s", dir=tmp_path))
    fast, fast_results, fast_bodies = _run(fast_dir, {"d1": data}, budget=budget)
    assert fast.dashboards[0].data_text() is not None  # the text path was open
    slow_raw = _export("d1", dump_json(data)) + b" "
    slow, slow_results, slow_bodies = _run(
        slow_dir, {"d1": data}, exports={"d1": slow_raw}, budget=budget
    )
    assert slow.dashboards[0].data_text() is None
    assert fast_bodies == slow_bodies == [_envelope("d1", data)]
    assert fast_results == slow_results == [Result.CREATED]


def test_spaced_export_takes_the_structured_path(tmp_path: Path) -> None:
    """Data written with spaces (or an escaped key) is not sent as it arrived: the body is
    what the parsed payload writes."""
    spaced = b'{"layout": [], "\\u00e9t\\u00e9": "analytics_dev.t", "n": 1.50}'
    data = {"layout": [], "été": "analytics_dev.t", "n": 1.5}
    migration, found, bodies = _run(tmp_path, {"d1": data}, exports={"d1": _export("d1", spaced)})
    assert migration.dashboards[0].data_text() is None
    assert bodies == [_envelope("d1", data)]
    assert b"\\u00e9" not in bodies[0] and b"1.50" not in bodies[0]
    assert found == [Result.CREATED]


def test_renamed_reference_takes_the_structured_path(tmp_path: Path) -> None:
    """With an id prefix the reference to another planned dashboard is rewritten, although
    the export's text is compact."""
    payloads = {"a": {"layout": [], "link": "b"}, "b": {"layout": []}}
    migration, found, bodies = _run(
        tmp_path, payloads, settings_text="  id_prefix: 'p-'\n", budget=1 << 24
    )
    assert all(d.data_text() is not None for d in migration.dashboards)
    sent = {b for b in bodies if b'"dashboardId":"p-a"' in b}
    assert sent == {
        dump_json(
            {
                "workspaceName": "Dst",
                "dashboardId": "p-a",
                "importDashboardData": {"layout": [], "link": "p-b"},
            }
        )
    }
    assert found == [Result.CREATED, Result.CREATED]


def test_copy_digest_with_and_without_a_rewrite(tmp_path: Path) -> None:
    """A copy the pairs rewrote and one they left alone (kept from the payload held parsed)
    are noted with the digest of what the target holds (checked in `_run`)."""
    data = {"layout": [], "sql": "SELECT 1 FROM analytics_dev.t", "plain": "x"}
    for budget in (0, 1 << 24):
        where = tmp_path / str(budget)
        where.mkdir()
        _, found, _ = _run(where, {"d1": data, "d2": {"layout": [], "n": 2}}, budget=budget)
        assert found == [Result.CREATED, Result.CREATED]

"""The content hash of deploy records (docs/contract.md A9) and the snapshots behind it: records
written by earlier versions stay comparable (the same digest for the same content), and what a
run notes while it imports is what the snapshot on disk says."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from migrate.cli import app
from migrate.diff import normalize_for_compare, normalize_for_digest
from migrate.filters import canonical_filters
from migrate.history import Deploy, DeployedDashboard, History, content_sha256
from migrate.jsontext import dump_json, dump_json_canonical, load_trusted, parse_json


def oracle_sha256(data: Any) -> str:
    """The content hash as every earlier version computed it: kept here as the reference."""
    normalized = normalize_for_compare(canonical_filters(data))
    return hashlib.sha256(dump_json_canonical(normalized)).hexdigest()


# A dashboard whose digest an earlier version recorded: minted ids referenced from the layout
# and a click target, an integer metric id, a filter column in both forms, a non-ASCII name.
RECORDED = {
    "name": "Umsätze ✓",
    "layout": [{"i": "m-b", "x": 0, "w": 6}, {"i": "m-a", "x": 6, "w": 6}, {"i": 7, "x": 0}],
    "filters": [
        {
            "name": "Region",
            "applyOnTables": [
                {"schemaName": "analytics", "tableName": "orders", "columnName": "region"},
                {"tableName": "analytics.users", "columnName": "region"},
            ],
        }
    ],
    "metrics": [
        {"id": "m-a", "metricId": "mtr-a", "clickActions": [{"metricId": "m-b"}], "v": 1.5},
        {"id": "m-b", "metricId": "mtr-b", "chartOptions": {"z": None, "a": [True, "m-a"]}},
        {"id": 7, "name": "seven", "ref": "7"},
    ],
    "datasourceId": "ds-1",
}
RECORDED_SHA256 = "4c165d42dbc4e1b1b701665856b57be37939168cb2d79a752729f3e0d58059b3"


def test_the_digest_of_a_recorded_dashboard_has_not_changed() -> None:
    """A dashboard hashed by an earlier version hashes to the digest its record holds."""
    assert oracle_sha256(RECORDED) == RECORDED_SHA256
    assert content_sha256(RECORDED) == RECORDED_SHA256


ids = st.sampled_from(["m-1", "m-2", "m-3", "mtr-9", "x", "7", "#id1"]) | st.integers(0, 9)
leaves = st.one_of(
    ids,
    st.text(max_size=4),
    st.integers(-3, 12),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.booleans(),
    st.none(),
)
keys = st.sampled_from(["id", "metricId", "i", "a", "b", "B", "é", "tableName", "schemaName"])
trees = st.recursive(
    leaves,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=5)),
    max_leaves=30,
)
metric = st.fixed_dictionaries(
    {},
    optional={"id": ids, "metricId": ids, "more": trees, "a": ids, "z": ids},
)
column = st.fixed_dictionaries(
    {"tableName": st.sampled_from(["s.t", "t", "s.u"]), "columnName": st.sampled_from(["c", "d"])},
    optional={"schemaName": st.sampled_from(["s", "", "r"]), "dataType": st.just("string")},
)
filters = st.lists(
    st.fixed_dictionaries(
        {}, optional={"applyOnTables": st.lists(column | trees, max_size=3), "name": ids}
    ),
    max_size=3,
)
dashboards = st.fixed_dictionaries(
    {},
    optional={
        "metrics": st.lists(metric | trees, max_size=5),
        "layout": st.lists(st.dictionaries(keys, ids | trees, max_size=4), max_size=5),
        "filters": filters,
        "i": ids,
        "z": trees,
        "a": trees,
    },
)


@settings(max_examples=300, deadline=None)
@given(dashboards | trees)
def test_the_digest_is_the_one_earlier_versions_recorded(data: Any) -> None:
    """For any payload (ids reused across metrics, layout and elsewhere; integer ids; keys of
    every order), the hash is byte-identical to the reference, and the cheaper walk yields the
    same normalized value as the comparison's."""
    assert content_sha256(data) == oracle_sha256(data)
    assert normalize_for_digest(data) == normalize_for_compare(data)


def test_the_walk_leaves_its_input_alone_and_shares_what_it_does_not_change() -> None:
    """The digest's walk never mutates its input; a subtree without a minted id is not copied."""
    data = json.loads(json.dumps(RECORDED))
    before = json.dumps(data)
    out = normalize_for_digest(data)
    assert json.dumps(data) == before
    assert out["filters"] is data["filters"]
    assert out["metrics"][1]["chartOptions"] is not data["metrics"][1]["chartOptions"]
    assert [cell["i"] for cell in out["layout"]] == ["#id1", "#id2", "#id3"]  # layout < metrics


def test_text_is_read_exactly_as_the_careful_parser_reads_it() -> None:
    """Integers beyond 64 bits stay integers and a lone surrogate escape is read, as
    `parse_json` reads them; so the hash of a copy proven equal on its text is exact."""
    for text in (
        b'{"n":123456789012345678901234567890,"m":[18446744073709551616]}',
        b'{"s":"\\ud800","t":"ok"}',
        dump_json(RECORDED),
    ):
        value = load_trusted(text)
        assert value == parse_json(text, source="t")
        assert content_sha256(value) == oracle_sha256(parse_json(text, source="t"))
    assert isinstance(load_trusted(b'{"n":123456789012345678901234567890}')["n"], int)


def export_file(data: Any) -> bytes:
    """An export file as the API writes it, compact."""
    return b'{"_meta":{"v":1},"data":' + dump_json(data) + b"}"


@pytest.mark.parametrize("given", ["data", "text", "raw"])
def test_each_way_of_keeping_a_copy_notes_its_hash(tmp_path: Path, given: str) -> None:
    """`keep` notes the right content hash from the parsed copy, from its text and from the
    raw file alike: with the snapshot gone afterwards, only the note can answer `content`."""
    history = History(tmp_path, "https://t.example|ws")
    raw = export_file(RECORDED)
    if given == "data":
        digest = history.keep(raw, RECORDED)
    elif given == "text":
        digest = history.keep(raw, text=dump_json(RECORDED))
    else:
        digest = history.keep(raw)
    history.snapshots.path(digest).unlink()
    assert history.content(digest) == RECORDED_SHA256


def test_a_kept_copy_is_noted_as_its_snapshot_would_be_read(tmp_path: Path) -> None:
    """What `keep` notes (from the parsed copy, its text, or the raw file) equals the hash a
    later process reads from the snapshot; the snapshot is owner-only and the record that names
    it carries that hash."""
    history = History(tmp_path, "https://t.example|ws")
    raw = export_file(RECORDED)
    digests = {
        history.keep(raw, RECORDED),
        history.keep(raw, text=dump_json(RECORDED)),
        history.keep(raw),
    }
    assert digests == {hashlib.sha256(raw).hexdigest()}
    (digest,) = digests
    path = history.snapshots.path(digest)
    assert path.read_bytes() == raw
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    fresh = History(tmp_path, "https://t.example|ws")  # another process: nothing noted
    assert history.content(digest) == fresh.content(digest) == RECORDED_SHA256
    history.append(
        Deploy(
            deploy_id="20250101T000000.000Z-abcdef",
            started_at="2025-01-01T00:00:00.000Z",
            finished_at="2025-01-01T00:00:01.000Z",
            plan_sha256="",
            bundle_manifest_sha256=None,
            commit=None,
            actor=None,
            dashboards=(
                DeployedDashboard(
                    "d", "d", "created", sha256=history.content(digest), snapshot=digest
                ),
            ),
        )
    )
    (deploy,) = fresh.deploys()
    assert deploy.dashboards[0].sha256 == RECORDED_SHA256
    assert fresh.deployed_data(digest) == RECORDED


def test_a_copy_that_is_not_an_export_file_is_kept_without_a_note(tmp_path: Path) -> None:
    """Bytes without a `data` object are stored, but no hash is noted: the record then reads
    the snapshot as before and leaves it out (no content to compare with later)."""
    history = History(tmp_path, "k")
    digest = history.keep(b'["not", "an", "export"]')
    assert history.snapshots.path(digest).exists()
    assert history.content(digest) is None


def test_the_folder_fsync_a_put_defers_is_done_before_a_durable_return(tmp_path: Path) -> None:
    """A snapshot kept without its folder fsync is owed one: a durable `put` (also of bytes
    already stored) and the record's `append` pay it before they return."""
    history = History(tmp_path, "k")
    store = history.snapshots
    digest = history.keep(b"{}")
    assert store._unsynced
    assert store.put(b"{}") == digest
    assert not store._unsynced
    history.keep(b"[]")
    assert store._unsynced
    history.append(
        Deploy("20250101T000000.000Z-abcdef", "", "", "", None, None, None, dashboards=())
    )
    assert not store._unsynced


def test_an_apply_records_the_hash_of_each_created_copy_as_read_from_its_snapshot(
    tmp_path: Path,
) -> None:
    """Each dashboard an apply creates is recorded with its snapshot and the content hash noted
    while it finished, which equals the reference hash of that snapshot's `data` on disk."""
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "version: 1\nsource: {url: 'sandbox://demo', workspace: 'Sales Dev'}\n"
        "target: {url: 'sandbox://demo', workspace: 'Sales Prod'}\n"
        "settings: {schema_pairs: [{replace: analytics_dev, target: analytics}]}\n"
        "dashboards:\n  - match: '*'\n"
    )
    state = tmp_path / "s"
    done = CliRunner().invoke(app, ["--state-dir", str(state), "apply", str(plan)])
    assert done.exit_code == 0, done.output
    (log,) = state.rglob("deploys.jsonl")
    (record,) = [json.loads(line) for line in log.read_text().splitlines()]
    created = [d for d in record["dashboards"] if d["result"] == "created"]
    assert created
    for dashboard in created:
        (snapshot,) = log.parent.glob(f"snapshots/{dashboard['snapshot']}.json")
        data = parse_json(snapshot.read_bytes(), source="snapshot")["data"]
        assert dashboard["sha256"] == oracle_sha256(data)

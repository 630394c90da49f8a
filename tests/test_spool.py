"""The payload spool keeps memory bounded: past its budget, payloads live on disk, owner-only,
and come back identical; a migration run entirely from disk gives the same result."""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path

from migrate.bundle import verify_bundle
from migrate.models import ConnectionPolicy, ExportFile
from migrate.plan import load_plan
from migrate.runner import RunOptions, run_export
from migrate.spool import PayloadSpool
from tests.helpers import apply, plan, results, write_plan


def export_file(n: int) -> ExportFile:
    """A small export file whose data carries `n`."""
    document = {"_meta": {"dashboardId": f"d{n}"}, "data": {"n": n, "layout": []}}
    return ExportFile(raw=json.dumps(document).encode(), document=document)


def test_spool_spills_past_its_budget_and_cleans_up(tmp_path: Path) -> None:
    """Past the budget, payloads go to 0600 files in a 0700 folder and come back equal."""
    spool = PayloadSpool(tmp_path / "spool", memory_budget=60)
    for n in range(5):
        spool.put(f"d{n}", export_file(n))
    for n in range(5):
        assert spool.get(f"d{n}").data == {"n": n, "layout": []}
        assert spool.raw(f"d{n}") == export_file(n).raw
    folders = list((tmp_path / "spool").iterdir())
    assert len(folders) == 1
    assert stat.S_IMODE(folders[0].stat().st_mode) == 0o700
    files = list(folders[0].iterdir())
    assert len(files) >= 4
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
    spool.close()
    assert not folders[0].exists()


def test_apply_with_every_payload_spooled_matches(tmp_path: Path) -> None:
    """With a zero memory budget, apply creates everything and a re-plan finds it unchanged."""
    path = write_plan(tmp_path, settings="  id_prefix: 'p-'\n")
    report = apply(path, tmp_path, spool_budget=0)
    assert set(results(report).values()) == {"created"}
    assert not any((tmp_path / "spool").iterdir())  # apply removes its spool
    again = plan(path, tmp_path, spool_budget=0)
    assert {d.action.value for d in again.dashboards} == {"unchanged"}
    assert again.spool is not None
    again.spool.close()
    assert not any((tmp_path / "spool").iterdir())


def test_export_writes_a_bundle_from_a_fully_spooled_run(tmp_path: Path) -> None:
    """With every payload on disk, export still writes each file byte for byte, then cleans up."""
    path = write_plan(tmp_path)
    options = RunOptions(spool_budget=0, policy=ConnectionPolicy(state_dir=tmp_path))
    summary = asyncio.run(run_export(load_plan(path), tmp_path / "bundle", options))
    files = verify_bundle(tmp_path / "bundle")
    assert len(files) == len(summary.dashboards) == 14
    assert not any((tmp_path / "spool").iterdir())


def test_a_spooled_export_reads_back_with_its_exact_values(tmp_path: Path) -> None:
    """An export spooled to disk parses back to the values it arrived with: an integer beyond
    64 bits stays an int (orjson alone would read a float) and a lone surrogate escape reads."""
    spool = PayloadSpool(tmp_path, memory_budget=0)
    raw = b'{"data":{"n":123456789012345678901234567890,"s":"\\ud800"}}'
    spool.put("d", ExportFile(raw=raw, document=json.loads(raw)))
    data = spool.get("d").document["data"]
    assert data == {"n": 123456789012345678901234567890, "s": "\ud800"}
    assert isinstance(data["n"], int)


def test_a_compact_export_is_held_as_bytes_and_parsed_only_when_asked(tmp_path: Path) -> None:
    """An export whose `data` is compact text is held in memory as its bytes only (its parsed
    value dropped, so the budget counts what memory holds); `get` parses it to equal values."""
    document = {"_meta": {"dashboardId": "d"}, "data": {"n": 1, "s": "é", "layout": [1, 2]}}
    raw = b'{"_meta":{"dashboardId":"d"},"data":{"n":1,"s":"\xc3\xa9","layout":[1,2]}}'
    spool = PayloadSpool(tmp_path / "spool", memory_budget=len(raw))
    spool.put("d", ExportFile(raw=raw, document=document))
    assert spool.held("d") is None  # not kept parsed
    assert not (tmp_path / "spool").exists()  # and not spilled to disk
    assert spool.raw("d") == raw
    assert spool.data_text("d") == b'{"n":1,"s":"\xc3\xa9","layout":[1,2]}'
    assert spool.get("d").document == document


def test_an_export_not_sent_as_text_is_held_parsed(tmp_path: Path) -> None:
    """An export whose `data` text is not compact is held parsed: it is parsed to be sent."""
    spool = PayloadSpool(tmp_path / "spool", memory_budget=1 << 20)
    spool.put("d", export_file(1))  # json.dumps writes spaces: not the compact text
    held = spool.held("d")
    assert held is not None and held.data == {"n": 1, "layout": []}
    assert spool.data_text("d") is None


def test_putting_a_key_again_replaces_what_it_held(tmp_path: Path) -> None:
    """A second `put` of a key replaces the first wherever each was held (memory or disk):
    `get`, `raw` and `data_text` give the second, and the first no longer counts against
    the budget."""
    compact = {"_meta": {"dashboardId": "d"}, "data": {"n": 1}}
    first = ExportFile(raw=b'{"_meta":{"dashboardId":"d"},"data":{"n":1}}', document=compact)
    spool = PayloadSpool(tmp_path / "spool", memory_budget=2 * len(first.raw) + 10)
    spool.put("d", first)  # in memory, as bytes
    second = export_file(2)  # larger than the budget left: to disk
    spool.put("d", second)
    assert spool.get("d").document == second.document
    assert spool.raw("d") == second.raw
    assert spool.data_text("d") is None
    spool.put("d", first)  # back to memory: the file is no longer what `d` holds
    assert spool.raw("d") == first.raw
    spool.put("e", first)  # `d`'s earlier copies no longer fill the budget
    assert spool.raw("e") == first.raw
    assert not list((tmp_path / "spool").rglob("*.json"))  # both in memory, no stale file
    spool.put("d", export_file(3))
    spool.put("f", export_file(4))  # file names never collide after a replacement
    assert spool.get("f").document == export_file(4).document
    spool.close()

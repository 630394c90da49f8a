"""The journal stays small (compaction) and its reading stays bounded, with resume unchanged."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from migrate.errors import PlanError
from migrate.journal import Journal, compact_journal, read_journal


def _line(event: str, **fields: Any) -> bytes:
    return (json.dumps({"ts": 1.0, "event": event, **fields}) + "\n").encode()


def _long_journal(path: Path, *, runs: int, dashboards: int) -> None:
    """`runs` runs over the same dashboards; the last one killed after one more intent."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        for run in range(runs):
            out.write(_line("start", pid=run))
            for n in range(dashboards):
                target = f"d{n}"
                out.write(_line("intent", id=target, target_id=target))
                result = "created" if (run + n) % 3 == 0 else "failed"
                out.write(_line("outcome", id=target, target_id=target, result=result))
            out.write(_line("end"))
        out.write(_line("start", pid=runs))
        out.write(_line("intent", id="late", target_id="late"))


def test_a_journal_of_100k_redundant_records_is_compacted_on_open(tmp_path: Path) -> None:
    """Opening a 100k-line journal rewrites it to a few lines per dashboard, and the prior run
    it reports (intended, confirmed, unfinished) is exactly what it was."""
    path = tmp_path / "journal" / "k.jsonl"
    _long_journal(path, runs=1000, dashboards=50)
    assert sum(1 for _ in path.open("rb")) > 100_000
    before = read_journal(path)
    assert before is not None
    assert not before.finished
    assert "late" in before.unconfirmed

    async def reopen() -> None:
        journal = Journal(tmp_path, "k")
        assert journal.prior == before
        await journal.close(finished=False)

    asyncio.run(reopen())
    lines = path.read_bytes().splitlines()
    assert len(lines) <= 3 * 51 + 3
    assert read_journal(path) == before
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_a_short_journal_is_left_alone(tmp_path: Path) -> None:
    """Below the threshold nothing is rewritten: an ordinary run pays nothing."""
    path = tmp_path / "j.jsonl"
    _long_journal(path, runs=2, dashboards=5)
    original = path.read_bytes()
    assert not compact_journal(path)
    assert path.read_bytes() == original


record = st.one_of(
    st.builds(lambda: ("start", {})),
    st.builds(lambda: ("end", {})),
    st.builds(lambda t: ("intent", {"target_id": t}), st.sampled_from("abcd")),
    st.builds(
        lambda t, r: ("outcome", {"target_id": t, "result": r}),
        st.sampled_from("abcd"),
        st.sampled_from(["created", "unchanged", "failed", "conflict"]),
    ),
    st.builds(
        lambda t, h: ("outcome", {"target_id": t, "result": "failed", "held": h, "server_id": t}),
        st.sampled_from("abcd"),
        st.sampled_from(["foreign_id", "readback_differs"]),
    ),
    st.just(("torn", {})),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(record, max_size=40))
def test_compaction_never_changes_what_the_journal_says(
    tmp_path_factory: pytest.TempPathFactory, records: list[tuple[str, dict[str, str]]]
) -> None:
    """For any sequence of records (corrupt lines and holds included), a compacted journal reads
    the same."""
    path = tmp_path_factory.mktemp("j") / "j.jsonl"
    path.write_bytes(
        b"".join(b'{"event": "int\n' if e == "torn" else _line(e, **f) for e, f in records)
    )
    before = read_journal(path)
    compact_journal(path, force=True)
    assert read_journal(path) == before
    compact_journal(path, force=True)
    assert read_journal(path) == before


def test_an_append_after_a_torn_last_line_is_not_swallowed(tmp_path: Path) -> None:
    """A crash that cut the last line without its newline: the next run's first record still
    reads as its own line."""
    path = tmp_path / "journal" / "k.jsonl"
    path.parent.mkdir()
    path.write_bytes(_line("start") + b'{"event": "intent", "target_id": "a"')

    async def run() -> None:
        async with Journal(tmp_path, "k") as journal:
            journal.record("intent", id="b", target_id="b")

    asyncio.run(run())
    prior = read_journal(path)
    assert prior is not None
    assert prior.intended == {"b"}
    assert prior.finished


def test_an_overlong_line_is_skipped_not_loaded(tmp_path: Path) -> None:
    """A multi-megabyte line without a newline is counted as corrupt, not parsed."""
    path = tmp_path / "j.jsonl"
    path.write_bytes(_line("intent", target_id="a") + b"x" * (3 << 20) + b"\n" + _line("start"))
    prior = read_journal(path)
    assert prior is not None
    assert prior.intended == {"a"}
    assert not prior.finished


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_journal_that_is_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    """A FIFO planted as the journal: PlanError naming it, instead of a run that never starts."""
    path = tmp_path / "journal" / "k.jsonl"
    path.parent.mkdir()
    os.mkfifo(path)
    with pytest.raises(PlanError, match="FIFO") as caught:
        Journal(tmp_path, "k")
    assert caught.value.file == str(path)

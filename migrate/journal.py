"""The apply journal: an append-only record of intent and outcome per dashboard.

One JSON object per line in `STATE_DIR/journal/<key>.jsonl`, keyed by target URL + workspace +
plan content, so a re-run of the same plan against the same target finds what the interrupted
run did. Lines are written with one `write` each (O_APPEND) and fsynced in batches off the event
loop, so journaling never serializes the imports. A truncated or corrupt last line — what a
crash mid-write leaves — is skipped when reading.

The target's inventory stays the source of truth for what exists: the journal tells a resumed
run what the previous one intended, so it can say so and count it, never to skip a check.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from migrate.storage import PRIVATE_FILE, ensure_private_dir


def journal_key(target_url: str, workspace: str, plan_digest: str) -> str:
    """Stable file key for one (target, plan) pair."""
    text = "\n".join((target_url, workspace, plan_digest))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


@dataclass(frozen=True)
class PriorRun:
    """What an earlier run of the same plan against the same target recorded."""

    intended: frozenset[str]  # target ids whose import was sent
    confirmed: frozenset[str]  # target ids whose import was confirmed created
    finished: bool  # the run ended normally (not killed)

    @property
    def unconfirmed(self) -> frozenset[str]:
        """Sent, but the outcome was never recorded: may or may not be in the target."""
        return self.intended - self.confirmed


def read_journal(path: Path) -> PriorRun | None:
    """What the journal at `path` says, or None if there is none. Corrupt lines are skipped."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    intended: set[str] = set()
    confirmed: set[str] = set()
    finished = True
    for line in raw.splitlines():
        try:
            record = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            continue  # a line cut short by a crash
        if not isinstance(record, dict):
            continue
        event = record.get("event")
        target = record.get("target_id")
        if event == "start":
            finished = False
        elif event == "end":
            finished = True
        elif event == "intent" and isinstance(target, str):
            intended.add(target)
        elif event == "outcome" and isinstance(target, str) and record.get("result") == "created":
            confirmed.add(target)
    return PriorRun(frozenset(intended), frozenset(confirmed), finished)


class Journal:
    """Appends records for one apply; use `async with`."""

    def __init__(self, state_dir: Path, key: str) -> None:
        directory = ensure_private_dir(state_dir / "journal")
        self.path = directory / f"{key}.jsonl"
        self.prior = read_journal(self.path)
        self._fd = os.open(
            self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, PRIVATE_FILE
        )
        os.fchmod(self._fd, PRIVATE_FILE)
        self._dirty = False
        self._sync_lock = asyncio.Lock()

    def record(self, event: str, **fields: Any) -> None:
        """Append one record (one write call, so a crash can only cut the last line)."""
        entry = {"ts": round(time.time(), 3), "event": event, **fields}
        line = json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n"
        os.write(self._fd, line.encode("utf-8"))
        self._dirty = True

    async def sync(self) -> None:
        """fsync what was written, in a worker thread; concurrent callers share one fsync."""
        if not self._dirty:
            return
        async with self._sync_lock:
            if self._dirty:
                self._dirty = False
                await asyncio.to_thread(os.fsync, self._fd)

    async def __aenter__(self) -> Journal:
        self.record("start", pid=os.getpid())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close(finished=exc_info[0] is None)

    async def close(self, *, finished: bool = True) -> None:
        """Record the end (when the run ended normally), fsync and close."""
        if self._fd < 0:
            return
        if finished:
            self.record("end")
        with contextlib.suppress(OSError):
            os.fsync(self._fd)
        os.close(self._fd)
        self._fd = -1

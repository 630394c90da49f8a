"""The apply journal: an append-only record of intent and outcome per dashboard.

One JSON object per line in `STATE_DIR/journal/<key>.jsonl`, keyed by the target (normalized URL
+ workspace) alone, so the next run against that target finds what an interrupted run did, even
when the plan was edited in between: holds and half-done replaces are facts about the target,
and the target lock already makes its runs one at a time. Lines are written with one `write`
each (O_APPEND) and fsynced in batches off the event loop, so journaling never serializes the
imports. A truncated or corrupt last line — what a crash mid-write leaves — is skipped when
reading. Reading streams with a cap per line, and a journal that is mostly redundant (every run
appends its `start` and `end`) is compacted atomically when a run opens it, so its size follows
the number of dashboards, not of runs.

The target's inventory stays the source of truth for what exists: the journal tells a resumed
run what the previous one intended, so it can say so and count it, never to skip a check. The one
thing it adds is a hold (`HELD_REASONS`): a dashboard this tool imported that the server stored
under another id, or that read back different, is not imported again or passed as skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import stat
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from migrate.errors import LocalFileError, PlanError
from migrate.redaction import redact
from migrate.storage import PRIVATE_FILE, ensure_private_dir, file_kind, write_private


def journal_key(target: str) -> str:
    """Stable file key for one target (`connection.target_key`)."""
    return "target-" + hashlib.sha256(target.encode("utf-8")).hexdigest()[:24]


HELD_REASONS = frozenset({"foreign_id", "readback_differs"})
"""Outcomes that hold a dashboard back on later runs until the user acts: the server stored the
import under an id of its own (`foreign_id`, with `server_id`), or this tool imported it and its
read-back differed from the source (`readback_differs`)."""

_RELEASING = frozenset({"created", "updated", "unchanged"})  # outcomes that end a hold


@dataclass(frozen=True)
class Held:
    """Why an earlier run holds a dashboard back: one of `HELD_REASONS`, and for `foreign_id`
    the id the server answered (untrusted text: escape it where it is shown)."""

    reason: str
    server_id: str | None = None


@dataclass(frozen=True)
class PriorRun:
    """What an earlier run of the same plan against the same target recorded."""

    intended: frozenset[str]  # target ids whose import was sent
    confirmed: frozenset[str]  # target ids whose import was confirmed created
    finished: bool  # the run ended normally (not killed)
    held: Mapping[str, Held] = field(default_factory=dict)  # target id -> why it is held
    # target id -> the latest `replace` record (docs/contract.md A7): where its replace got to
    replaces: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def unconfirmed(self) -> frozenset[str]:
        """Sent, but the outcome was never recorded: may or may not be in the target."""
        return self.intended - self.confirmed


COMPACT_MIN_LINES = 1000
"""A journal is rewritten once it holds this many lines and over half of them are redundant."""

_MAX_LINE = 64 * 1024  # a record is a few hundred bytes; a longer line is corrupt
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)


@dataclass
class _Scan:
    """One pass over a journal: what it says, and the few lines that say it."""

    prior: PriorRun
    kept: list[bytes]  # the lines a compacted journal holds, in order
    lines: int  # lines read, corrupt ones included
    ends_cleanly: bool  # empty, or the last byte is a newline

    @property
    def redundant(self) -> bool:
        """True when compacting would drop most of the journal."""
        return self.lines >= COMPACT_MIN_LINES and self.lines > 2 * len(self.kept)


def _lines(handle: BinaryIO) -> Iterator[bytes]:
    """The lines of `handle`, each read with a cap; an overlong line is skipped whole."""
    while line := handle.readline(_MAX_LINE + 1):
        if len(line) > _MAX_LINE and not line.endswith(b"\n"):
            while (rest := handle.readline(_MAX_LINE + 1)) and not rest.endswith(b"\n"):
                pass
            yield b""  # counted, never parsed
            continue
        yield line


def _scan(path: Path) -> _Scan | None:
    """Read the journal at `path` in one streaming pass; None if there is none.

    Memory stays bounded by the number of dashboards, not the journal's length. A journal that
    is not a regular file (a FIFO, a device, a symlink) is refused: PlanError naming it.
    """
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW | _NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _unusable(path, exc.strerror or str(exc)) from None
    with os.fdopen(fd, "rb") as handle:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise _unusable(path, f"it is a {file_kind(mode)}, not a regular file")
        start: bytes | None = None
        end: bytes | None = None
        latest: dict[tuple[str, str], bytes] = {}  # (target id, kind) -> its latest line
        replaces: dict[str, dict[str, Any]] = {}
        lines = 0
        for line in _lines(handle):
            lines += 1
            record = _record(line)
            if record is None:
                continue
            event, target = record.get("event"), record.get("target_id")
            if event == "start":
                start, end = line, None
            elif event == "end":
                end = line
            elif event == "intent" and isinstance(target, str):
                latest[(target, "intent")] = line
            elif event == "replace" and isinstance(target, str):
                latest[(target, "replace")] = line
                replaces[target] = record
            elif event == "outcome" and isinstance(target, str):
                result = record.get("result")
                if result in _RELEASING:
                    latest.pop((target, "held"), None)
                if result == "created":
                    kind = "created"
                elif record.get("held") in HELD_REASONS:
                    kind = "held"
                else:
                    kind = "outcome"
                # Moved to the end, so a compacted journal replays in the same order.
                latest.pop((target, kind), None)
                latest[(target, kind)] = line
        size = handle.seek(0, os.SEEK_END)
        ends_cleanly = size == 0 or os.pread(fd, 1, size - 1) == b"\n"
    intended = {target for target, kind in latest if kind == "intent"}
    confirmed = {target for target, kind in latest if kind == "created"}
    held = {target: _held(line) for (target, kind), line in latest.items() if kind == "held"}
    finished = start is None or end is not None
    # Replayed by read_journal, these lines give the same PriorRun: `start` first, `end` last.
    kept = [
        *(line for line in (start,) if line),
        *latest.values(),
        *(line for line in (end,) if line),
    ]
    prior = PriorRun(
        frozenset(intended), frozenset(confirmed), finished, held=held, replaces=replaces
    )
    return _Scan(prior, [_newline(line) for line in kept], lines, ends_cleanly)


def _record(line: bytes) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return None  # a line cut short by a crash
    return record if isinstance(record, dict) else None


def _held(line: bytes) -> Held:
    record = _record(line) or {}
    server_id = record.get("server_id")
    return Held(str(record.get("held")), server_id if isinstance(server_id, str) else None)


def _newline(line: bytes) -> bytes:
    return line if line.endswith(b"\n") else line + b"\n"


def _unusable(path: Path, why: str) -> PlanError:
    return LocalFileError(
        f"cannot use the journal: {why}",
        file=str(path),
        hint="remove that file; the target's inventory stays the source of truth",
    )


def read_journal(path: Path) -> PriorRun | None:
    """What the journal at `path` says, or None if there is none. Corrupt lines are skipped."""
    scan = _scan(path)
    return None if scan is None else scan.prior


def compact_journal(path: Path, *, force: bool = False) -> bool:
    """Rewrite the journal at `path` keeping only the lines `read_journal` needs; True if it did.

    Per dashboard the latest intent, the latest `created` outcome, the latest hold (see
    `HELD_REASONS`) not ended since, and the latest other outcome are kept, with the latest
    `start` and its `end`, so `read_journal` says the same before and after. Done only when
    most lines are redundant (see `COMPACT_MIN_LINES`), or `force`. It is atomic (temp file,
    fsync, rename, fsync of the folder): a crash leaves the old journal or the new one. The
    caller must be the journal's only writer (it holds the target's lock).
    """
    scan = _scan(path)
    if scan is None or not (force or scan.redundant):
        return False
    write_private(path, b"".join(scan.kept))
    return True


class Journal:
    """Appends records for one apply; use `async with`."""

    def __init__(self, state_dir: Path, key: str) -> None:
        """Open (creating) the journal; PlanError (exit 3) naming it when it cannot be used."""
        self.path = state_dir / "journal" / f"{key}.jsonl"
        try:
            self._open()
        except OSError as exc:
            raise _unusable(self.path, exc.strerror or str(exc)) from None
        self._dirty = False
        self._sync_lock = asyncio.Lock()
        self._broken: LocalFileError | None = None

    def _open(self) -> None:
        ensure_private_dir(self.path.parent)
        scan = _scan(self.path)
        self.prior = None if scan is None else scan.prior
        if scan is not None and scan.redundant:
            # Every run appends; without this a long-lived journal costs every later run.
            write_private(self.path, b"".join(scan.kept))
            scan.ends_cleanly = True
        self._fd = os.open(
            self.path,
            os.O_WRONLY | os.O_APPEND | os.O_CREAT | _NOFOLLOW | _NONBLOCK,
            PRIVATE_FILE,
        )
        os.fchmod(self._fd, PRIVATE_FILE)
        if scan is not None and not scan.ends_cleanly:
            os.write(self._fd, b"\n")  # a torn last line must not swallow the next record

    def record(self, event: str, **fields: Any) -> None:
        """Append one record (one write call, so a crash can only cut the last line).

        Redacted, and ASCII (a lone surrogate in an id is escaped, as JSON allows). When a write
        fails (disk full, file too large) LocalFileError is raised, and again on every later
        call: an import is journaled before it is sent, so no import starts after the failure.
        """
        if self._broken is not None:
            raise self._broken
        entry = {"ts": round(time.time(), 3), "event": event, **fields}
        line = redact(json.dumps(entry, ensure_ascii=True, separators=(",", ":"))) + "\n"
        try:
            os.write(self._fd, line.encode("ascii"))
        except OSError as exc:
            self._broken = LocalFileError(
                f"cannot write the journal ({exc.strerror or exc}); the run stopped before its"
                " next import",
                file=str(self.path),
                hint="free space (or fix the file), then run again: the target's inventory"
                " shows what was imported",
            )
            raise self._broken from exc
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

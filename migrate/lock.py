"""One writer per target: a lock file in the state directory per target URL + workspace.

The lock holds its id, the holder's pid, host and start time. It is created atomically (written
to a temp file, then hard-linked into place, which fails if a lock exists), so a crash can never
leave a half-written lock. A lock whose pid is dead on this host is taken over with a warning;
any other is broken only by `migrate unlock LOCK_ID`. The Databrain API has no lock of its own,
so this guards only runs that share a state directory (CI: serialize runs per target).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from migrate.errors import LockHeldError, UsageError
from migrate.storage import create_private, ensure_private_dir, read_regular

_LOCK_CAP = 64 * 1024  # a lock is a hundred bytes; a bigger file is not one of ours
_MAX_PID = 2**31 - 1  # pid_t is a signed 32-bit integer


@dataclass(frozen=True)
class LockInfo:
    """Who holds a target lock."""

    lock_id: str
    pid: int
    host: str
    started_at: float
    target: str

    def describe(self) -> str:
        """A line naming the holder."""
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started_at))
        return f"lock {self.lock_id} held by pid {self.pid} on {self.host} since {started}"


def _locks_dir(state_dir: Path) -> Path:
    return state_dir / "locks"


def _lock_path(state_dir: Path, target: str) -> Path:
    digest = hashlib.sha256(target.encode("utf-8")).hexdigest()[:24]
    return _locks_dir(state_dir) / f"{digest}.lock"


def _read(path: Path) -> LockInfo | None:
    try:
        doc = json.loads(read_regular(path, limit=_LOCK_CAP, follow_symlinks=False))
        return LockInfo(
            str(doc["lock_id"]),
            int(doc["pid"]),
            str(doc["host"]),
            float(doc["started_at"]),
            str(doc["target"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _pid_alive(pid: int) -> bool:
    """True when process `pid` exists on this host.

    Only positive pids name one process: `kill(0)` and `kill(-1)` signal process groups (and
    would succeed), and a pid past the system's range cannot exist, so a lock naming any of them
    is a dead holder's (or a forged one's), never a live run's.
    """
    if not 0 < pid <= _MAX_PID:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    except (OverflowError, OSError):
        return False  # not a pid this system can have
    return True


class TargetLock:
    """Holds the lock of one target for the duration of an apply; use as a context manager."""

    def __init__(
        self, state_dir: Path, target: str, *, warn: Callable[[str], None] | None = None
    ) -> None:
        self.state_dir = state_dir
        self.target = target
        self.path = _lock_path(state_dir, target)
        self.info = LockInfo(
            uuid.uuid4().hex[:12], os.getpid(), socket.gethostname(), time.time(), target
        )
        self._warn = warn or (lambda message: None)

    def acquire(self) -> None:
        """Take the lock or raise LockHeldError (exit 7) naming the holder and the fix."""
        ensure_private_dir(_locks_dir(self.state_dir))
        for _ in range(3):
            if self._try_create():
                return
            holder = _read(self.path)
            if holder is None:
                # Unreadable: written by something else, or removed meanwhile. Retry once more.
                time.sleep(0.05)
                continue
            if holder.host == self.info.host and not _pid_alive(holder.pid):
                self._warn(f"taking over {holder.describe()}: that process is gone")
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
                continue
            raise LockHeldError(
                f"another run holds the target {self.target}: {holder.describe()}",
                hint=f"wait for it to finish; if it is dead: migrate unlock {holder.lock_id}",
            )
        raise LockHeldError(
            f"cannot take the lock {self.path} for {self.target}",
            hint="inspect or remove that file, or run: migrate unlock with its lock id",
        )

    def _try_create(self) -> bool:
        tmp = self.path.with_name(f".{self.path.name}.{self.info.lock_id}.tmp")
        create_private(tmp, json.dumps(self.info.__dict__))
        try:
            os.link(tmp, self.path)  # atomic: fails if a lock is already there
            return True
        except FileExistsError:
            return False
        finally:
            tmp.unlink()

    def release(self) -> None:
        """Remove the lock if it is still ours."""
        holder = _read(self.path)
        if holder is not None and holder.lock_id == self.info.lock_id:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    def __enter__(self) -> TargetLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def break_lock(state_dir: Path, lock_id: str) -> LockInfo:
    """Remove the lock with `lock_id`; UsageError (exit 2) when no such lock exists."""
    directory = _locks_dir(state_dir)
    for path in sorted(directory.glob("*.lock")) if directory.is_dir() else []:
        info = _read(path)
        if info is not None and info.lock_id == lock_id:
            path.unlink()
            return info
    raise UsageError(
        f"no lock {lock_id!r} in {directory}",
        hint="the lock id is printed by the run that was refused; check --state-dir",
    )

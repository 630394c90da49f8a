"""Content-addressed snapshots of target dashboards, kept per target (docs/contract.md A9).

A snapshot is an export file exactly as the target returned it, stored as
`<history-dir>/<target folder>/snapshots/<sha256>.json`, where the digest is of those bytes.
Writing is atomic and durable (temp file, fsync, rename, fsync of the folder) and owner-only,
so a snapshot that `put` returned is there after a crash (a caller storing many may fsync the
folder once for all of them: `sync`); storing the same bytes twice is one file. The target
folder (`target_folder`) is shared with the rest of a target's history.
"""

from __future__ import annotations

import hashlib
import re
import threading
from pathlib import Path

from migrate.errors import LocalFileError, PlanError
from migrate.storage import (
    FileTooLargeError,
    ensure_private_dir,
    fsync_dir,
    read_regular,
    write_private,
)

SNAPSHOT_CAP = 64 * 1024 * 1024  # the JSON size cap: no export the client accepts is larger
_DIGEST = re.compile(r"[0-9a-f]{64}")
_UNSAFE = re.compile(r"[^a-z0-9]+")


def default_history_dir(state_dir: Path) -> Path:
    """Where history lives unless `--history` says otherwise: `<state-dir>/history/`."""
    return state_dir / "history"


def target_folder(history_dir: Path, target: str) -> Path:
    """The folder of one target (`connection.target_key`): readable, and never shared by two
    targets (a digest of the key ends the name)."""
    readable = _UNSAFE.sub("-", target.lower()).strip("-")[:60]
    digest = hashlib.sha256(target.encode("utf-8")).hexdigest()[:16]
    return history_dir / f"{readable}-{digest}"


def refuse_links(*folders: Path) -> None:
    """LocalFileError (exit 3) when one of `folders` (a target folder, its snapshots/) is a
    symlink: the history is read and written inside the history folder only, whatever a
    restored cache or a committed folder holds."""
    for folder in folders:
        if folder.is_symlink():
            raise LocalFileError(
                f"the history folder {folder.name} is a symlink: refused",
                file=str(folder),
                hint="restore the history folder from where CI keeps it, as plain folders",
            )


class SnapshotStore:
    """The snapshots of one target."""

    def __init__(self, history_dir: Path, target: str) -> None:
        self.folder = target_folder(history_dir, target) / "snapshots"
        self._unsynced = False  # a put renamed a file in and the folder was not fsynced since
        self._sync_lock = threading.Lock()

    def path(self, digest: str) -> Path:
        """Where the snapshot `digest` lives (it may not exist)."""
        if not _DIGEST.fullmatch(digest):
            raise ValueError(f"not a sha256 digest: {digest!r}")
        return self.folder / f"{digest}.json"

    def put(self, raw: bytes, *, sync_dir: bool = True) -> str:
        """Store `raw` durably (unless already stored) and return its sha256.

        With `sync_dir` False only the file's bytes are durable on return: its name becomes
        durable with the next `sync` (one for many snapshots), which must come before anything
        that names the snapshot is made durable.
        """
        digest = hashlib.sha256(raw).hexdigest()
        path = self.path(digest)
        refuse_links(self.folder.parent, self.folder)
        if not self._holds(path, digest):
            ensure_private_dir(self.folder)
            write_private(path, raw, sync_dir=False)
            self._unsynced = True
        if sync_dir:
            # Also when the file was there: another put may have stored it without the fsync.
            self.sync()
        return digest

    def sync(self) -> None:
        """Make the names of the snapshots this store wrote durable: one fsync of the folder,
        when a `put` left one to do. Safe from several threads at once."""
        # Under the lock, a caller that finds nothing to do returns only after the fsync that
        # covers its rename has finished; cleared before the fsync, so a rename landing during
        # it sets the flag again.
        with self._sync_lock:
            if self._unsynced:
                self._unsynced = False
                fsync_dir(self.folder)

    def get(self, digest: str) -> bytes:
        """The bytes of snapshot `digest`; PlanError (exit 3) when it is missing or altered."""
        path = self.path(digest)
        refuse_links(self.folder.parent, self.folder)
        try:
            raw = read_regular(path, limit=SNAPSHOT_CAP, follow_symlinks=False)
        except (OSError, FileTooLargeError) as exc:
            raise PlanError(
                f"cannot read snapshot {digest[:12]}: {exc.strerror or exc}",
                file=str(path),
                hint="restore the history folder from where CI keeps it",
            ) from None
        if hashlib.sha256(raw).hexdigest() != digest:
            raise PlanError(
                f"snapshot {digest[:12]} does not match its digest: it was altered",
                file=str(path),
                hint="restore the history folder from where CI keeps it",
            )
        return raw

    def _holds(self, path: Path, digest: str) -> bool:
        try:
            raw = read_regular(path, limit=SNAPSHOT_CAP, follow_symlinks=False)
        except OSError:
            return False
        return hashlib.sha256(raw).hexdigest() == digest

"""Local files written safely: atomically (temp file, fsync, rename) and owner-only, whatever
the umask. Reports, saved plans, journals, locks, spools and bundles all go through here: every
directory the tool creates is 0700, every file 0600."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from migrate.errors import PlanError

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_BINARY = getattr(os, "O_BINARY", 0)


def ensure_private_dir(path: Path) -> Path:
    """Create `path` and every missing parent, each owner-only (0700) whatever the umask.

    Directories that already exist are left as they are: they are not ours to change.
    """
    missing: list[Path] = []
    here = path
    while not here.is_dir() and here.parent != here:
        missing.append(here)
        here = here.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=PRIVATE_DIR)
        except FileExistsError:
            if not directory.is_dir():
                raise
            continue  # made by another process meanwhile
        directory.chmod(PRIVATE_DIR)  # mkdir's mode is masked by the umask
    return path


def create_private(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Create `path` holding `data`, mode 0600 whatever the umask.

    FileExistsError when anything is at `path` (a symlink included: it is never followed).
    `durable` fsyncs the file before returning; a scratch file may skip that.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _BINARY, PRIVATE_FILE)
    try:
        os.fchmod(fd, PRIVATE_FILE)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)


def read_input(path: Path, *, what: str, hint: str = "check the path and its permissions") -> bytes:
    """The bytes of an input file; PlanError (exit 3) naming it and `what` it was meant to be."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise PlanError(
            f"cannot read {what}: {exc.strerror or exc}", file=str(path), hint=hint
        ) from exc


def write_private(path: Path, content: str | bytes) -> None:
    """Replace `path` atomically with `content`, mode 0600. A reader never sees a partial file."""
    data = content.encode("utf-8") if isinstance(content, str) else content
    parent = ensure_private_dir(path.parent if str(path.parent) else Path())
    fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, PRIVATE_FILE)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        # Renaming over a planted symlink replaces the link itself; its target is never written.
        Path(tmp).replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            Path(tmp).unlink()
        raise
    fsync_dir(parent)


def fsync_dir(path: Path) -> None:
    """Make a rename durable (POSIX); harmless where directories cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)

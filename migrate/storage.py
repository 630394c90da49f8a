"""Local files written safely: atomically (temp file, fsync, rename) and owner-only, whatever
the umask. Reports, saved plans, journals, locks and bundles all go through here."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from migrate.errors import PlanError

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700


def ensure_private_dir(path: Path) -> Path:
    """Create `path` (and parents) if needed; a directory we create is owner-only."""
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(PRIVATE_DIR)
    return path


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
    parent = path.parent if str(path.parent) else Path()
    parent.mkdir(parents=True, exist_ok=True)
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

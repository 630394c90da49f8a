"""Local files written safely: atomically (temp file, fsync, rename) and owner-only, whatever
the umask, and never holding a secret. Reports, saved plans, journals, locks, spools and bundles
all go through here: every directory the tool creates is 0700, every file 0600. Text is redacted
on its way out (`migrate.redaction`); bytes that must stay exact (an API's payload) are refused
when they hold a secret."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from pathlib import Path

from migrate.errors import CredentialEchoError, LocalFileError, PlanError
from migrate.redaction import holds_secret, redact

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


def _checked_bytes(path: Path, content: str | bytes) -> bytes:
    """What is written for `content`: text redacted and encoded, bytes as they are.

    Text is UTF-8; a lone surrogate (valid in JSON, not in UTF-8) is written as its `\\uXXXX`
    escape, which a JSON reader reads back as the same string. Bytes holding a registered secret
    are refused (CredentialEchoError) rather than altered: they are an API's exact answer.
    """
    if isinstance(content, str):
        return redact(content).encode("utf-8", "backslashreplace")
    if holds_secret(content):
        raise CredentialEchoError(
            "the server's answer holds a credential this run sent (a token or key echoed"
            f" back); it was not written to {path.name}",
            hint="the endpoint echoes credentials into its data: report it to its operator",
        )
    return content


def create_private(path: Path, content: str | bytes, *, durable: bool = True) -> None:
    """Create `path` holding `content`, mode 0600 whatever the umask.

    Text is redacted; bytes holding a secret are refused (see `write_private`).
    FileExistsError when anything is at `path` (a symlink included: it is never followed).
    `durable` fsyncs the file before returning; a scratch file may skip that.
    """
    data = _checked_bytes(path, content)
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


INPUT_CAP = 64 * 1024 * 1024
"""The most bytes `read_input` reads from one file; the JSON size cap, so no input is cut short."""

_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_CHUNK = 1 << 20


class NotRegularFileError(OSError):
    """The path names a FIFO, device, socket or directory: nothing is read from it."""


class FileTooLargeError(OSError):
    """The file holds more bytes than the reader's cap."""


def file_kind(mode: int) -> str:
    """What a `st_mode` is, in words: `regular file`, `FIFO`, `character device`, ..."""
    kinds = (
        (stat.S_ISREG, "regular file"),
        (stat.S_ISDIR, "directory"),
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISLNK, "symlink"),
    )
    return next((name for test, name in kinds if test(mode)), "special file")


def read_regular(
    path: Path | str, *, limit: int, follow_symlinks: bool = True, dir_fd: int | None = None
) -> bytes:
    """The bytes of regular file `path`, at most `limit` of them, whatever its size claims.

    Anything but a regular file is refused (NotRegularFileError) before it is opened, and again
    after (the path may be swapped in between): a FIFO would block the open or the reads, a
    device (`/dev/zero`) never ends and reports size 0. The open never blocks (O_NONBLOCK), and
    at most `limit + 1` bytes are read, so a file that grows or lies fails with
    FileTooLargeError instead of filling memory. With `follow_symlinks=False` a symlink is
    refused too (ELOOP). Other OSErrors pass through.
    """
    mode = os.stat(path, dir_fd=dir_fd, follow_symlinks=follow_symlinks).st_mode
    if not stat.S_ISREG(mode):
        raise NotRegularFileError(errno.EINVAL, f"is a {file_kind(mode)}, not a regular file")
    flags = os.O_RDONLY | _NONBLOCK | _BINARY | _CLOEXEC | (0 if follow_symlinks else _NOFOLLOW)
    fd = os.open(path, flags, dir_fd=dir_fd)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFileError(errno.EINVAL, f"is a {file_kind(mode)}, not a regular file")
        chunks: list[bytes] = []
        left = limit + 1
        while left > 0 and (chunk := os.read(fd, min(_CHUNK, left))):
            chunks.append(chunk)
            left -= len(chunk)
    finally:
        os.close(fd)
    if left <= 0:
        raise FileTooLargeError(errno.EFBIG, f"holds more than {limit:,} bytes")
    return b"".join(chunks)


def read_input(
    path: Path,
    *,
    what: str,
    hint: str = "check the path and its permissions",
    limit: int = INPUT_CAP,
) -> bytes:
    """The bytes of an input file; PlanError (exit 3) naming it and `what` it was meant to be.

    Reads at most `limit` bytes (more is refused, whatever the file's size claims); a FIFO,
    device, socket or directory is refused before it is opened (see `read_regular`). A symlink
    the user named is followed: the checks apply to the file it points at.
    """
    try:
        return read_regular(path, limit=limit)
    except NotRegularFileError as exc:
        raise PlanError(
            f"cannot read {what}: it {exc.strerror}",
            file=str(path),
            hint=f"give the path of the {what} itself; pipes, devices and folders are not read",
        ) from None
    except FileTooLargeError as exc:
        raise PlanError(
            f"cannot read {what}: it {exc.strerror}, over the limit",
            file=str(path),
            hint=f"is this really a {what}?",
        ) from None
    except OSError as exc:
        raise PlanError(
            f"cannot read {what}: {exc.strerror or exc}", file=str(path), hint=hint
        ) from exc


def write_private(path: Path, content: str | bytes, *, sync_dir: bool = True) -> None:
    """Replace `path` atomically with `content`, mode 0600. A reader never sees a partial file.

    The one way the tool writes a whole file: text (reports, JUnit, summaries, saved plans,
    manifests) has every registered secret redacted; bytes (an API's exact payload) holding one
    are refused with CredentialEchoError (exit 5), never silently altered. The file's bytes are
    fsynced; so is its folder (the rename), unless `sync_dir` is False: then the caller makes
    the rename durable (`fsync_dir` of the folder, once for many files) before it relies on it.
    """
    data = _checked_bytes(path, content)
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
    if sync_dir:
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


def output_problem(path: Path) -> str | None:
    """Why a file could not be written at `path`, or None when it looks writable.

    Checked before a run does any work, so an unusable `--report` is a usage error at once
    rather than a lost report after every import. Not a guarantee (the disk may fill later).
    """
    if path.is_dir():
        return "it is a folder"
    here = path.parent if str(path.parent) else Path()
    while not here.exists():
        if here.is_symlink():
            return f"{here} is a dangling symlink"
        if here.parent == here:
            break
        here = here.parent
    if not here.is_dir():
        return f"{here} is not a folder"
    if not os.access(here, os.W_OK | os.X_OK):
        return f"folder {here} is not writable"
    if path.exists() and not os.access(path, os.W_OK):
        return "the file is not writable"
    return None


def check_state_dir(path: Path) -> None:
    """Create the state dir if missing and prove a file can be made in it; LocalFileError
    (exit 3) naming it when not (a file in its place, read-only, no space), before any work."""
    try:
        ensure_private_dir(path)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".probe.", suffix=".tmp")
        os.close(fd)
        Path(probe).unlink()
    except OSError as exc:
        raise LocalFileError(
            f"cannot use the state dir: {exc.strerror or exc}",
            file=str(path),
            hint="point --state-dir at a folder this user can write",
        ) from None

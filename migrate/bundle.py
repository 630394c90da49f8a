"""Bundles (docs/contract.md A4): reviewed export files promotion applies without the source API.

    DIR/manifest.json              {"format": "migrate-bundle", "version": 1, "source": {...},
                                    "exported_at", "dashboards": [{id, name, file, sha256,
                                    depends_on}]}
    DIR/dashboards/<safe>.json     each export file exactly as the API returned it

File names come from remote ids, so `safe_name` makes any id a single, pure-ASCII, lowercase path
component of at most 200 bytes that is no Windows device name: it can never leave `dashboards/`,
and distinct ids never share a file, also on a case-insensitive file system. A bundle is written
whole or not at all (temporary sibling directory, renamed into place), owner-only whatever the
umask, and no symlink found in the output folder is ever followed. `verify_bundle` refuses a
bundle whose manifest does not parse or fails `migrate schema bundle` (each problem located by
its JSON path), or whose files are missing, extra or changed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from migrate.errors import BundleError, PlanError
from migrate.jsontext import parse_json
from migrate.models import DashboardRef, ExportFile, SourceInfo
from migrate.safename import id_from_safe_name, safe_name
from migrate.schema import format_problems
from migrate.storage import (
    INPUT_CAP,
    PRIVATE_DIR,
    create_private,
    ensure_private_dir,
    fsync_dir,
    read_regular,
)

BUNDLE_FORMAT = "migrate-bundle"
BUNDLE_VERSION = 1
MANIFEST = "manifest.json"
DASHBOARDS = "dashboards"
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_BINARY = getattr(os, "O_BINARY", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_DIR_FD = os.open in os.supports_dir_fd and bool(_NOFOLLOW and _DIRECTORY)
_MAX_PROBLEMS = 50


def bundle_file(dashboard_id: str) -> str:
    """The manifest's `file` for `dashboard_id`: `dashboards/<safe_name>`."""
    return f"{DASHBOARDS}/{safe_name(dashboard_id)}"


# --- manifest ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class BundleEntry:
    """One dashboard of a bundle, as its manifest lists it."""

    id: str
    name: str
    file: str
    sha256: str
    depends_on: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """The A4 manifest shape."""
        return {
            "id": self.id,
            "name": self.name,
            "file": self.file,
            "sha256": self.sha256,
            "depends_on": list(self.depends_on),
        }


@dataclass(frozen=True)
class Manifest:
    """A verified bundle's manifest; `sha256` is that of the manifest file's bytes."""

    source: SourceInfo  # url and workspace only
    exported_at: str
    entries: tuple[BundleEntry, ...]
    sha256: str


@dataclass(frozen=True)
class BundleItem:
    """One dashboard to write into a bundle.

    `content` is the raw export, or a function returning it: a large bundle is then written one
    payload at a time rather than held in memory whole.
    """

    id: str
    name: str
    content: bytes | Callable[[], bytes]
    depends_on: tuple[str, ...] = ()


def _source_of(source: SourceInfo) -> dict[str, str]:
    """url (without any user:password@) and workspace: a bundle never holds a credential."""
    url = source.url
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        url = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return {"url": url, "workspace": source.workspace}


def _manifest_text(source: SourceInfo, entries: Sequence[BundleEntry]) -> str:
    document = {
        "format": BUNDLE_FORMAT,
        "version": BUNDLE_VERSION,
        "source": _source_of(source),
        "exported_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "dashboards": [entry.as_dict() for entry in entries],
    }
    # ASCII escapes: any id (even one with a lone surrogate) survives the round trip. Text, not
    # bytes: written through redaction, as a listing's names may echo a credential.
    return json.dumps(document, indent=2, ensure_ascii=True) + "\n"


# --- writing ----------------------------------------------------------------------------------


def _is_previous_bundle(out_dir: Path) -> bool:
    """True when `out_dir` holds only what a bundle holds and its manifest says it is one."""
    names = {entry.name for entry in os.scandir(out_dir)}
    if not names:
        return True
    if MANIFEST not in names or not names <= {MANIFEST, DASHBOARDS}:
        return False
    try:
        document = parse_json(_read_nofollow(out_dir / MANIFEST), source=str(out_dir / MANIFEST))
    except (OSError, PlanError):
        return False
    return isinstance(document, dict) and document.get("format") == BUNDLE_FORMAT


def write_bundle(out_dir: Path, source: SourceInfo, items: Sequence[BundleItem]) -> Path:
    """Write a bundle of `items`, exported from `source`, at `out_dir`.

    Whole or absent: everything is written into a temporary sibling directory that is renamed
    into place at the end. `out_dir` may be missing, an empty directory or an earlier bundle
    (replaced); anything else — a file, a symlink, a folder with other content — is refused
    with BundleError. Directories 0700 and files 0600 whatever the umask. Returns the path of
    `manifest.json`.
    """
    # Lexical, not resolve(): a symlinked out_dir must be seen (and refused), not followed.
    out_dir = Path(os.path.abspath(out_dir))  # noqa: PTH100
    if not out_dir.name:
        raise BundleError("a bundle needs a folder of its own", file=str(out_dir))
    ids = [item.id for item in items]
    if len(set(ids)) != len(ids):
        raise BundleError("the same dashboard id is listed twice", file=str(out_dir))
    if out_dir.is_symlink():
        raise BundleError(
            "the output folder is a symlink; it is not followed",
            file=str(out_dir),
            hint="remove the link, or choose another --out folder",
        )
    if out_dir.exists():
        if not out_dir.is_dir():
            raise BundleError(
                "exists and is not a folder", file=str(out_dir), hint="choose another --out"
            )
        if not _is_previous_bundle(out_dir):
            raise BundleError(
                "the folder is not empty and holds no earlier bundle; nothing was written",
                file=str(out_dir),
                hint="choose an empty or new folder for --out",
            )
    parent = ensure_private_dir(out_dir.parent)
    staging = Path(tempfile.mkdtemp(dir=parent, prefix=f".{out_dir.name}.", suffix=".tmp"))
    try:
        staging.chmod(PRIVATE_DIR)
        folder = staging / DASHBOARDS
        folder.mkdir(mode=PRIVATE_DIR)
        folder.chmod(PRIVATE_DIR)
        entries = []
        for item in items:
            raw = item.content() if callable(item.content) else item.content
            relative = bundle_file(item.id)
            create_private(staging / relative, raw)
            entries.append(
                BundleEntry(
                    item.id, item.name, relative, hashlib.sha256(raw).hexdigest(), item.depends_on
                )
            )
        fsync_dir(folder)
        create_private(staging / MANIFEST, _manifest_text(source, entries))
        fsync_dir(staging)
        _move_into_place(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    fsync_dir(parent)
    return out_dir / MANIFEST


def _move_into_place(staging: Path, out_dir: Path) -> None:
    """Rename `staging` to `out_dir`; an earlier bundle there is moved aside, then removed."""
    try:
        staging.rename(out_dir)  # POSIX: atomic, also over an empty folder
        return
    except OSError:
        if not out_dir.is_dir() or out_dir.is_symlink():
            raise
    old = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.", suffix=".old"))
    old.rmdir()
    out_dir.rename(old)
    try:
        staging.rename(out_dir)
    except BaseException:
        old.rename(out_dir)
        raise
    shutil.rmtree(old, ignore_errors=True)  # never follows symlinks


# --- reading and verifying --------------------------------------------------------------------


def _read_nofollow(path: Path | str, *, dir_fd: int | None = None) -> bytes:
    """The bytes of regular file `path`; OSError if it is a symlink or not a regular file."""
    # Never opens a FIFO or device (an open or read that would hang), never reads past the cap.
    return read_regular(path, limit=INPUT_CAP, follow_symlinks=False, dir_fd=dir_fd)


def _read_entry(directory: Path, relative: str) -> bytes:
    """A `dashboards/NAME` file of a bundle, following no symlink: not `dashboards`, not NAME."""
    folder, _, name = relative.partition("/")
    if folder != DASHBOARDS or not name or "/" in name:
        raise FileNotFoundError(relative)
    if not _DIR_FD:
        if (directory / folder).is_symlink():
            raise NotADirectoryError(f"{directory / folder} is a symlink")
        return _read_nofollow(directory / relative)
    dir_fd = os.open(directory / folder, os.O_RDONLY | _NOFOLLOW | _DIRECTORY)
    try:
        return _read_nofollow(name, dir_fd=dir_fd)
    finally:
        os.close(dir_fd)


def _refuse(directory: Path, problems: Sequence[tuple[str, str]]) -> BundleError:
    lines = [f"  {where}: {what}" for where, what in problems[:_MAX_PROBLEMS]]
    if len(problems) > _MAX_PROBLEMS:
        lines.append(f"  ... and {len(problems) - _MAX_PROBLEMS} more")
    count = len(problems)
    return BundleError(
        f"bundle refused, {count} problem{'s' * (count != 1)}:\n" + "\n".join(lines),
        file=str(directory),
        hint="export the bundle again (migrate export PLAN --out DIR); never edit its files",
    )


def _entries(document: Any) -> tuple[SourceInfo, list[BundleEntry], list[str]]:
    """The manifest's source and entries, plus what a schema cannot say is wrong (an id listed
    twice). `document` has passed `migrate schema bundle`."""
    entries = [
        BundleEntry(
            item["id"],
            item["name"],
            item["file"],
            item["sha256"],
            tuple(item.get("depends_on", ())),
        )
        for item in document["dashboards"]
    ]
    wrong: list[str] = []
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        if entry.id in seen:
            wrong.append(f"dashboards[{index}].id: {entry.id!r} is listed twice")
        seen.add(entry.id)
    source = SourceInfo(document["source"]["url"], document["source"]["workspace"])
    return source, entries, wrong


def load_manifest(directory: Path) -> Manifest:
    """Check everything `verify_bundle` promises; BundleError naming each problem file."""
    directory = Path(directory)
    if directory.is_symlink():
        raise BundleError("the bundle folder is a symlink; it is not followed", file=str(directory))
    if not directory.is_dir():
        raise BundleError(
            "no such bundle folder" if not directory.exists() else "not a folder",
            file=str(directory),
            hint="pass the folder `migrate export --out` wrote",
        )
    manifest_path = directory / MANIFEST
    try:
        raw = _read_nofollow(manifest_path)
    except FileNotFoundError:
        raise _refuse(directory, [(str(manifest_path), "missing: this is not a bundle")]) from None
    except OSError as exc:
        raise _refuse(
            directory, [(str(manifest_path), f"unreadable (symlink or not a file): {exc}")]
        ) from None
    try:
        document = parse_json(raw, source=str(manifest_path))
    except PlanError as exc:
        raise _refuse(
            directory, [(exc.location, f"manifest does not parse: {exc.message}")]
        ) from None
    shape = format_problems("bundle", document)
    if shape:
        # Its entries cannot be trusted, so neither can any check of the files against them.
        raise _refuse(directory, [(str(manifest_path), str(problem)) for problem in shape])
    source, entries, wrong = _entries(document)
    problems: list[tuple[str, str]] = [(str(manifest_path), what) for what in wrong]
    listed: set[str] = set()
    for entry in entries:
        path = directory / entry.file
        expected = bundle_file(entry.id)
        if entry.file != expected:
            problems.append(
                (
                    str(path),
                    f"listed for id {entry.id!r}, whose file must be {expected!r}"
                    " (a bundle file never leaves dashboards/)",
                )
            )
            continue
        listed.add(expected)
        try:
            content = _read_entry(directory, entry.file)
        except FileNotFoundError:
            problems.append((str(path), f"missing (listed for {entry.id!r})"))
            continue
        except OSError:
            problems.append((str(path), "not a regular file (a symlink is never followed)"))
            continue
        if hashlib.sha256(content).hexdigest() != entry.sha256:
            problems.append((str(path), "sha256 differs from the manifest: changed after export"))
    problems.extend((str(directory / extra), what) for extra, what in _extras(directory, listed))
    if problems:
        raise _refuse(directory, problems)
    return Manifest(
        source, str(document["exported_at"]), tuple(entries), hashlib.sha256(raw).hexdigest()
    )


def _extras(directory: Path, listed: set[str]) -> list[tuple[str, str]]:
    """Every entry under `directory` that the manifest does not account for."""
    found: list[tuple[str, str]] = []
    for entry in sorted(os.scandir(directory), key=lambda e: e.name):
        if entry.name == MANIFEST:
            continue
        if entry.name == DASHBOARDS and entry.is_dir(follow_symlinks=False):
            for inner in sorted(os.scandir(entry.path), key=lambda e: e.name):
                relative = f"{DASHBOARDS}/{inner.name}"
                if relative not in listed:
                    found.append((relative, "extra file, not listed in the manifest"))
            continue
        kind = "symlink" if entry.is_symlink() else "folder" if entry.is_dir() else "file"
        found.append((entry.name, f"extra {kind}, not part of a bundle"))
    return found


def verify_bundle(directory: Path) -> list[Path]:
    """The export files of the bundle at `directory`, in manifest order, after checking it.

    BundleError (exit 3) naming each problem: manifest missing, unparseable or of another
    format; a listed file missing or not a regular file; an extra file; a sha256 mismatch; a
    `file` entry that is not `dashboards/<safe_name(id)>`. Payload schemas are not checked here.
    """
    manifest = load_manifest(directory)
    return [Path(directory) / entry.file for entry in manifest.entries]


class BundleSource:
    """A `PayloadSource` reading a verified bundle; it never calls the source API."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.manifest = load_manifest(self.directory)
        self._entries = {entry.id: entry for entry in self.manifest.entries}

    @property
    def manifest_sha256(self) -> str:
        """sha256 of `manifest.json`: which reviewed bundle this is."""
        return self.manifest.sha256

    @property
    def entries(self) -> tuple[BundleEntry, ...]:
        """The manifest's dashboards, in its order."""
        return self.manifest.entries

    async def inventory(self) -> list[DashboardRef]:
        """The bundle's dashboards, as a source listing would show them."""
        return [DashboardRef(entry.id, entry.name) for entry in self.manifest.entries]

    async def export(self, dashboard_id: str) -> ExportFile:
        """The bundled export file, re-checked against its sha256 as it is read."""
        entry = self._entries.get(dashboard_id)
        if entry is None:
            raise BundleError(f"the bundle holds no dashboard {dashboard_id!r}", file=MANIFEST)
        path = self.directory / entry.file
        try:
            raw = _read_entry(self.directory, entry.file)
        except OSError as exc:
            raise _refuse(self.directory, [(str(path), f"unreadable: {exc}")]) from None
        if hashlib.sha256(raw).hexdigest() != entry.sha256:
            raise _refuse(
                self.directory,
                [(str(path), "sha256 differs from the manifest: changed after export")],
            )
        document = parse_json(raw, source=str(path))
        if not isinstance(document, dict) or not isinstance(document.get("data"), dict):
            raise BundleError("not an export file: no `data` object", file=str(path))
        return ExportFile(raw=raw, document=document)

    def describe(self) -> SourceInfo:
        """The exported-from url and workspace, plus the bundle and its manifest hash."""
        return SourceInfo(
            self.manifest.source.url,
            self.manifest.source.workspace,
            bundle=str(self.directory),
            manifest_sha256=self.manifest_sha256,
        )


# --- export -----------------------------------------------------------------------------------


__all__ = [
    "BundleEntry",
    "BundleItem",
    "BundleSource",
    "Manifest",
    "bundle_file",
    "id_from_safe_name",
    "safe_name",
    "verify_bundle",
    "write_bundle",
]

"""Payloads held between planning and importing, within a memory budget.

A migration of a thousand 200 KB dashboards must not hold a thousand parsed payloads (several GB
of Python objects). The first payloads, up to `memory_budget` bytes of JSON, stay parsed in
memory; the rest are written to an owner-only temporary folder as the bytes the API returned and
parsed again when needed. The folder is removed on `close`.
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from pathlib import Path

from migrate.jsontext import load_trusted
from migrate.models import ExportFile
from migrate.storage import create_private, ensure_private_dir

DEFAULT_MEMORY_BUDGET = 8 * 1024 * 1024


class PayloadSpool:
    """Stores export files by dashboard id; memory first, then disk."""

    def __init__(
        self, directory: Path | None = None, *, memory_budget: int = DEFAULT_MEMORY_BUDGET
    ) -> None:
        self._parent = directory
        self._budget = memory_budget
        self._used = 0
        self._memory: dict[str, ExportFile] = {}
        self._files: dict[str, Path] = {}
        self._folder: Path | None = None

    def put(self, key: str, export: ExportFile) -> None:
        """Keep `export` for `key` (replacing any earlier one)."""
        size = len(export.raw)
        if self._used + size <= self._budget:
            self._memory[key] = export
            self._used += size
            return
        path = self._folder_path() / f"{len(self._files)}.json"  # names never come from ids
        # Scratch data, removed on close: not worth an fsync per payload.
        create_private(path, export.raw, durable=False)
        self._files[key] = path

    def get(self, key: str) -> ExportFile:
        """The export file for `key`; KeyError if none was stored."""
        if key in self._memory:
            return self._memory[key]
        raw = self._files[key].read_bytes()
        # Checked (caps, depth, duplicate keys) when it arrived, and since then in a folder only
        # we can write: parsed without checking again.
        return ExportFile(raw=raw, document=load_trusted(raw))

    def raw(self, key: str) -> bytes:
        """The bytes the API returned for `key`, without parsing them."""
        if key in self._memory:
            return self._memory[key].raw
        return self._files[key].read_bytes()

    def __contains__(self, key: object) -> bool:
        return key in self._memory or key in self._files

    def close(self) -> None:
        """Forget everything and remove the spool folder."""
        self._memory.clear()
        self._files.clear()
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None

    def _folder_path(self) -> Path:
        if self._folder is None:
            parent = ensure_private_dir(self._parent) if self._parent else None
            self._folder = Path(tempfile.mkdtemp(prefix="spool-", dir=parent))  # mode 0700
            # Removed even if nobody calls close (a plan the CLI only renders).
            weakref.finalize(self, shutil.rmtree, self._folder, ignore_errors=True)
        return self._folder

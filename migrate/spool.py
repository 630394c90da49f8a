"""Payloads held between planning and importing, within a memory budget.

A migration of a thousand 200 KB dashboards must not hold a thousand payloads in memory. The
first payloads, up to `memory_budget` bytes of JSON, stay in memory; the rest are written to an
owner-only temporary folder as the bytes the API returned and parsed again when needed. The
folder is removed on `close`.

Where an export's `data` arrived written exactly as `jsontext.dump_json` writes its value
(compact, as a server that writes with orjson sends it), the spool notes where that text lies
in the bytes: an import then sends the text as it arrived, without parsing the payload again.
Such a payload is held as its bytes only: its parsed value, several times the size of the text,
is dropped on arrival, so the budget counts what memory holds, and the payload is parsed again
only when it is `get`. Other payloads are held parsed, as they are parsed again to be sent.
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from pathlib import Path

from migrate.errors import LocalFileError
from migrate.jsontext import dump_json_fast, load_trusted
from migrate.models import ExportFile
from migrate.storage import create_private, ensure_private_dir

DEFAULT_MEMORY_BUDGET = 32 * 1024 * 1024


class PayloadSpool:
    """Stores export files by dashboard id; memory first, then disk."""

    def __init__(
        self, directory: Path | None = None, *, memory_budget: int = DEFAULT_MEMORY_BUDGET
    ) -> None:
        self._parent = directory
        self._budget = memory_budget
        self._used = 0
        self._memory: dict[str, ExportFile | bytes] = {}  # bytes: a payload with a span
        self._files: dict[str, Path] = {}
        self._spans: dict[str, tuple[int, int]] = {}  # key -> where `data`'s text lies in raw
        self._folder: Path | None = None
        self._written = 0  # files written, for their names

    def put(self, key: str, export: ExportFile, data_text: bytes | None = None) -> None:
        """Keep `export` for `key` (replacing any earlier one). `data_text`, when given, is
        `jsontext.dump_json_fast` of its `data` already written by the caller."""
        self._forget(key)
        span = _data_span(export, data_text)
        if span is not None:
            self._spans[key] = span
        size = len(export.raw)
        if self._used + size <= self._budget:
            self._memory[key] = export.raw if span is not None else export
            self._used += size
            return
        self._written += 1
        path = self._folder_path() / f"{self._written}.json"  # names never come from ids
        # Scratch data, removed on close: not worth an fsync per payload.
        create_private(path, export.raw, durable=False)
        self._files[key] = path

    def _forget(self, key: str) -> None:
        """Drop what `key` held (before it is put again), its bytes no longer counted."""
        self._spans.pop(key, None)
        held = self._memory.pop(key, None)
        if held is not None:
            self._used -= len(_bytes_of(held))
        path = self._files.pop(key, None)
        if path is not None:
            path.unlink(missing_ok=True)

    def get(self, key: str) -> ExportFile:
        """The export file for `key`; KeyError if none was stored."""
        held = self._memory.get(key)
        if isinstance(held, ExportFile):
            return held
        raw = held if held is not None else self._files[key].read_bytes()
        # Checked (caps, depth, duplicate keys) when it arrived, and since then in a folder only
        # we can write: parsed without checking again, but a file damaged since is refused.
        try:
            return ExportFile(raw=raw, document=load_trusted(raw))
        except ValueError:
            raise _damaged(self._files[key]) from None

    def raw(self, key: str) -> bytes:
        """The bytes the API returned for `key`, without parsing them."""
        held = self._memory.get(key)
        if held is not None:
            return _bytes_of(held)
        return self._files[key].read_bytes()

    def data_text(self, key: str) -> bytes | None:
        """The text of the export's `data` as it arrived, when it is exactly what
        `jsontext.dump_json` writes of the parsed `data`; None when it is not (or `key` is not
        stored): parse with `get` then."""
        span = self._spans.get(key)
        if span is None:
            return None
        start, end = span
        held = self._memory.get(key)
        if held is not None:
            return _bytes_of(held)[start:end]
        with self._files[key].open("rb") as file:
            file.seek(start)
            text = file.read(end - start)
        # Spliced into an import body as is: a file cut short would send a partial payload.
        if len(text) != end - start:
            raise _damaged(self._files[key])
        return text

    def held(self, key: str) -> ExportFile | None:
        """The export file for `key` when it is held parsed (no parse needed), else None."""
        held = self._memory.get(key)
        return held if isinstance(held, ExportFile) else None

    def __contains__(self, key: object) -> bool:
        return key in self._memory or key in self._files

    def close(self) -> None:
        """Forget everything and remove the spool folder."""
        self._memory.clear()
        self._files.clear()
        self._spans.clear()
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


def _damaged(path: Path) -> LocalFileError:
    """The error of a spool file changed on disk since it was written."""
    return LocalFileError(
        "a spooled payload changed on disk since it was exported",
        file=str(path),
        hint="something else writes to the state dir; rerun to export the payload again",
    )


def _bytes_of(held: ExportFile | bytes) -> bytes:
    """The export file's bytes as the API returned them, for what the memory holds either way."""
    return held if isinstance(held, bytes) else held.raw


def _data_span(export: ExportFile, text: bytes | None = None) -> tuple[int, int] | None:
    """(start, end) of the text of `export`'s `data` member in its raw bytes when that text is
    `dump_json` of the parsed `data`, as a compact server writes the member last; else None.

    One orjson writing of `data` and a comparison: equal bytes are equal text, whatever
    precedes them, so nothing else needs checking (`_meta` may be written as it likes).
    """
    document = export.document
    data = document.get("data") if isinstance(document, dict) else None
    if not isinstance(data, dict):
        return None
    if text is None:
        text = dump_json_fast(data)
    raw = export.raw
    if text is None or not raw.endswith(b"}"):
        return None
    end = len(raw) - 1
    start = end - len(text)
    if start < 0 or not (raw.endswith(text, 0, end) and raw.endswith(b'"data":', 0, start)):
        return None
    return start, end

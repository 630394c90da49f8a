"""File names from remote dashboard ids that can never leave their folder or collide.

`safe_name` makes any id a single, pure-ASCII, lowercase path component of at most 200 bytes
that is no Windows device name; distinct ids never share a name, also on a case-insensitive file
system, and `id_from_safe_name` reverses it (except for ids too long to fit, named by digest).
"""

from __future__ import annotations

import hashlib
import re

SUFFIX = ".json"
MAX_NAME_BYTES = 200

# Kept as they are in a file name; everything else is escaped as %xx (lowercase hex of UTF-8).
_KEEP = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_")
_RESERVED = frozenset(
    {"con", "prn", "aux", "nul", "clock$", "conin$", "conout$"}
    | {f"{dev}{n}" for dev in ("com", "lpt") for n in range(10)}
)
_DIGEST_MARK = "="  # only in names too long to hold their id: readable prefix, =, sha256
_PREFIX_CHARS = 100
_STEM_MAX = MAX_NAME_BYTES - len(SUFFIX)
_ESCAPE = re.compile(r"%([0-9a-f]{2})")


def _escape(dashboard_id: str) -> str:
    out: list[str] = []
    for index, char in enumerate(dashboard_id):
        if char in _KEEP and not (index == 0 and dashboard_id in _RESERVED):
            out.append(char)
        else:
            out.extend(f"%{byte:02x}" for byte in char.encode("utf-8", "surrogatepass"))
    return "".join(out)


def safe_name(dashboard_id: str) -> str:
    """The bundle file name (`<stem>.json`, no directory) of `dashboard_id`.

    `[a-z0-9_-]` stay readable; every other character (uppercase too) is `%xx` per UTF-8 byte,
    and the first character of a Windows device name (`con`, `com1`, ...) is escaped. The result
    is lowercase ASCII, so two ids never map to names that differ only in case. An id whose
    encoding would pass 200 bytes keeps a readable prefix plus `=` and the sha256 of the exact
    id: still distinct, but then only the manifest knows the id (`id_from_safe_name` refuses).
    """
    if not dashboard_id:
        return "%" + SUFFIX  # the empty id: a lone % is no escape of anything else
    stem = _escape(dashboard_id)
    if len(stem) > _STEM_MAX:
        cut = _PREFIX_CHARS
        while "%" in stem[max(0, cut - 2) : cut]:  # never split a %xx escape
            cut -= 1
        digest = hashlib.sha256(dashboard_id.encode("utf-8", "surrogatepass")).hexdigest()
        stem = f"{stem[:cut]}{_DIGEST_MARK}{digest}"
    return stem + SUFFIX


def id_from_safe_name(name: str) -> str:
    """The id whose `safe_name` is `name`; ValueError when `name` is no safe name of any id, or
    is a digest name (a very long id), whose id only the bundle's manifest holds."""
    if not name.endswith(SUFFIX):
        raise ValueError(f"{name!r} does not end in {SUFFIX}")
    stem = name[: -len(SUFFIX)]
    if _DIGEST_MARK in stem:
        raise ValueError(f"{name!r} names a long id by its digest; its id is in the manifest")
    if stem == "%":
        return ""
    raw = bytearray()
    position = 0
    for match in _ESCAPE.finditer(stem):
        raw += stem[position : match.start()].encode("ascii", "replace")
        raw.append(int(match.group(1), 16))
        position = match.end()
    raw += stem[position:].encode("ascii", "replace")
    try:
        dashboard_id = bytes(raw).decode("utf-8", "surrogatepass")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{name!r} does not decode to UTF-8") from exc
    if safe_name(dashboard_id) != name:  # one canonical name per id, nothing else accepted
        raise ValueError(f"{name!r} is not the safe name of any id")
    return dashboard_id

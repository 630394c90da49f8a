"""The sandbox's JSON reading and writing: orjson's speed with the standard library's answers.

Parsing and writing 100 KB payloads with `json` was most of the sandbox's CPU per request, and
the benchmarks run it on the same two cores as the client they measure. orjson (the core's JSON
library too) is used only where it gives exactly what `json` gives; elsewhere `json` decides:
a text orjson refuses (lone surrogate escapes, non-UTF-8, numbers out of double range) is
parsed by `json`; a number with 19 or more digits is left to `json` (orjson would read a
64-bit-overflowing integer as a float); a value orjson cannot write (such integers, non-string
keys, lone surrogates) is written by `json`. One deliberate difference from before: the
literals `NaN`, `Infinity` and `-Infinity` are invalid JSON here, as in the real server's
`JSON.parse`.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

# Digits to "0", everything else to " ": a run of 19 digits is then one fast substring search
# (a regex scan of 100 KB costs ten times as much).
_DIGITS = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_LONG_RUN = b"0" * 19


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def loads(text: bytes | str) -> Any:
    """Parse JSON text; ValueError (or UnicodeDecodeError) when it is not JSON."""
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    if raw.translate(_DIGITS).find(_LONG_RUN) < 0:
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass  # `json` gives the answer, error or value
    return json.loads(text, parse_constant=_no_constants)


def dumps(value: Any) -> str:
    """Compact JSON text, non-ASCII kept as is (Express's `res.json` and the stored form)."""
    return dumps_bytes(value).decode("utf-8", "surrogatepass")


def dumps_bytes(value: Any) -> bytes:
    """`dumps` as UTF-8 bytes (UnicodeEncodeError for a lone surrogate, as `json` + encode)."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()

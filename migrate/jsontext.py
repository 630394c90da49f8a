"""JSON text: untrusted text (files and API bodies) parsed with caps and refused cleanly when
hostile, and our own values written compactly; the only module that imports orjson.

Refused, each as `UntrustedJSONError` naming the source: bodies over the size cap, nesting deeper
than the depth cap, duplicate object keys, `NaN`/`Infinity`, invalid UTF-8, and truncated or
otherwise malformed text (with line and column).

orjson parses and writes a 100 KB dashboard three to ten times faster than the standard library
(`benchmarks/README.md`); every answer it cannot give exactly as the standard library would
(an integer beyond 64 bits, a lone surrogate escape, anything refused) goes to the standard
library's path, so the values returned and the refusals are the same either way.
"""

from __future__ import annotations

import itertools
import json
import math
import operator
import re
from dataclasses import dataclass
from typing import Any, Final, NoReturn

import orjson

from migrate.errors import UntrustedJSONError

# Nesting levels a payload may have (`[1]` is one). Real dashboards have about a dozen. Parsing
# refuses deeper text, so the recursive payload walks (references, schema pairs, comparison)
# rely on it and refuse deeper values, which only code could build, with `nesting_error`.
MAX_DEPTH: Final = 256


@dataclass(frozen=True)
class JSONLimits:
    """Caps for untrusted JSON. Real dashboards reach several MB, so the defaults are generous."""

    max_bytes: int = 64 * 1024 * 1024
    max_depth: int = MAX_DEPTH


DEFAULT_LIMITS = JSONLimits()


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    # JSON numbers beyond a double (1e400) would read as infinity and be written back as null:
    # refused like the NaN and Infinity literals, so no payload changes silently.
    value = float(text)
    if value in (math.inf, -math.inf):
        raise ValueError(f"the number {text[:40]} is out of range for a double")
    return value


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate key {key!r}")
            seen.add(key)
    return obj


def _too_large(size: int, limits: JSONLimits, source: str) -> UntrustedJSONError:
    return UntrustedJSONError(
        f"{size:,} bytes of JSON, over the {limits.max_bytes:,}-byte limit",
        file=source,
        hint="raise the limit only if this input is trusted",
    )


def _too_nested(limits: JSONLimits, source: str) -> UntrustedJSONError:
    return UntrustedJSONError(f"nests deeper than {limits.max_depth} levels", file=source)


def nesting_error() -> UntrustedJSONError:
    """The error of a payload walk that meets a value nested deeper than `MAX_DEPTH` levels."""
    return UntrustedJSONError(
        f"a payload nests deeper than {MAX_DEPTH} levels",
        hint="JSON read by migrate never does; build payloads within that depth",
    )


def _decode(raw: bytes | str, source: str) -> str:
    if isinstance(raw, bytes):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UntrustedJSONError(
                f"not valid UTF-8 (byte {exc.start})",
                file=source,
                hint="JSON must be UTF-8 encoded",
            ) from exc
    else:
        text = raw
    return text.removeprefix("\ufeff")


def parse_json(raw: bytes | str, *, source: str, limits: JSONLimits = DEFAULT_LIMITS) -> Any:
    """Parse `raw` or raise `UntrustedJSONError` whose `file` is `source`, saying what is wrong."""
    size = len(raw)
    if size > limits.max_bytes:
        raise _too_large(size, limits, source)
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    data = data.removeprefix(b"\xef\xbb\xbf")
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        # Refused, or a lone surrogate escape orjson will not read: the standard path.
        return _parse_stdlib(raw, source=source, limits=limits)
    try:
        rendered = orjson.dumps(value)
    except TypeError:  # nested past orjson's own writing limit (about 250 levels)
        return _parse_stdlib(data, source=source, limits=limits)
    if rendered == data and limits.max_depth >= _DUMPS_REFUSES_PAST:
        # `data` is orjson's own writing of `value` (a compact server, as the API is): read
        # back it gives `value` again, so no object repeats a key (orjson keeps one of each),
        # no integer was widened to a float (orjson writes floats with `.` or `e`), and, as
        # orjson wrote it, it nests within the depth cap. Nothing is left to check.
        return value
    # orjson reads integers beyond 64 bits as floats: such text takes the standard path.
    if b"0" * 19 in data.translate(_DIGITS_AS_ZERO):
        return _parse_stdlib(raw, source=source, limits=limits)
    return _checked(value, data, rendered, source=source, limits=limits)


# 19 digits in a row are the shortest integer orjson might not return as an int. Found by one
# C translate and one substring search (a regex scan costs three times the parse); digits
# inside strings and fractions match too, which merely sends those documents the standard way.
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"0" * 9)


def _dumps_refuses_past() -> int:
    """`MAX_DEPTH` when orjson refuses to write any value nested deeper (lists, objects or
    both: one nesting counter), else a depth no cap reaches, which turns the shortcut off."""
    for wrap in (lambda v: [v], lambda v: {"k": v}, lambda v: [{"k": v}]):
        value: Any = 0
        for _ in range(MAX_DEPTH + 1):
            value = wrap(value)
        try:
            orjson.dumps(value)
        except TypeError:
            continue
        return 1 << 62
    return MAX_DEPTH


# Any value orjson writes nests at most this deep (checked once, against the installed orjson).
_DUMPS_REFUSES_PAST: Final = _dumps_refuses_past()


def _checked(value: Any, data: bytes, rendered: bytes, *, source: str, limits: JSONLimits) -> Any:
    """`value`, parsed from `data` and written back by orjson as `rendered`, once depth and
    duplicate keys are ruled out.

    orjson keeps the last of repeated keys silently, so the members are counted: valid JSON has
    exactly one `:` outside strings per member, in `data` and in orjson's own rendering of
    `value` alike, so fewer in the rendering means a key was repeated. When the rendering is
    `data` itself no count is needed.
    """
    skeleton = _skeleton(data)
    if _depth_over(skeleton.translate(None, b":"), limits.max_depth):
        raise _too_nested(limits, source)
    if rendered != data and _skeleton(rendered).count(b":") != skeleton.count(b":"):
        return _parse_careful(_decode(data, source), source=source, limits=limits)
    return value


def export_holds_data(raw: bytes, data: bytes, *, source: str) -> bool:
    """True when `raw` is exactly `{"_meta":META,"data":DATA}` with `data` as DATA and META a
    JSON object that passes `parse_json`'s checks; False means "not shown", parse `raw` then.

    `data` is compact JSON this process wrote from checked values, so a body that is META and
    it, spliced as a compact server writes an export, is valid JSON with those two members
    (JSON's grammar has one reading) and needs no parse of its own: a read-back of megabytes
    is compared in one memcmp.
    """
    head, tail = b'{"_meta":', b',"data":' + data + b"}"
    if len(raw) < len(head) + len(tail) or not (raw.startswith(head) and raw.endswith(tail)):
        return False
    try:
        meta = parse_json(raw[len(head) : len(raw) - len(tail)], source=source)
    except UntrustedJSONError:
        return False
    return isinstance(meta, dict)


def load_trusted(raw: bytes) -> Any:
    """Parse JSON that was checked when it arrived, or that this process wrote from checked
    values (a spool file, a copy's text): no caps or duplicate-key checks, but exactly the
    values `parse_json` returns. ValueError when the text is not JSON (a damaged file)."""
    # orjson reads integers beyond 64 bits as floats and refuses lone surrogate escapes: the
    # standard library reads those texts as `parse_json` did.
    if b"0" * 19 not in raw.translate(_DIGITS_AS_ZERO):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    return json.loads(raw)


def dump_json_fast(value: Any) -> bytes | None:
    """`dump_json(value)` when orjson can write it, else None: never for values nested past
    about 250 levels (so never for one deeper than `MAX_DEPTH`), integers beyond 64 bits or
    non-string keys."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return None


def dump_json(value: Any) -> bytes:
    """`value` as compact UTF-8 JSON (no spaces, non-ASCII kept), as the API expects a body."""
    try:
        return orjson.dumps(value)
    except TypeError:
        # An integer beyond 64 bits, a non-string key, about 250 levels of nesting, or a lone
        # surrogate (valid JSON, as in an id a server sent): the standard library writes
        # those, a lone surrogate as its \uXXXX escape, which is the same JSON string.
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        return text.encode("utf-8", "backslashreplace")


def dump_spliced(value: dict[str, Any], key: str, text: bytes) -> bytes:
    """`dump_json(value)` with member `key` (present in `value`, its own value ignored) set to
    the value whose `dump_json` text is `text`: the bytes `dump_json` writes when `key` holds
    that value, without parsing `text` or writing it again.

    orjson writes an object member by member, so when it writes the rest of `value` the text
    is spliced in place of the member's value. Otherwise (what only the standard library
    writes, see `dump_json`) `text` is parsed and the whole written as `dump_json` would.
    """
    marker = orjson.dumps(key) + b":null"
    rest = dump_json_fast({**value, key: None})
    # Inside a string every `"` is written escaped, so the marker appears only as the member.
    if rest is None or rest.count(marker) != 1:
        return dump_json({**value, key: load_trusted(text)})
    head, _, tail = rest.partition(marker)
    return b"".join((head, marker[:-4], text, tail))


def dump_json_canonical(value: Any) -> bytes:
    """`value` as compact UTF-8 JSON with every object's keys sorted: one text per value, for
    content hashes."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # as in `dump_json`: what orjson does not write, the standard library does
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
        return text.encode("utf-8", "backslashreplace")


def _parse_stdlib(raw: bytes | str, *, source: str, limits: JSONLimits) -> Any:
    """The standard library's parse with the same checks, for what orjson does not take."""
    text = _decode(raw, source)
    # The C decoder without a per-object pairs hook (it would cost as much as the parse),
    # counting each object's members instead. Valid JSON has exactly one `:` outside strings
    # per member, so fewer members than colons means a key was repeated. A hostile `[[[[...`
    # stops the C decoder at Python's recursion limit, in microseconds.
    members = [0]

    def count(obj: dict[str, Any]) -> dict[str, Any]:
        members[0] += len(obj)
        return obj

    try:
        value = json.loads(
            text, object_hook=count, parse_constant=_refuse_constant, parse_float=_finite_float
        )
    except RecursionError as exc:
        raise _too_nested(limits, source) from exc
    except ValueError:
        # Refused: the careful path finds the same first problem and words it.
        return _parse_careful(text, source=source, limits=limits)
    skeleton = _skeleton(raw if isinstance(raw, bytes) else text.encode("utf-8", "surrogatepass"))
    if _depth_over(skeleton.translate(None, b":"), limits.max_depth):
        raise _too_nested(limits, source)
    if skeleton.count(b":") != members[0]:
        return _parse_careful(text, source=source, limits=limits)  # names the duplicate key
    return value


# Everything but the bytes that shape a document: brackets, quotes and colons.
_NOT_SHAPE = bytes(b for b in range(256) if b not in b'[]{}":')
_ONE_BRACKET = bytes.maketrans(b"{}", b"[]")


def _skeleton(data: bytes) -> bytes:
    """The brackets and colons of valid JSON `data` that lie outside strings, in order.

    Escapes go first (`\\\\` then `\\"`, only when an escaped quote may exist), then every
    other byte but brackets, quotes and colons. Dropping two adjacent quotes keeps every other
    quote's parity, so empty strings vanish in one C pass; only strings that hold a bracket or a
    colon are left to split out.
    """
    if b'\\"' in data:
        data = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    shape = data.translate(None, _NOT_SHAPE).replace(b'""', b"")
    if b'"' in shape:
        shape = b"".join(shape.split(b'"')[::2])
    return shape


_PEEL_ROUNDS = 16
_SMALL = 1 << 16
_OPEN_RUN = re.compile(rb"\[+")
_CLOSE_RUN = re.compile(rb"\]+")


def _depth_over(brackets: bytes, limit: int) -> bool:
    """True when the balanced `brackets` nest deeper than `limit`.

    Each round deletes the innermost `[]` pairs in one C pass (real dashboards are a handful of
    levels deep); what survives the rounds, or a round that hardly shrank, is measured as a
    running sum over runs of `[` and of `]` (balanced text starts with an opening run and
    alternates).
    """
    brackets = brackets.translate(_ONE_BRACKET)
    rounds = 0
    while brackets and rounds < _PEEL_ROUNDS:
        peeled = brackets.replace(b"[]", b"")
        rounds += 1
        # A hostile document (long chains, few leaves) barely shrinks: stop paying per round.
        slow = len(peeled) > _SMALL and len(peeled) * 4 > len(brackets) * 3
        brackets = peeled
        if slow:
            break
    if not brackets:
        return rounds > limit
    opens: list[bytes] = _OPEN_RUN.findall(brackets)
    closes: list[bytes] = _CLOSE_RUN.findall(brackets)
    steps = map(operator.sub, map(len, opens), itertools.chain((0,), map(len, closes)))
    deepest: int = max(itertools.accumulate(steps))
    return rounds + deepest > limit


def _parse_careful(text: str, *, source: str, limits: JSONLimits) -> Any:
    """The general path: depth first (also for malformed text), then a pairs-hooked parse."""
    # Only a document with more brackets than the cap can be nested past it; checking before
    # parsing keeps a hostile `[[[[...` from costing a parse (or a RecursionError) at all.
    if text.count("[") + text.count("{") > limits.max_depth and (_too_deep(text, limits.max_depth)):
        raise _too_nested(limits, source)
    try:
        value = json.loads(
            text,
            object_pairs_hook=_refuse_duplicates,
            parse_constant=_refuse_constant,
            parse_float=_finite_float,
        )
    except RecursionError as exc:
        raise _too_nested(limits, source) from exc
    except json.JSONDecodeError as exc:
        what = "ends before the JSON is complete" if exc.pos >= len(text) else exc.msg
        raise UntrustedJSONError(
            f"not valid JSON: {what}",
            file=source,
            line=exc.lineno,
            column=exc.colno,
            hint="the file is truncated or is not JSON" if exc.pos >= len(text) else None,
        ) from exc
    except ValueError as exc:
        raise UntrustedJSONError(f"not valid JSON: {exc}", file=source) from exc
    return value


_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def _too_deep(text: str, limit: int) -> bool:
    """True when brackets outside strings nest deeper than `limit`.

    Strings and scalars are dropped by regex and the running depth is a C-level accumulate, so a
    megabyte payload costs tens of milliseconds and `[[[[...` never reaches a recursive parser.
    """
    skeleton = _NOT_BRACKET.sub("", _STRING.sub("", text))
    return max(itertools.accumulate(map(_STEP.__getitem__, skeleton)), default=0) > limit

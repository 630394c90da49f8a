"""Untrusted JSON: hostile input is a clean, quick UntrustedJSONError naming its source."""

from __future__ import annotations

import json
import time
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from migrate.errors import UntrustedJSONError
from migrate.jsontext import (
    _DIGITS_AS_ZERO,
    JSONLimits,
    _depth_over,
    _parse_careful,
    _parse_stdlib,
    _skeleton,
    dump_json,
    export_holds_data,
    parse_json,
)


def refuse(raw: bytes | str, limits: JSONLimits | None = None) -> UntrustedJSONError:
    """Parse `raw` as x.json; it must be refused within a second."""
    start = time.perf_counter()
    with pytest.raises(UntrustedJSONError) as info:
        parse_json(raw, source="x.json", limits=limits or JSONLimits())
    assert time.perf_counter() - start < 1
    assert info.value.exit_code == 3
    assert "x.json" in str(info.value)
    return info.value


def test_valid_json_parses() -> None:
    """Ordinary JSON, a BOM and unicode parse unchanged."""
    assert parse_json(b'\xef\xbb\xbf{"a": ["\xc3\xa9", 1.5, null]}', source="x") == {
        "a": ["é", 1.5, None]
    }


def test_over_size_cap() -> None:
    """A body over max_bytes is refused before parsing."""
    error = refuse(b"[" + b"1," * 600 + b"1]", JSONLimits(max_bytes=1000))
    assert "limit" in error.message


def test_default_caps_allow_real_dashboards() -> None:
    """Defaults allow at least 32 MB and depth 256, as the issue asks."""
    assert JSONLimits().max_bytes >= 32 * 1024 * 1024
    assert JSONLimits().max_depth >= 256
    assert parse_json("[" * 256 + "]" * 256, source="x") is not None


@pytest.mark.parametrize("raw", ["[" * 100_000, "[" * 100_000 + "]" * 100_000, '{"a":' * 50_000])
def test_deep_nesting(raw: str) -> None:
    """Depth 100000 is refused quickly, never a RecursionError."""
    assert "deeper" in refuse(raw).message


def test_depth_just_over_cap() -> None:
    """Depth 257 is refused at the default cap of 256."""
    refuse("[" * 257 + "]" * 257)


def test_brackets_inside_strings_do_not_count() -> None:
    """Brackets inside strings (with escaped quotes) are text, not nesting."""
    text = '["' + "[" * 1000 + '\\"' + "{" * 1000 + '"]'
    assert len(parse_json(text, source="x")[0]) == 2001


def test_duplicate_keys() -> None:
    """An object with a repeated key is refused."""
    assert "duplicate key" in refuse(b'{"a": 1, "b": {"c": 1, "c": 2}}').message


@pytest.mark.parametrize("raw", ["[NaN]", '{"a": Infinity}', "[-Infinity]"])
def test_nan_and_infinity(raw: str) -> None:
    """NaN and Infinity are not JSON."""
    refuse(raw)


@pytest.mark.parametrize("raw", ['{"a": 1e400}', "[-1E999]", '{"a": {"b": [1, 2e308]}}'])
def test_numbers_beyond_a_double_are_refused(raw: str) -> None:
    """A number that would read as infinity (and be written back as null) is refused."""
    assert "out of range" in refuse(raw).message


def test_invalid_utf8() -> None:
    """Bytes that are not UTF-8 are refused with their offset."""
    assert "UTF-8" in refuse(b'{"a": "\xff\xfe"}').message


@pytest.mark.parametrize("raw", [b'{"data": {"layout": [1, 2', b"", b'{"a": "unterminated'])
def test_truncated(raw: bytes) -> None:
    """A file cut short is refused with line and column."""
    error = refuse(raw)
    assert error.line is not None
    assert error.column is not None


# --------------------------------------------------------- fast path == the careful path
# The fast path (C decoder, member count, bracket skeleton) must accept and refuse exactly
# what the pairs-hooked parse with a regex depth check does, with the same message.
_KEYS = st.sampled_from(["a", "b", "[", "{:}", 'q"', "\\", "x\\\\", ":", ""])
_STRINGS = st.text(alphabet='ab[]{}:"\\\n é', max_size=8)
_SCALARS = st.none() | st.booleans() | st.integers() | _STRINGS


def _documents(leaves: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """JSON text, objects written pair by pair so that keys may repeat."""
    return st.recursive(
        leaves,
        lambda inner: (
            st.lists(inner, max_size=4).map(lambda items: "[" + ", ".join(items) + "]")
            | st.lists(st.tuples(_KEYS, inner), max_size=4).map(
                lambda pairs: "{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in pairs) + "}"
            )
        ),
        max_leaves=30,
    )


def _outcome(parse: Any, text: str, limits: JSONLimits) -> tuple[str, Any]:
    try:
        return "ok", parse(text, limits)
    except UntrustedJSONError as exc:
        return "refused", (exc.message, exc.line, exc.column, exc.hint)


@settings(max_examples=100, deadline=None)
@given(_documents(_SCALARS.map(json.dumps)), st.integers(min_value=0, max_value=6))
def test_fast_path_agrees_with_careful_path(text: str, depth: int) -> None:
    """Same value or same refusal (duplicates, depth at tiny caps) as the general path."""
    limits = JSONLimits(max_depth=depth)
    fast = _outcome(lambda t, lim: parse_json(t, source="x", limits=lim), text, limits)
    careful = _outcome(lambda t, lim: _parse_careful(t, source="x", limits=lim), text, limits)
    assert fast == careful
    assert (
        _outcome(lambda t, lim: parse_json(t.encode(), source="x", limits=lim), text, limits)
        == careful
    )


@pytest.mark.parametrize("depth", [15, 16, 17, 255, 256, 257, 300])
def test_depth_cap_is_exact(depth: int) -> None:
    """Depth at the cap parses and one more is refused, whatever peeling rounds remain."""
    text = '{"k": ' * depth + '"[[{:"' + "}" * depth
    if depth <= 256:
        assert parse_json(text, source="x") is not None
    else:
        assert "deeper" in refuse(text).message
    assert "deeper" in refuse(text, JSONLimits(max_depth=depth - 1)).message


def test_duplicate_key_next_to_colons_in_strings() -> None:
    """Colons and escaped quotes inside strings do not hide a repeated key."""
    error = refuse('{"a:\\"": "x:y", "t": "09:30", "t": "[\\\\"}')
    assert "duplicate key 't'" in error.message


def test_malformed_and_deep_reports_depth_first() -> None:
    """Depth is still reported before a later syntax error."""
    assert "deeper" in refuse("[" * 300 + "]" * 299 + "x").message


# orjson's fast path must give what the standard library gives: numbers at the edges of 64 bits
# and of double precision, surrogate escapes, compact and spaced text alike.
_EDGE_LEAVES = (
    st.integers(min_value=-(2**70), max_value=2**70).map(str)
    | st.floats(allow_nan=False, allow_infinity=False).map(repr)
    | st.sampled_from(
        ['"\\ud800"', '"\\ud83d\\ude00"', '"\\u0000"', "1e400", "-0", "-0.0", "1E-400", "0.1e1"]
    )
    | _SCALARS.map(lambda v: json.dumps(v, ensure_ascii=False))
)


def _compact(text: str) -> str:
    try:
        compact = json.dumps(json.loads(text), ensure_ascii=False, separators=(",", ":"))
        compact.encode()
    except ValueError:  # refused, or a lone surrogate that UTF-8 cannot hold
        return text
    return compact


@settings(max_examples=200, deadline=None)
@given(_documents(_EDGE_LEAVES), st.booleans())
def test_orjson_path_agrees_with_standard_library(text: str, compact: bool) -> None:
    """Same value (and type) or same refusal as the standard library's careful path."""
    text = _compact(text) if compact else text
    limits = JSONLimits()
    fast = _outcome(lambda t, lim: parse_json(t.encode(), source="x", limits=lim), text, limits)
    careful = _outcome(lambda t, lim: _parse_careful(t, source="x", limits=lim), text, limits)
    assert fast == careful
    assert repr(fast) == repr(careful)  # 1 and 1.0, -0.0 and 0.0 are not the same value


def test_dump_json_is_compact_utf8() -> None:
    """dump_json writes what the standard library writes compactly, also past 64 bits."""
    value = {"a": [1, 2.5, None, True], "é": "x\u2028\\", "big": 2**80}
    assert dump_json(value) == json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode(
        "utf-8"
    )


def test_export_holds_data_only_for_the_exact_splice() -> None:
    """An export is shown to hold `data` only when it is `{"_meta":META,"data":DATA}` exactly
    and META passes the checks (a duplicate key in it does not)."""
    data = dump_json({"a": [1, "x"]})
    assert export_holds_data(b'{"_meta":{"id":"d"},"data":' + data + b"}", data, source="x")
    for raw in [
        b'{"_meta":{"id":"d","id":"e"},"data":' + data + b"}",
        b'{"_meta":{"id":"d"}, "data":' + data + b"}",
        b'{"data":' + data + b',"_meta":{}}',
        b'{"_meta":[],"data":' + data + b"}",
        b'{"_meta":{"id":"d"},"data":{"a":[1,"y"]}}',
        b'{"_meta":{"id":"d"},"x":1,"data":' + data + b"}",
    ]:
        assert not export_holds_data(raw, data, source="x"), raw


# -- the canonical-text shortcut against the checks it skips ------------------------------------
def _parse_json_checking_all(raw: bytes | str, *, source: str, limits: JSONLimits) -> Any:
    """The oracle: parse_json as it was before the shortcut, every check run on every text."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    data = data.removeprefix(b"\xef\xbb\xbf")
    if len(raw) > limits.max_bytes:
        raise UntrustedJSONError("too large", file=source)
    if b"0" * 19 not in data.translate(_DIGITS_AS_ZERO):
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
        else:
            skeleton = _skeleton(data)
            if _depth_over(skeleton.translate(None, b":"), limits.max_depth):
                raise UntrustedJSONError(
                    f"nests deeper than {limits.max_depth} levels", file=source
                )
            try:
                rendered = orjson.dumps(value)
            except TypeError:
                return _parse_stdlib(data, source=source, limits=limits)
            if rendered != data and _skeleton(rendered).count(b":") != skeleton.count(b":"):
                return _parse_careful(data.decode(), source=source, limits=limits)
            return value
    return _parse_stdlib(raw, source=source, limits=limits)


_ODD_KEYS = st.sampled_from(["a", "b", "é", '"', "\\", "\u00e9", ":", "[", "", "/"]) | st.text(
    max_size=3
)
_ODD_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet='ab"\\/\u2028é\x00\x1f{}[]:,', max_size=6)
)


def _canonical_documents() -> st.SearchStrategy[str]:
    """Compact text as orjson writes it, then perhaps a member repeated, nested a few levels
    more, or re-spaced: the shortcut's input and its near misses."""
    values = st.recursive(
        _ODD_SCALARS,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_ODD_KEYS, inner, max_size=4),
        max_leaves=20,
    )

    def render(value: Any) -> str:
        try:
            return orjson.dumps(value).decode()
        except TypeError:  # beyond 64 bits: the standard library writes it compactly too
            return json.dumps(value, ensure_ascii=False, separators=(",", ":"))

    def mutate(text: str, how: int, extra: int) -> str:
        if how == 1 and text.startswith("{") and len(text) > 2:
            first = text[1:].split(",", 1)[0].rstrip("}")  # a member (or a prefix of one)
            return "{" + first + "," + text[1:]
        if how == 2:
            return "[" * extra + text + "]" * extra
        if how == 3:
            return text.replace(",", ", ", 1)
        return text

    return st.builds(mutate, values.map(render), st.integers(0, 3), st.integers(0, 300))


@settings(max_examples=300, deadline=None)
@given(_canonical_documents(), st.sampled_from([JSONLimits(), JSONLimits(max_depth=3)]))
def test_canonical_shortcut_agrees_with_every_check(text: str, limits: JSONLimits) -> None:
    """Same value (and type) or the same refusal as running the depth and duplicate-key checks
    on every text, for orjson-written text, repeated members, deep nesting and odd strings."""
    new = _outcome(lambda t, lim: parse_json(t.encode(), source="x", limits=lim), text, limits)
    old = _outcome(
        lambda t, lim: _parse_json_checking_all(t.encode(), source="x", limits=lim), text, limits
    )
    assert repr(new) == repr(old)


def test_orjson_refuses_to_write_past_the_depth_cap() -> None:
    """The shortcut holds only while orjson cannot write a value nested past the cap."""
    for wrap in (lambda v: [v], lambda v: {"k": v}):
        value: Any = 0
        for _ in range(257):
            value = wrap(value)
        with pytest.raises(TypeError):
            orjson.dumps(value)
    nested = "[" * 257 + "]" * 257
    assert "deeper" in refuse(nested).message
    assert "duplicate key" in refuse('{"a":1,"a":1}').message

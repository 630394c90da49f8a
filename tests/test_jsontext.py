"""Untrusted JSON: hostile input is a clean, quick UntrustedJSONError naming its source."""

from __future__ import annotations

import time

import pytest

from migrate.errors import UntrustedJSONError
from migrate.jsontext import JSONLimits, parse_json


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


def test_invalid_utf8() -> None:
    """Bytes that are not UTF-8 are refused with their offset."""
    assert "UTF-8" in refuse(b'{"a": "\xff\xfe"}').message


@pytest.mark.parametrize("raw", [b'{"data": {"layout": [1, 2', b"", b'{"a": "unterminated'])
def test_truncated(raw: bytes) -> None:
    """A file cut short is refused with line and column."""
    error = refuse(raw)
    assert error.line is not None
    assert error.column is not None

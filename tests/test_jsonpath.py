"""Tests for migrate.jsonpath: one path syntax, written and read alike by every part of migrate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from migrate.diff import diff_payloads, normalize_for_compare
from migrate.errors import PlanError
from migrate.jsonpath import WILDCARD, PathPart, format_path, parse_path
from migrate.references import find_references
from migrate.schema import PayloadValidator

# A hyphen, a space, quotes, a backslash, a newline, non-ASCII, a wildcard look-alike, a digit.
ODD_KEYS = ["grid-margin", 'say "hi" there', "back\\slash", "two\nlines", "ü", "*", "0", ""]


def test_paths_round_trip() -> None:
    """parse_path reads what format_path writes, with or without the root, plus wildcards."""
    parts = ("metrics", 2, "odd key", 'q"', "clickActions", 0)
    text = format_path(parts)
    assert text == 'data.metrics[2]["odd key"]["q\\""].clickActions[0]'
    assert parse_path(text) == parts
    assert parse_path(text.removeprefix("data")) == parts
    assert parse_path("metrics[*].chartOptions") == ("metrics", WILDCARD, "chartOptions")
    assert parse_path("data.*.x") == (WILDCARD, "x")


def test_plain_identifiers_only_take_a_dot() -> None:
    """`.key` is for identifiers; a hyphen or non-ASCII letter makes a key JSON-quoted."""
    assert format_path(["gridMargin", "$x", "_y1"]) == "data.gridMargin.$x._y1"
    assert format_path(["grid-margin"]) == 'data["grid-margin"]'
    assert format_path(["ü", "1a"]) == 'data["ü"]["1a"]'
    assert format_path(["settings", "id_prefix"], "") == "settings.id_prefix"


def test_bare_keys_written_by_hand_still_read() -> None:
    """`data.grid-margin`, as earlier plans wrote it, names the same key as the quoted form."""
    assert parse_path("data.grid-margin") == parse_path('data["grid-margin"]') == ("grid-margin",)


@pytest.mark.parametrize("bad", ["data", "", "metrics[x]", 'a["unclosed]'])
def test_parse_path_rejects_garbage(bad: str) -> None:
    """An unreadable or empty compare_ignore path is a PlanError."""
    with pytest.raises(PlanError):
        parse_path(bad)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.text(max_size=8), st.integers(0, 10**6)), min_size=1, max_size=6))
def test_any_path_round_trips(parts: list[PathPart]) -> None:
    """Every key and index, however odd, reads back as itself (never as a wildcard)."""
    assert parse_path(format_path(parts)) == tuple(parts)


@pytest.mark.parametrize("key", ODD_KEYS)
def test_one_syntax_in_violations_diffs_references_and_compare_ignore(
    key: str, tmp_path: Path
) -> None:
    """A schema violation, a diff, a found reference and compare_ignore all spell a key alike."""
    expected = format_path([key, 0])
    schema = tmp_path / "strict.json"
    schema.write_text(
        json.dumps({"properties": {key: {"type": "array", "items": {"type": "string"}}}})
    )
    violations = PayloadValidator(schema).validate_export({"data": {key: [1]}})
    assert [v.path for v in violations] == [expected]
    assert [c.path for c in diff_payloads({key: [1]}, {key: [2]})] == [expected]
    assert find_references({key: ["dash"]}, {"dash"}) == [(expected, "dash")]
    assert parse_path(expected) == (key, 0)
    assert normalize_for_compare({key: [1, 2], "k": 3}, ignore=[expected]) == {key: [2], "k": 3}

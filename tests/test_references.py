"""Tests for migrate.references: the target-id rule, and references found and rewritten."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from migrate.jsonpath import format_path, link_parts
from migrate.references import _collect, find_references, rewrite_references, target_id

IDS = ["kpi-core", "sales", "region-east", "a b", "ü"]
json_leaf = st.one_of(
    st.sampled_from(IDS), st.text(max_size=6), st.integers(), st.booleans(), st.none()
)
json_values = st.recursive(
    json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(IDS), st.text(max_size=4)), inner, max_size=4),
    ),
    max_leaves=40,
)


def plain_rewrite(data: Any, id_map: dict[str, str]) -> Any:
    """The rewrite rule stated as plainly as possible: the oracle for the fast walk."""
    if isinstance(data, dict):
        return {key: plain_rewrite(value, id_map) for key, value in data.items()}
    if isinstance(data, list):
        return [plain_rewrite(value, id_map) for value in data]
    return id_map.get(data, data) if isinstance(data, str) else data


def test_target_id_override_else_prefix_suffix() -> None:
    """An explicit target id wins; otherwise prefix + id + suffix."""
    assert target_id("a", override="z", prefix="p-", suffix="-s") == "z"
    assert target_id("a", override=None, prefix="p-", suffix="-s") == "p-a-s"
    assert target_id("a", override=None, prefix="", suffix="") == "a"


@settings(max_examples=150, deadline=None)
@given(json_values, st.sets(st.sampled_from(IDS), min_size=1))
def test_rewrite_moves_every_reference_to_its_new_id(data: Any, mapped: set[str]) -> None:
    """After a rewrite, no mapped old id remains and each new id sits exactly where the old was."""
    id_map = {old: f"new::{old}" for old in mapped}
    original = copy.deepcopy(data)
    before = find_references(data, mapped)
    after = rewrite_references(data, id_map)
    assert data == original  # input not mutated
    assert find_references(after, mapped) == []
    assert find_references(after, set(id_map.values())) == [(p, id_map[i]) for p, i in before]
    # Everything else is untouched: mapping back restores the input.
    assert rewrite_references(after, {v: k for k, v in id_map.items()}) == data


@settings(max_examples=100, deadline=None)
@given(json_values, st.sets(st.sampled_from(IDS)))
def test_rewrite_equals_the_plain_rule(data: Any, mapped: set[str]) -> None:
    """The fast walk gives what the plain recursive rule gives, key order included."""
    id_map = {old: f"new::{old}" for old in mapped}
    got = rewrite_references(data, id_map)
    expected = plain_rewrite(data, id_map)
    assert got == expected and repr(got) == repr(expected)


def test_rewrite_leaves_keys_substrings_and_identity() -> None:
    """Dict keys and substrings are not references; identity entries change nothing."""
    data = {"kpi": ["kpi-core", "x kpi", {"kpi": "kpi"}], "n": 1}
    assert rewrite_references(data, {"kpi": "K", "x": "x"}) == {
        "kpi": ["kpi-core", "x kpi", {"kpi": "K"}],
        "n": 1,
    }
    assert rewrite_references("kpi", {"kpi": "K"}) == "K"


def test_find_references_values_only_sorted_numerically() -> None:
    """Only whole string values match (not keys, not substrings), sorted with [2] before [10]."""
    items = [*(["x"] * 10), "kpi", "kpi"]
    items[2] = "kpi"
    data = {"a": {"kpi": "kpi-core-x"}, "list": items, "kpi": 1}
    found = find_references(data, {"kpi"})
    assert found == [("data.list[2]", "kpi"), ("data.list[10]", "kpi"), ("data.list[11]", "kpi")]


def test_find_references_quotes_odd_keys() -> None:
    """Keys that are not identifiers appear JSON-quoted in brackets."""
    assert find_references({"odd key": {'q"': "z"}}, ["z"], root="r") == [
        ('r["odd key"]["q\\""]', "z")
    ]


_IDS = ["d1", "kpi-core", "é-dash", "x y", "a.b"]

_SMALL_SCALARS = st.integers(-3, 3) | st.none()


def _payloads(
    texts: st.SearchStrategy[str],
    *,
    width: int,
    leaves: int,
    scalars: st.SearchStrategy[Any] = _SMALL_SCALARS,
) -> st.SearchStrategy[Any]:
    """JSON values whose strings and keys are joined from `texts` (ids, fragments, escapes),
    containers up to `width` wide, at most `leaves` leaves."""
    return st.recursive(
        st.lists(texts, max_size=3).map("".join) | scalars,
        lambda inner: (
            st.lists(inner, max_size=width)
            | st.dictionaries(st.lists(texts, max_size=2).map("".join), inner, max_size=width)
        ),
        max_leaves=leaves,
    )


_REF_TEXTS = st.sampled_from([*_IDS, "d", '"d1"', "d1\\", "\n", "\\", '"', "k", ""])
_REF_VALUES = _payloads(_REF_TEXTS, width=3, leaves=15)


@settings(max_examples=300, deadline=None)
@given(_REF_VALUES, st.frozensets(st.sampled_from([*_IDS, 'q"uote', "back\\slash"])))
def test_text_prefilter_never_hides_a_reference(data: Any, ids: frozenset[str]) -> None:
    """The text prefilter that skips the walk agrees with the walk itself, escapes included."""
    links: list[Any] = []
    _collect(data, ids, None, links, 1)
    assert len(find_references(data, ids)) == len(links)
    own = sorted(ids)[0] if ids else None
    assert len(find_references(data, ids, ignore=own)) == len([v for _, v in links if v != own])


def _references_by_walk(data: Any, ids: Any, ignore: str | None) -> list[tuple[str, str]]:
    """The oracle: every reference found by the recursive walk alone, sorted as promised."""
    links: list[Any] = []
    _collect(data, frozenset(ids), None, links, 1)
    parts = [(link_parts(link), value) for link, value in links if value != ignore]
    parts.sort(key=lambda item: item[0])
    return [(format_path(path, "data"), value) for path, value in parts]


_ODD_IDS = ["d1", "é-dash", "x y", "a.b", "中", "d", "0", "true", "/s", "]", ":"]
_ODD_REF_TEXTS = st.sampled_from(
    [*_ODD_IDS, '"d1"', "d1\\", "\n", "\\", '"', "\\u00e9", "\u2028", "\x7f", "", "k"]
)
_ODD_REF_VALUES = _payloads(
    _ODD_REF_TEXTS,
    width=4,
    leaves=25,
    scalars=st.integers(-3, 3)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.none()
    | st.booleans(),
)


@settings(max_examples=400, deadline=None)
@given(
    _ODD_REF_VALUES,
    st.frozensets(st.sampled_from([*_ODD_IDS, 'q"uote', "back\\slash"])),
    st.sampled_from([None, "d1", "中"]),
)
def test_references_found_on_the_text_are_the_walks(
    data: Any, ids: frozenset[str], ignore: str | None
) -> None:
    """Found on the text (occurrences located by their offsets) or by the walk, the same
    paths and ids: ids also as keys or inside other strings, escapes, non-ASCII, scalars."""
    assert find_references(data, ids, ignore=ignore) == _references_by_walk(data, ids, ignore)


_PREFIXED_IDS = ["gen-1", "gen-12", "gen-123", "gen-", "ge", "gen-1\\", "gen-é"]
_PREFIXED_TEXTS = st.sampled_from([*_PREFIXED_IDS, '"', "\\", '"gen-1"', "gen", "1", ":", ""])
_PREFIXED_VALUES = _payloads(_PREFIXED_TEXTS, width=4, leaves=25)


@settings(max_examples=400, deadline=None)
@given(
    _PREFIXED_VALUES,
    st.frozensets(st.sampled_from(_PREFIXED_IDS)),
    st.sampled_from([None, "gen-1", "gen-12"]),
)
def test_ids_sharing_a_prefix_are_found_as_the_walk_finds_them(
    data: Any, ids: frozenset[str], ignore: str | None
) -> None:
    """Ids scanned for by their shared first bytes (one the prefix of another, as keys, inside
    other strings, after escaped quotes) give the walk's paths and ids."""
    assert find_references(data, ids, ignore=ignore) == _references_by_walk(data, ids, ignore)


def test_a_reference_late_in_a_large_list_is_found() -> None:
    """Spans measured lazily still reach a reference after many siblings, and one before."""
    data = {"a": [{"k": str(n)} for n in range(50)] + [{"k": "gen-1"}], "b": ["gen-1"]}
    data["a"][3]["x"] = "gen-1"
    assert find_references(data, frozenset({"gen-1", "gen-2"})) == [
        ("data.a[3].x", "gen-1"),
        ("data.a[50].k", "gen-1"),
        ("data.b[0]", "gen-1"),
    ]

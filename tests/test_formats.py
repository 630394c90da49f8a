"""Tests for migrate.formats: counts per kind, change lines and graph drawings."""

from __future__ import annotations

import json
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from migrate.diff import Change
from migrate.formats import count_results, format_change, format_counts, render_graph, tally
from migrate.graph import DependencyGraph, Edge, build_graph
from migrate.models import Action, Result


@settings(max_examples=50)
@given(st.lists(st.sampled_from(Result), max_size=40))
def test_tally_counts_every_member_in_enum_order(kinds: list[Result]) -> None:
    """tally lists every member once, in the enum's order, with its number of occurrences."""
    counts = tally(kinds, Result)
    assert list(counts) == list(Result)
    assert all(counts[result] == kinds.count(result) for result in Result)
    assert sum(counts.values()) == len(kinds)


def test_format_counts_names_only_kinds_that_occur() -> None:
    """`2 create, 1 blocked`: kinds with no dashboard are left out; none at all is ""."""
    counts = tally([Action.BLOCKED, Action.CREATE, Action.CREATE], Action)
    assert format_counts(counts) == "2 create, 1 blocked"
    assert format_counts(count_results([])) == ""


def test_format_change_truncates_to_width() -> None:
    """A change renders on one line within `width`, long values cut with an ellipsis."""
    change = Change("data.metrics[2].query", "changed", "SELECT " + "a" * 500, "x\n" * 300)
    line = format_change(change, width=100)
    assert "\n" not in line and len(line) <= 100 and "…" in line
    assert line.startswith('~ data.metrics[2].query: "SELECT ')
    short = format_change(Change("data.a", "changed", 1, "two"))
    assert short == '~ data.a: 1 → "two"'
    assert format_change(Change("data.b", "added", None, {"k": [1]})) == '+ data.b: {"k":[1]}'
    long_path = Change("data." + "x" * 300, "removed", 1, None)
    assert len(format_change(long_path, width=80)) <= 80


HOSTILE = [
    'a"b',
    "with space",
    "ünïcødé-ダッシュ",
    "x-->y",
    "back\\slash\\",
    "semi;colon#1",
    "nl\nx",
]


def test_render_mermaid_escapes_hostile_ids() -> None:
    """Mermaid output uses synthetic node names and labels that no id can break out of."""
    graph = build_graph(HOSTILE, {HOSTILE[0]: [HOSTILE[3]]}, {HOSTILE[1]: {"r": HOSTILE[2]}})
    text = render_graph(graph, "mermaid")
    lines = text.splitlines()
    assert lines[0] == "graph TD"
    node_line = re.compile(r'    n\d+\["[^"\n\[\]<>]*"\]\Z')
    edge_line = re.compile(r"    n\d+ (-->|-\.->) n\d+\Z")
    assert all(node_line.match(line) or edge_line.match(line) for line in lines[1:])
    assert sum(1 for line in lines if "-.->" in line) == 1
    assert sum(1 for line in lines if " --> " in line) == 1


def _dot_unescape(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "r": "\r"}.get(m.group(1), m.group(1)), text)


def test_render_dot_quotes_hostile_ids() -> None:
    """Every dot statement is well formed and each label decodes back to its id."""
    graph = build_graph(HOSTILE, {HOSTILE[0]: [HOSTILE[3]]}, {HOSTILE[1]: {"r": HOSTILE[2]}})
    text = render_graph(graph, "dot")
    lines = text.splitlines()
    assert lines[0] == "digraph dependencies {" and lines[-1] == "}"
    quoted = r'"(?:[^"\\]|\\.)*"'
    labels = []
    for line in lines[3:-1]:
        node = re.fullmatch(rf'    "n\d+" \[label=({quoted})\];', line)
        edge = re.fullmatch(
            rf'    "n\d+" -> "n\d+"( \[(style=dashed, )?tooltip={quoted}\])?;', line
        )
        assert node or edge, line
        if node:
            labels.append(_dot_unescape(node.group(1)[1:-1]))
    assert sorted(labels) == sorted(HOSTILE)
    assert "style=dashed" in text


def test_render_json_round_trips() -> None:
    """The JSON rendering rebuilds an equal graph and carries the import order."""
    graph = build_graph(HOSTILE, {HOSTILE[0]: [HOSTILE[3]]}, {HOSTILE[1]: {"r": HOSTILE[2]}})
    document = json.loads(render_graph(graph, "json"))
    rebuilt = DependencyGraph(
        tuple(document["nodes"]), tuple(Edge(**edge) for edge in document["edges"])
    )
    assert rebuilt == graph
    assert document["order"] == graph.order()


def test_render_text_lists_origins_and_labels() -> None:
    """Text shows one numbered line per node in order, with each dependency and its origin."""
    graph = build_graph(["a", "b"], {"b": ["a"]}, {"b": {"m": ["a"]}})
    text = render_graph(graph, "text", labels={"a": "KPI Core"})
    assert text.splitlines() == [
        "1. a  (KPI Core)",
        "2. b",
        "     needs a (explicit)",
        "     needs a (inferred at data.m[0])",
    ]

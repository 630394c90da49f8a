"""Tests for migrate.graph: edges, ordering, cycles, selection."""

from __future__ import annotations

import itertools
import random
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from migrate.errors import PlanError
from migrate.graph import DependencyGraph, build_graph, select


@st.composite
def dags(draw: st.DrawFn, max_nodes: int = 200) -> tuple[list[str], dict[str, list[str]]]:
    """Random DAGs: node k may depend only on nodes with a smaller index."""
    count = draw(st.integers(min_value=1, max_value=max_nodes))
    names = [f"d{n:03d}-{draw(st.sampled_from('abc'))}" for n in range(count)]
    rng = random.Random(draw(st.integers(0, 2**32)))
    explicit: dict[str, list[str]] = {}
    for index, name in enumerate(names):
        if index:
            explicit[name] = rng.sample(names[:index], k=min(index, rng.randint(0, 3)))
    return names, explicit


@settings(max_examples=60, deadline=None)
@given(dags(), st.randoms(use_true_random=False))
def test_order_respects_dependencies_and_ignores_input_order(
    dag: tuple[list[str], dict[str, list[str]]], rng: random.Random
) -> None:
    """order() puts dependencies first and is identical for any permutation of the input."""
    names, explicit = dag
    graph = build_graph(names, explicit)
    order = graph.order()
    assert sorted(order) == sorted(names)
    position = {node: index for index, node in enumerate(order)}
    for dependent, dependencies in explicit.items():
        for dependency in dependencies:
            assert position[dependency] < position[dependent]
    shuffled_names = names[:]
    rng.shuffle(shuffled_names)
    shuffled_explicit = {k: list(reversed(v)) for k, v in reversed(list(explicit.items()))}
    again = build_graph(shuffled_names, shuffled_explicit)
    assert again.order() == order
    assert again == graph


@settings(max_examples=60, deadline=None)
@given(dags(), st.data())
def test_back_edge_always_raises_with_valid_cycle_path(
    dag: tuple[list[str], dict[str, list[str]]], data: st.DataObject
) -> None:
    """An injected back-edge always yields a PlanError whose cycle path follows real edges."""
    names, explicit = dag
    chains = [(dep, dependency) for dep, deps in explicit.items() for dependency in deps]
    if not chains:
        return
    dependent, dependency = data.draw(st.sampled_from(chains))
    # dependent → dependency exists; make dependency depend on dependent too.
    explicit = {k: list(v) for k, v in explicit.items()}
    explicit.setdefault(dependency, []).append(dependent)
    with pytest.raises(PlanError) as info:
        build_graph(names, explicit)
    match = re.search(r"dependency cycle: (.+?) \(", info.value.message)
    assert match
    path = match.group(1).split(" → ")
    assert path[0] == path[-1] == min(path)
    for a, b in itertools.pairwise(path):
        assert b in explicit.get(a, [])
    assert info.value.exit_code == 3


def test_cycle_message_names_inferred_paths_and_hint() -> None:
    """A cycle through an inferred edge shows its JSON path and the infer_dependencies fix."""
    payloads = {"b": {"metrics": [{"clickActions": [{"dashboardId": "a"}]}]}}
    with pytest.raises(PlanError) as info:
        build_graph(["a", "b"], {"a": ["b"]}, payloads)
    text = str(info.value)
    assert "a → b → a" in text
    assert "data.metrics[0].clickActions[0].dashboardId" in text
    assert "infer_dependencies: false" in text


def test_inference_off_ignores_payload_references() -> None:
    """infer=False builds only explicit edges, so a payload reference cannot make a cycle."""
    payloads = {"b": {"x": "a"}}
    graph = build_graph(["a", "b"], {"a": ["b"]}, payloads, infer=False)
    assert graph.order() == ["b", "a"]


def test_unknown_explicit_dependency_is_plan_error() -> None:
    """depends_on naming a dashboard outside the plan is exit 3 and suggests a close id."""
    with pytest.raises(PlanError) as info:
        build_graph(["sales-overview", "kpi-core"], {"sales-overview": ["kpi-cor"]})
    assert "kpi-cor" in info.value.message
    assert info.value.hint and "kpi-core" in info.value.hint


def test_self_dependency_is_plan_error_but_self_reference_is_ignored() -> None:
    """An explicit self-dependency is refused; a payload naming its own id is not an edge."""
    with pytest.raises(PlanError):
        build_graph(["a"], {"a": ["a"]})
    assert build_graph(["a"], {}, {"a": {"id": "a"}}).edges == ()


def test_explicit_and_inferred_duplicate_keeps_both_records() -> None:
    """The same pair from depends_on and a payload reference is recorded twice, once per origin."""
    graph = build_graph(["a", "b"], {"b": ["a"]}, {"b": {"x": ["a", {"y": "a"}]}})
    assert [e.origin for e in graph.edges] == ["explicit", "inferred", "inferred"]
    assert graph.dependencies("b") == ["a"]
    assert graph.dependents("a") == ["b"]


@pytest.fixture
def chain() -> DependencyGraph:
    """a ← b ← c, and an unrelated x."""
    return build_graph(["a", "b", "c", "x"], {"b": ["a"], "c": ["b"]})


def test_select_closures(chain: DependencyGraph) -> None:
    """`+id` adds ancestors, `id+` descendants, `+id+` both; no selector selects everything."""
    assert select(chain, ["b"]) == {"b"}
    assert select(chain, ["+b"]) == {"a", "b"}
    assert select(chain, ["b+"]) == {"b", "c"}
    assert select(chain, ["+b+"]) == {"a", "b", "c"}
    assert select(chain, []) == {"a", "b", "c", "x"}


def test_select_globs_and_exact_ids_with_plus() -> None:
    """Globs use fnmatchcase; an id that itself ends in '+' is taken literally."""
    graph = build_graph(["sales-a", "sales-b", "Sales-c", "odd+"], {})
    assert select(graph, ["sales-*"]) == {"sales-a", "sales-b"}
    assert select(graph, ["odd+"]) == {"odd+"}


def test_select_unknown_is_plan_error_with_suggestion(chain: DependencyGraph) -> None:
    """A selector matching nothing names itself and hints close ids."""
    graph = build_graph(["sales-overview"], {})
    with pytest.raises(PlanError) as info:
        select(graph, ["+sales-overveiw"])
    assert "+sales-overveiw" in info.value.message
    assert info.value.hint and "sales-overview" in info.value.hint


def test_unknown_node_queries_are_plan_errors(chain: DependencyGraph) -> None:
    """Asking about a dashboard the graph does not hold is a PlanError, not a networkx error."""
    with pytest.raises(PlanError):
        chain.ancestors("nope")

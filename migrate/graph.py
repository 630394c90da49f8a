"""The dependency graph of planned dashboards: edges, order, selection.

The only module that imports networkx; its exceptions are translated here into PlanError.
An edge `dependent → dependency` means the dependency must be imported first. Edges come from a
plan's `depends_on` (explicit) and from payload strings equal to another planned dashboard's id
(inferred, with the JSON path where the reference sits). An explicit and an inferred edge between
the same pair are both kept, as separate records: each tells the user something different.
"""

from __future__ import annotations

import difflib
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from functools import cached_property
from typing import Any, Literal

from migrate.errors import PlanError
from migrate.references import find_references

Origin = Literal["explicit", "inferred"]


def _networkx() -> Any:
    """The networkx module, imported on first use: it costs ~0.25 s, which plan loading and
    `migrate --help` should not pay."""
    import networkx  # type: ignore[import-untyped]  # noqa: PLC0415  # ships no type information

    return networkx


def load_library() -> None:
    """Import networkx now (blocking): call it in a worker thread while the run waits on the
    network, so that the first graph built does not pay ~0.2 s for it between two phases."""
    _networkx()


@dataclass(frozen=True)
class Edge:
    """`dependent` needs `dependency` imported first; `path` locates an inferred reference."""

    dependent: str
    dependency: str
    origin: Origin
    path: str | None = None

    def sort_key(self) -> tuple[str, str, str, str]:
        """Edges sort by (dependent, dependency, origin, path)."""
        return (self.dependent, self.dependency, self.origin, self.path or "")


@dataclass(frozen=True)
class DependencyGraph:
    """An acyclic graph of dashboard ids; `build_graph` makes one and sorts its fields."""

    nodes: tuple[str, ...]
    edges: tuple[Edge, ...] = ()

    @cached_property
    def _nx(self) -> Any:
        # Arcs run dependency → dependent, so a topological order is an import order.
        digraph = _networkx().DiGraph()
        digraph.add_nodes_from(self.nodes)
        digraph.add_edges_from((e.dependency, e.dependent) for e in self.edges)
        return digraph

    def _require(self, node: str) -> None:
        if node not in self._nx:
            raise PlanError(f"{node!r} is not a dashboard of this plan")

    def order(self) -> list[str]:
        """Every dependency before its dependents; ties broken by id (lexicographic Kahn)."""
        try:
            return list(_networkx().lexicographical_topological_sort(self._nx))
        except _networkx().NetworkXUnfeasible as exc:
            raise _cycle_error(self.nodes, self.edges) from exc

    def dependencies(self, node: str) -> list[str]:
        """What `node` needs directly, sorted."""
        self._require(node)
        return sorted(self._nx.predecessors(node))

    def dependents(self, node: str) -> list[str]:
        """What needs `node` directly, sorted."""
        self._require(node)
        return sorted(self._nx.successors(node))

    def ancestors(self, node: str) -> set[str]:
        """Everything `node` transitively depends on."""
        self._require(node)
        return set(_networkx().ancestors(self._nx, node))

    def descendants(self, node: str) -> set[str]:
        """Everything that transitively depends on `node`."""
        self._require(node)
        return set(_networkx().descendants(self._nx, node))

    def edges_between(self, dependent: str, dependency: str) -> list[Edge]:
        """The edge records (explicit and/or inferred) from `dependent` to `dependency`."""
        return [e for e in self.edges if e.dependent == dependent and e.dependency == dependency]


def build_graph(
    nodes: Iterable[str],
    explicit: Mapping[str, Iterable[str]],
    payloads: Mapping[str, Any] | None = None,
    *,
    references: Mapping[str, Iterable[tuple[str, str]]] | None = None,
    infer: bool = True,
) -> DependencyGraph:
    """The graph of `nodes` with explicit edges and, when `infer`, edges found in `payloads`.

    `payloads[id]` is the dashboard's `data`; or pass `references[id]`, the (JSON path, id)
    pairs `find_references` already found in it. Self-references are ignored. Raises PlanError
    when an explicit dependency (or dependent) is not a node, and when the edges form a cycle.
    """
    node_set = set(nodes)
    edges: set[Edge] = set()
    for dependent, dependencies in explicit.items():
        for dependency in dependencies:
            for name in (dependent, dependency):
                if name not in node_set:
                    raise PlanError(
                        f"{dependent!r} depends on {dependency!r}, but {name!r} is not a "
                        "dashboard of this plan",
                        hint=f"add {name!r} to dashboards: or remove it from depends_on"
                        + _close_hint(name, node_set),
                    )
            if dependent != dependency:
                edges.add(Edge(dependent, dependency, "explicit"))
            else:
                raise PlanError(
                    f"{dependent!r} depends on itself",
                    hint=f"remove {dependent!r} from its own depends_on",
                )
    found: dict[str, Iterable[tuple[str, str]]] = dict(references or {})
    if payloads:
        for dependent in node_set & payloads.keys():
            found[dependent] = find_references(payloads[dependent], node_set)
    if infer:
        for dependent in sorted(node_set & found.keys()):
            for path, dependency in found[dependent]:
                if dependency != dependent and dependency in node_set:
                    edges.add(Edge(dependent, dependency, "inferred", path))
    graph = DependencyGraph(tuple(sorted(node_set)), tuple(sorted(edges, key=Edge.sort_key)))
    graph.order()  # raises the cycle error now, not at first use
    return graph


def _close_hint(name: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, sorted(candidates), n=3, cutoff=0.6)
    return f" (did you mean {', '.join(map(repr, close))}?)" if close else ""


def find_cycle(needs: Mapping[str, Iterable[str]]) -> list[str] | None:
    """One dependency cycle as `[a, b, c, a]` (a depends on b ...), or None.

    It starts at the smallest id lying on any cycle and takes the shortest way back, trying
    dependencies in id order, so it is the same on every run. Pure Python (no networkx import):
    plan loading uses it, and a cycle is an error path, where O(nodes x edges) is fine.
    """
    graph = {node: sorted(set(deps)) for node, deps in needs.items()}
    for start in sorted(graph):
        previous: dict[str, str] = {}
        frontier = [start]
        while frontier:
            following: list[str] = []
            for node in frontier:
                for succ in graph.get(node, ()):
                    if succ == start:
                        path = [node]
                        while path[-1] != start:
                            path.append(previous[path[-1]])
                        path.reverse()
                        return [*path, start]
                    if succ not in previous and succ in graph:
                        previous[succ] = node
                        following.append(succ)
            frontier = following
    return None


def _cycle_error(nodes: Sequence[str], edges: Sequence[Edge]) -> PlanError:
    """A PlanError naming one cycle, starting at its smallest id, and each edge's origin."""
    needs: dict[str, set[str]] = {node: set() for node in nodes}
    for edge in edges:
        needs[edge.dependent].add(edge.dependency)
    path = find_cycle(needs)
    assert path is not None  # called only when ordering found a cycle
    lines = []
    any_inferred = False
    for dependent, dependency in itertools.pairwise(path):
        for edge in sorted(
            (e for e in edges if e.dependent == dependent and e.dependency == dependency),
            key=Edge.sort_key,
        ):
            if edge.origin == "explicit":
                lines.append(f"  {dependent} → {dependency}: depends_on in the plan")
            else:
                any_inferred = True
                lines.append(f"  {dependent} → {dependency}: inferred from {edge.path}")
    hint = "remove one of these depends_on entries"
    if any_inferred:
        hint += (
            ", change the payload reference, or set settings.infer_dependencies: false"
            " to ignore references found in payloads"
        )
    return PlanError(
        "dependency cycle: " + " → ".join(path) + " (→ reads 'depends on')\n" + "\n".join(lines),
        hint=hint,
    )


def select(graph: DependencyGraph, selectors: Sequence[str]) -> set[str]:
    """The dashboards `selectors` name (docs/contract.md A1); all of them without selectors.

    A selector is an id or glob (fnmatchcase); `+SEL` adds what SEL's matches depend on,
    `SEL+` what depends on them, `+SEL+` both. An exact id wins over reading `+` as an operator.
    A selector that matches nothing is a PlanError.
    """
    if not selectors:
        return set(graph.nodes)
    chosen: set[str] = set()
    for selector in selectors:
        up = down = False
        pattern = selector
        if pattern not in graph.nodes:
            if pattern.startswith("+") and len(pattern) > 1:
                up, pattern = True, pattern[1:]
            if pattern.endswith("+") and len(pattern) > 1:
                down, pattern = True, pattern[:-1]
        matched = (
            [pattern]
            if pattern in graph.nodes
            else [n for n in graph.nodes if fnmatchcase(n, pattern)]
        )
        if not matched:
            raise PlanError(
                f"--select {selector!r} matches no dashboard of this plan",
                hint="use a planned dashboard id or a glob such as 'sales-*'"
                + _close_hint(pattern, graph.nodes),
            )
        for node in matched:
            chosen.add(node)
            if up:
                chosen |= graph.ancestors(node)
            if down:
                chosen |= graph.descendants(node)
    return chosen

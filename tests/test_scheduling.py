"""The scheduler, property-tested on random dependency graphs: the sandbox's request log shows no
import starting before its dependencies' imports finished, in-flight requests never exceed the
limit, and the plan is identical across runs."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import actions, apply, plan, sandbox_of, write_plan


@st.composite
def dags(draw: st.DrawFn) -> dict[str, list[str]]:
    """A random DAG: node i may depend only on nodes with a smaller index (so no cycles)."""
    size = draw(st.integers(min_value=1, max_value=200))
    names = [f"d{i:03d}-{draw(st.sampled_from(['kpi', 'sales', 'ops']))}" for i in range(size)]
    graph: dict[str, list[str]] = {}
    for i, name in enumerate(names):
        if i == 0:
            graph[name] = []
            continue
        deps = draw(st.lists(st.integers(0, i - 1), max_size=min(3, i), unique=True))
        graph[name] = [names[j] for j in deps]
    return graph


def seed_graph(state: Path, graph: dict[str, list[str]]) -> None:
    """Put one dashboard per node into a fresh source workspace, linking to its dependencies."""
    sandbox = sandbox_of(state)
    for name, deps in graph.items():
        data = {
            "name": name,
            "layout": [],
            "metrics": [
                {"id": f"m-{name}", "clickActions": [{"type": "navigate", "dashboardId": d}]}
                for d in deps
            ],
        }
        sandbox.put_dashboard("Graph Source", name, name, data)
    sandbox.add_workspace("Graph Target")


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(graph=dags(), concurrency=st.integers(min_value=1, max_value=12))
def test_imports_wait_for_dependencies_and_respect_the_limit(
    graph: dict[str, list[str]], concurrency: int
) -> None:
    """Every import starts after all its dependencies' imports ended; in flight ≤ concurrency."""
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp)
        seed_graph(state, graph)
        sandbox = sandbox_of(state)
        sandbox.faults.latency_ms = 1  # requests overlap, so the limit is really exercised
        path = write_plan(state, source="Graph Source", target="Graph Target")
        first = plan(path, state)
        again = plan(path, state)
        assert [(d.id, d.action, d.depends_on) for d in first.dashboards] == [
            (d.id, d.action, d.depends_on) for d in again.dashboards
        ]
        sandbox.reset_stats()
        report = apply(path, state, concurrency=concurrency)
        assert report.ok, [o for o in report.outcomes if not o.result.ok]
        imports = {r.dashboard_id: r for r in sandbox.requests("import")}
        assert set(imports) == set(graph)
        for name, deps in graph.items():
            for dep in deps:
                assert imports[dep].finished <= imports[name].started, (dep, name)
        assert sandbox.max_in_flight <= concurrency
        assert sandbox.write_count == len(graph)
        assert set(actions(plan(path, state)).values()) == {"unchanged"}

"""Text for people, shared by the console and the report files: changes, graphs, counts.

Everything here takes the core's data and returns text (or counts to print); nothing reads,
writes or prints. The core never builds such text itself.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar

from migrate.errors import PlanError
from migrate.models import Action, Result

if TYPE_CHECKING:
    from migrate.diff import Change
    from migrate.events import Outcome
    from migrate.graph import DependencyGraph, Edge
    from migrate.planner import PlannedDashboard

GraphFormat = Literal["text", "mermaid", "dot", "json"]
Kind = TypeVar("Kind", bound=enum.Enum)


# ---------------------------------------------------------------------------------- counts
def tally(kinds: Iterable[Kind], members: type[Kind]) -> dict[Kind, int]:
    """How often each member of the enum `members` occurs in `kinds`: every member, in the
    enum's order, 0 when absent. The one place results and actions are counted."""
    counts = dict.fromkeys(members, 0)
    for kind in kinds:
        counts[kind] += 1
    return counts


def count_results(outcomes: Iterable[Outcome]) -> dict[Result, int]:
    """Dashboards per apply result, every result listed."""
    return tally((o.result for o in outcomes), Result)


def count_actions(dashboards: Iterable[PlannedDashboard]) -> dict[Action, int]:
    """Dashboards per planned action, every action listed."""
    return tally((d.action for d in dashboards), Action)


def format_counts(counts: Mapping[Kind, int]) -> str:
    """`3 created, 1 failed`: the kinds that occur, in the order given; "" when none does."""
    return ", ".join(f"{n} {kind.value}" for kind, n in counts.items() if n)


# --------------------------------------------------------------------------------- changes
def _encode(value: Any) -> str:
    return json.dumps(
        value, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=repr
    )


def _clip(text: str, room: int) -> str:
    if len(text) <= room:
        return text
    if room <= 1:
        return "…"[:room]
    # Keep the head and a little of the tail: the end of a long SQL string often differs too.
    tail = min(room // 4, 20)
    return text[: room - tail - 1] + "…" + (text[-tail:] if tail else "")


_MARK: Final = {"added": "+", "removed": "-", "changed": "~"}


def format_change(change: Change, *, width: int = 120) -> str:
    """One line, at most `width` characters: `~ path: before → after`, values JSON-encoded.

    Long values are cut in the middle with "…"; the path is cut (from the left) only when it
    alone would fill the line.
    """
    mark = _MARK[change.kind]
    path = change.path
    if len(path) > width // 2:
        path = "…" + path[-(width // 2 - 1) :]
    head = f"{mark} {path}: "
    room = max(width - len(head), 8)
    if change.kind == "added":
        return head + _clip(_encode(change.after), room)
    if change.kind == "removed":
        return head + _clip(_encode(change.before), room)
    before, after = _encode(change.before), _encode(change.after)
    room -= 3  # " → "
    if len(before) + len(after) > room:
        # Share the room, giving the shorter value only what it needs.
        half = room // 2
        if len(before) <= half:
            after = _clip(after, room - len(before))
        elif len(after) <= half:
            before = _clip(before, room - len(after))
        else:
            before, after = _clip(before, half), _clip(after, room - half)
    return f"{head}{before} → {after}"


# ----------------------------------------------------------------------------------- graphs
def render_graph(
    graph: DependencyGraph, fmt: GraphFormat, *, labels: Mapping[str, str] | None = None
) -> str:
    """The graph as text, Mermaid, Graphviz dot or JSON; arrows run dependency → dependent.

    Explicit edges are solid, inferred ones dashed (Mermaid, dot). Ids may hold any character:
    Mermaid and dot use synthetic node names (`n0`, ...) with escaped labels.
    """
    labels = labels or {}
    order = graph.order()
    if fmt == "json":
        document: dict[str, Any] = {
            "nodes": list(graph.nodes),
            "edges": [
                {
                    "dependent": e.dependent,
                    "dependency": e.dependency,
                    "origin": e.origin,
                    "path": e.path,
                }
                for e in graph.edges
            ],
            "order": order,
        }
        if labels:
            document["labels"] = {n: labels[n] for n in graph.nodes if n in labels}
        return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    if fmt == "text":
        return _render_text(graph, order, labels)
    if fmt in ("mermaid", "dot"):
        return _render_diagram(graph, order, labels, fmt)
    raise PlanError(f"unknown graph format {fmt!r}", hint="use text, mermaid, dot or json")


def _show(node: str) -> str:
    # Quote ids that would blur a line (spaces at the ends, control characters, empty).
    if node and node.isprintable() and node.strip() == node:
        return node
    return json.dumps(node, ensure_ascii=False)


def _render_text(graph: DependencyGraph, order: list[str], labels: Mapping[str, str]) -> str:
    width = len(str(len(order)))
    lines: list[str] = []
    for number, node in enumerate(order, 1):
        label = f"  ({_show(labels[node])})" if node in labels else ""
        lines.append(f"{number:>{width}}. {_show(node)}{label}")
        for dependency in graph.dependencies(node):
            for edge in graph.edges_between(node, dependency):
                origin = "explicit" if edge.origin == "explicit" else f"inferred at {edge.path}"
                lines.append(f"{'':>{width}}    needs {_show(dependency)} ({origin})")
    return "\n".join(lines) + "\n"


def _escape_mermaid(text: str) -> str:
    # Mermaid reads #NNN; as a character code inside a quoted label; letters, digits and a few
    # harmless marks pass through, everything else is encoded so no id can end the label.
    return "".join(ch if ch.isalnum() or ch in " _-.,:/()+*@" else f"#{ord(ch)};" for ch in text)


def _escape_dot(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")


def _render_diagram(
    graph: DependencyGraph, order: list[str], labels: Mapping[str, str], fmt: str
) -> str:
    names = {node: f"n{index}" for index, node in enumerate(graph.nodes)}
    pairs: dict[tuple[str, str], list[Edge]] = {}
    for edge in graph.edges:
        pairs.setdefault((edge.dependency, edge.dependent), []).append(edge)

    def text_of(node: str) -> str:
        return f"{node} ({labels[node]})" if node in labels else node

    if fmt == "mermaid":
        lines = ["graph TD"]
        lines += [f'    {names[n]}["{_escape_mermaid(text_of(n))}"]' for n in order]
        for (dependency, dependent), records in sorted(pairs.items()):
            explicit = any(e.origin == "explicit" for e in records)
            arrow = "-->" if explicit else "-.->"
            lines.append(f"    {names[dependency]} {arrow} {names[dependent]}")
        return "\n".join(lines) + "\n"
    lines = ["digraph dependencies {", "    rankdir=LR;", "    node [shape=box];"]
    lines += [f'    "{names[n]}" [label="{_escape_dot(text_of(n))}"];' for n in order]
    for (dependency, dependent), records in sorted(pairs.items()):
        explicit = any(e.origin == "explicit" for e in records)
        paths = [e.path for e in records if e.path]
        attrs = [] if explicit else ["style=dashed"]
        if paths:
            more = f" (+{len(paths) - 1})" if len(paths) > 1 else ""
            attrs.append(f'tooltip="{_escape_dot(paths[0] + more)}"')
        suffix = f" [{', '.join(attrs)}]" if attrs else ""
        lines.append(f'    "{names[dependency]}" -> "{names[dependent]}"{suffix};')
    lines.append("}")
    return "\n".join(lines) + "\n"

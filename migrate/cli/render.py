"""Rendering for the command line: redacted output, progress displays, plans and outcomes.

With `migrate/cli/app.py`, the only code that prints. Everything written passes through
`credentials.redact`, so a token can never reach the console.
"""

from __future__ import annotations

import io
import sys
import time
from enum import StrEnum
from typing import IO, Any, cast

from migrate.credentials import redact
from migrate.events import Outcome, Progress
from migrate.formats import count_actions, format_change, format_counts
from migrate.models import Action


def out(text: str = "") -> None:
    """Print to stdout, redacted."""
    sys.stdout.write(redact(text) + "\n")
    sys.stdout.flush()


def err(text: str) -> None:
    """Print to stderr, redacted."""
    sys.stderr.write(redact(text) + "\n")
    sys.stderr.flush()


class PlanFormat(StrEnum):
    """Output formats of `plan`."""

    TEXT = "text"
    JSON = "json"
    MARKDOWN = "markdown"


class GraphFormat(StrEnum):
    """Output formats of `graph`."""

    TEXT = "text"
    MERMAID = "mermaid"
    DOT = "dot"
    JSON = "json"


class SchemaName(StrEnum):
    """Schemas `migrate schema` can print."""

    PLAN = "plan"
    DASHBOARD = "dashboard"


_SYMBOL = {
    Action.CREATE: "+",
    Action.UNCHANGED: "=",
    Action.SKIP: "~",
    Action.CONFLICT: "!",
    Action.INVALID: "x",
    Action.BLOCKED: "-",
}


class ConsoleProgress(Progress):
    """Plain, timestamped lines on stderr (fit for CI logs); only warnings with --quiet."""

    def __init__(self, *, quiet: bool) -> None:
        self.quiet = quiet
        self.t0 = time.monotonic()

    def _line(self, text: str) -> None:
        if not self.quiet:
            err(f"[{time.monotonic() - self.t0:7.2f}s] {text}")

    def stage(self, message: str) -> None:
        """Show the phase."""
        self._line(message)

    def warn(self, message: str) -> None:
        """Always shown."""
        err(f"warning: {message}")

    def finished(self, outcome: Outcome) -> None:
        """One line per dashboard."""
        detail = f" — {outcome.error.message}" if outcome.error and not outcome.result.ok else ""
        self._line(f"{outcome.result.value:>9}  {outcome.id} → {outcome.target_id}{detail}")

    def close(self) -> None:
        """Nothing to tear down."""


class _RedactingStream(io.TextIOBase):
    """A text stream that redacts secrets before they reach the terminal."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def write(self, text: str) -> int:
        self._inner.write(redact(text))
        return len(text)

    def flush(self) -> None:
        self._inner.flush()

    def isatty(self) -> bool:
        return bool(self._inner.isatty())


class RichProgress(ConsoleProgress):
    """A live progress bar on a terminal, with the same warnings and stage lines."""

    def __init__(self) -> None:
        from rich.console import Console  # noqa: PLC0415  # rich loads only on a terminal
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn  # noqa: PLC0415
        from rich.progress import Progress as Bar  # noqa: PLC0415

        super().__init__(quiet=False)
        self.console = Console(file=cast(IO[str], _RedactingStream(sys.stderr)), stderr=True)
        self.bar = Bar(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        )
        self.task = self.bar.add_task("planning", total=None)
        self.bar.start()

    def stage(self, message: str) -> None:
        """Show the phase as the bar's label."""
        self.bar.update(self.task, description=message)

    def warn(self, message: str) -> None:
        """Printed above the bar."""
        self.console.print(f"[yellow]warning:[/] {message}", markup=True, highlight=False)

    def planned(self, dashboard_id: str, action: Action) -> None:
        """Count the work to do."""
        if action is Action.CREATE:
            total = self.bar.tasks[0].total or 0
            self.bar.update(self.task, total=total + 1, completed=0)

    def finished(self, outcome: Outcome) -> None:
        """Advance the bar; failures are printed above it."""
        if outcome.attempts:
            self.bar.advance(self.task)
        if not outcome.result.ok:
            detail = outcome.error.message if outcome.error else ""
            self.console.print(
                f"[red]{outcome.result.value}[/] {outcome.id}: {detail}", highlight=False
            )

    def close(self) -> None:
        """Remove the bar."""
        self.bar.stop()


def make_progress(*, quiet: bool) -> ConsoleProgress:
    if not quiet and sys.stderr.isatty():
        return RichProgress()
    return ConsoleProgress(quiet=quiet)


def render_outcomes(outcomes: list[Outcome]) -> None:
    """The per-dashboard table at the end of an apply."""
    rows = [
        (o.id, o.target_id, o.result.value, str(o.attempts), o.error.message if o.error else "")
        for o in outcomes
    ]
    header = ("dashboard", "target id", "result", "tries", "detail")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    for row in [header, *rows]:
        cells = [row[i].ljust(widths[i]) for i in range(4)]
        out("  ".join([*cells, row[4]]).rstrip())


def plan_exit_code(migration: Any, detailed: bool) -> int:
    actions = {d.action for d in migration.dashboards}
    if actions & {Action.CONFLICT, Action.INVALID, Action.BLOCKED}:
        return 6
    if detailed and Action.CREATE in actions:
        return 10
    return 0


def render_plan(migration: Any, fmt: PlanFormat, started: float) -> None:
    from migrate.report import markdown_plan, plan_report, to_json  # noqa: PLC0415

    if fmt is PlanFormat.JSON:
        out(to_json(plan_report(migration, started_at=started, finished_at=time.time())).rstrip())
        return
    if fmt is PlanFormat.MARKDOWN:
        out(markdown_plan(migration).rstrip())
        return
    for d in migration.dashboards:
        arrow = f" → {d.target_id}" if d.target_id != d.id else ""
        line = f"{_SYMBOL[d.action]} {d.action.value:<9} {d.id}{arrow}"
        if d.error:
            line += f"  ({d.error.message})"
        out(line)
        for change in d.changes[:10]:
            out(f"      {format_change(change)}")
        if len(d.changes) > 10:
            out(f"      … and {len(d.changes) - 10} more changes")
    preview = migration.schema_pair_preview()
    if preview:
        out("\nSchema pairs (in the dashboards to create):")
        for old, new, places, boards in preview:
            out(f"  {old} → {new}: {places} places in {boards} dashboards")
    summary = format_counts(count_actions(migration.dashboards))
    out(f"\nPlan: {summary or 'nothing selected'}.")

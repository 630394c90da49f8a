"""What the user sees of a command: redacted output, progress, plans, outcomes, exit codes.

With `migrate/cli/app.py`, the only code that prints. Everything written passes through
`credentials.redact`, so a token can never reach the console, and through `printable`, so text
from a server (ids, names, error messages) can neither drive the terminal nor start a line a CI
runner would read as a command. Each command's exit code (A5 of
`docs/contract.md`) is computed by one function here, from the error tree and the results.
"""

from __future__ import annotations

import io
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final, cast

from migrate.credentials import redact
from migrate.errors import (
    LocalFileError,
    PartialError,
    PayloadInvalidError,
    RunInterruptedError,
    Violation,
)
from migrate.events import Outcome, Progress
from migrate.formats import count_actions, count_results, format_change, format_counts
from migrate.models import Action

if TYPE_CHECKING:
    from migrate.fleet import FleetReport
    from migrate.history import Deploy
    from migrate.planner import MigrationPlan, PlannedDashboard
    from migrate.runner import ApplyReport
    from migrate.validation import FileReport, ValidationReport

# The exit codes no error class stands for; every other one is an `exit_code` of the error tree.
SUCCESS: Final = 0
INTERNAL_ERROR: Final = 1  # a bug: an exception outside the error tree
CHANGES_PENDING: Final = 10  # `plan --detailed-exitcode`: work to do (2 is a usage error)
INTERRUPTED: Final = 130  # Ctrl-C outside a run's own handling: the shell's 128 + SIGINT

# Planned actions that leave a dashboard short of created/unchanged/skipped.
_UNAPPLIABLE: Final = (Action.CONFLICT, Action.INVALID, Action.BLOCKED)


# C0 controls (newline and tab aside), DEL, C1 controls, lone surrogates, and the bidi controls
# that reorder what a terminal shows.
_UNPRINTABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_LINE_BREAKS = re.compile("[\n\t\u2028\u2029]")
# A line starting with `::` is a workflow command to GitHub Actions (`::error file=...::`).
_WORKFLOW_COMMAND = re.compile(r"^(\s*)::", re.MULTILINE)
ID_WIDTH: Final = 40  # the widest an id is shown in a table; reports keep it whole


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    # \u00XX above C0: inside JSON text (`plan --format json`) it is still a valid escape.
    return f"\\x{code:02x}" if code < 0x20 else f"\\u{code:04x}"


def printable(text: str, *, lines: bool = True) -> str:
    """`text` safe to print: control characters, bidi controls and lone surrogates become
    visible escapes (`\\x1b`, `\\u009b`), and no line can start a CI workflow command.

    With `lines=False` (one value in one line: an id, a name), line breaks and tabs are
    escaped too.
    """
    text = _UNPRINTABLE.sub(_escape, text)
    if not lines:
        return _LINE_BREAKS.sub(_escape, text)
    return _WORKFLOW_COMMAND.sub(lambda m: f"{m.group(1)}\\x3a:", text)


def shown(value: str, width: int = ID_WIDTH) -> str:
    """One remote value for a table: printable on one line, elided in the middle past `width`."""
    text = printable(value, lines=False)
    if len(text) <= width:
        return text
    keep = width - 1
    return f"{text[: keep - keep // 3]}…{text[len(text) - keep // 3 :]}"


def out(text: str = "") -> None:
    """Print to stdout, redacted and printable."""
    sys.stdout.write(printable(redact(text)) + "\n")
    sys.stdout.flush()


def err(text: str) -> None:
    """Print to stderr, redacted and printable."""
    sys.stderr.write(printable(redact(text)) + "\n")
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
    BUNDLE = "bundle"
    SAVED_PLAN = "saved-plan"
    DEPLOY = "deploy"


_SYMBOL = {
    Action.CREATE: "+",
    Action.UPDATE: "*",
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
        self._line(
            f"{outcome.result.value:>9}  {shown(outcome.id)} → {shown(outcome.target_id)}"
            + printable(detail, lines=False)
        )

    def close(self) -> None:
        """Nothing to tear down."""


class _RedactingStream(io.TextIOBase):
    """A text stream that redacts secrets before they reach the terminal."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def write(self, text: str) -> int:
        # Remote text was escaped before rich saw it; rich's own ANSI codes must pass.
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
        from rich.markup import escape  # noqa: PLC0415

        self.console.print(
            f"[yellow]warning:[/] {escape(printable(message, lines=False))}",
            markup=True,
            highlight=False,
        )

    def planned(self, dashboard_id: str, action: Action) -> None:
        """Count the work to do."""
        if action in (Action.CREATE, Action.UPDATE):
            total = self.bar.tasks[0].total or 0
            self.bar.update(self.task, total=total + 1, completed=0)

    def finished(self, outcome: Outcome) -> None:
        """Advance the bar; failures are printed above it."""
        if outcome.attempts:
            self.bar.advance(self.task)
        if not outcome.result.ok:
            from rich.markup import escape  # noqa: PLC0415

            detail = printable(outcome.error.message if outcome.error else "", lines=False)
            self.console.print(
                f"[red]{outcome.result.value}[/] {escape(shown(outcome.id))}: {escape(detail)}",
                highlight=False,
            )

    def close(self) -> None:
        """Remove the bar."""
        self.bar.stop()


def make_progress(*, quiet: bool) -> ConsoleProgress:
    if not quiet and sys.stderr.isatty():
        return RichProgress()
    return ConsoleProgress(quiet=quiet)


def render_outcomes(outcomes: list[Outcome]) -> None:
    """The per-dashboard table at the end of an apply, then every embed id that changed."""
    rows = [
        (
            shown(o.id),
            shown(o.target_id),
            o.result.value,
            str(o.attempts),
            printable(o.error.message, lines=False) if o.error else "",
        )
        for o in outcomes
    ]
    header = ("dashboard", "target id", "result", "tries", "detail")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    for row in [header, *rows]:
        cells = [row[i].ljust(widths[i]) for i in range(4)]
        out("  ".join([*cells, row[4]]).rstrip())
    changed = [(o.id, e) for o in outcomes for e in o.embeds if e.changed]
    if changed:
        out("\nEmbed ids that changed (update the host applications that render them):")
        for dashboard_id, embed in changed:
            out(f"  {dashboard_id}: {embed.name!r} {embed.previous_embed_id} → {embed.embed_id}")


@dataclass(frozen=True)
class ReportFiles:
    """Where `apply` writes its A5 JSON report, JUnit XML and Markdown summary (None: not)."""

    report: Path | None = None
    junit: Path | None = None
    summary: Path | None = None


def render_apply(report: ApplyReport, files: ReportFiles, *, quiet: bool, rerun: str) -> None:
    """The outcome table (unless quiet), the report files, the totals, and why it fell short.

    `rerun` is the command that finishes an interrupted run.
    """
    from migrate.report import apply_report, junit_xml, markdown_summary, to_json  # noqa: PLC0415
    from migrate.storage import write_private  # noqa: PLC0415

    if not quiet:
        render_outcomes(report.outcomes)
    writes: tuple[tuple[Path | None, Callable[[], str]], ...] = (
        (files.report, lambda: to_json(apply_report(report))),
        (files.junit, lambda: junit_xml(report)),
        (files.summary, lambda: markdown_summary(report)),
    )
    for path, text in writes:
        if path is None:
            continue
        try:
            write_private(path, text())
        except OSError as exc:  # checked before the run; the disk may still fill up since
            raise LocalFileError(
                f"cannot write {path}: {exc.strerror or exc}", file=str(path)
            ) from None
    summary = format_counts(count_results(report.outcomes))
    elapsed = report.finished_at - report.started_at
    out(f"Apply: {summary or 'nothing selected'} in {elapsed:.1f}s.")
    if report.interrupted:
        err(f"interrupted; to finish, run again: {rerun}")
    elif not report.ok:
        bad = [shown(o.id) for o in report.outcomes if not o.result.ok]
        err(f"{len(bad)} dashboards did not succeed: {', '.join(bad[:10])}")


def render_validation(report: ValidationReport, *, limit: int = 20) -> None:
    """Per file, in order: a verdict line, then each problem (violations capped at `limit`)."""
    for file in report.files:
        for line in _file_lines(file, limit):
            out(line)


def _file_lines(file: FileReport, limit: int) -> list[str]:
    from migrate.schema import format_violations  # noqa: PLC0415  # jsonschema loads only here

    if file.unusable is not None:
        return [f"{file.path}: unusable {file.kind}", *str(file.unusable).splitlines()]
    if not file.problems:
        detail = ""
        if file.plan is not None:
            n = len(file.plan.dashboards)
            detail = f" ({n} dashboard entr{'y' if n == 1 else 'ies'})"
        return [f"{file.path}: valid {file.kind}{detail}"]
    violations = [p for p in file.problems if isinstance(p, Violation)]
    others = [p for p in file.problems if not isinstance(p, Violation)]
    count = len(file.problems)
    return [
        f"{file.path}: {count} problem{'s' * (count != 1)}",
        *(f"  {line}" for line in others),
        *(f"  {line}" for line in format_violations(violations, limit)),
    ]


def plan_exit_code(migration: MigrationPlan, detailed: bool) -> int:
    """A5: 6 when apply could not bring every dashboard through, else 10 when
    `--detailed-exitcode` asks and there is something to create or update, else 0."""
    counts = count_actions(migration.dashboards)
    if any(counts[action] for action in _UNAPPLIABLE):
        return PartialError.exit_code  # what apply itself would end with
    if detailed and (counts[Action.CREATE] or counts[Action.UPDATE]):
        return CHANGES_PENDING
    return SUCCESS


def apply_exit_code(report: ApplyReport) -> int:
    """A5: 6 when the run was interrupted or a dashboard did not succeed, else 0."""
    if report.interrupted:
        return RunInterruptedError.exit_code
    if not report.ok:
        return PartialError.exit_code
    return SUCCESS


def validate_exit_code(report: ValidationReport) -> int:
    """A5: the first unusable file's code (3), else 4 when a payload fails its schema, else 0."""
    for file in report.files:
        if file.unusable is not None:
            return file.unusable.exit_code
    if not report.ok:
        return PayloadInvalidError.exit_code
    return SUCCESS


def render_plan(migration: MigrationPlan, fmt: PlanFormat, started: float) -> None:
    from migrate.report import markdown_plan, plan_report, to_json  # noqa: PLC0415

    if fmt is PlanFormat.JSON:
        out(to_json(plan_report(migration, started_at=started, finished_at=time.time())).rstrip())
        return
    if fmt is PlanFormat.MARKDOWN:
        out(markdown_plan(migration).rstrip())
        return
    for d in migration.dashboards:
        arrow = f" → {shown(d.target_id)}" if d.target_id != d.id else ""
        line = f"{_SYMBOL[d.action]} {d.action.value:<9} {shown(d.id)}{arrow}"
        if d.error:
            line += f"  ({printable(d.error.message, lines=False)})"
        out(line)
        for change in d.changes[:10]:
            out(f"      {printable(format_change(change), lines=False)}")
        if len(d.changes) > 10:
            out(f"      … and {len(d.changes) - 10} more changes")
        for embed in d.embeds:
            out(f"      embed {embed.name!r} ({embed.id}) will be re-created; its id may change")
        _render_drift(d)
    preview = migration.schema_pair_preview()
    if preview:
        out("\nSchema pairs (in the dashboards to create):")
        for old, new, places, boards in preview:
            out(f"  {old} → {new}: {places} places in {boards} dashboards")
    summary = format_counts(count_actions(migration.dashboards))
    out(f"\nPlan: {summary or 'nothing selected'}.")


def _render_drift(d: PlannedDashboard) -> None:
    """A drifted dashboard's two diffs (docs/contract.md A9): the edit and the change."""
    if not d.drifted:
        return
    out(f"      drifted: edited in the target since deploy {shown(d.deployed_by or '')}")
    for title, changes in (
        ("edited in the target (deployed → target)", d.drift_changes),
        ("changed in the source (deployed → source)", d.source_changes),
    ):
        out(f"      {title}:")
        for change in changes[:10]:
            out(f"        {printable(format_change(change), lines=False)}")
        if len(changes) > 10:
            out(f"        … and {len(changes) - 10} more changes")


# ---- many targets (docs/contract.md A8) ------------------------------------------------------


def render_fleet_plan(report: FleetReport, fmt: PlanFormat) -> None:
    """`plan` over `targets:`: per target, its workspace step, dashboards and previews."""
    from migrate.report import fleet_plan_report, markdown_plan, to_json  # noqa: PLC0415

    if fmt is PlanFormat.JSON:
        out(to_json(fleet_plan_report(report)).rstrip())
        return
    for run in report.targets:
        target = run.plan.target.describe()
        head = f"== {run.name} → {target['workspace']} (wave {run.wave})"
        if fmt is PlanFormat.MARKDOWN:
            out(f"## {head[3:]}")
        else:
            out(head)
        if run.workspace:
            out(f"  workspace: {run.workspace}")
        if run.unusable is not None:
            out(f"  unusable: {run.unusable.message}")
        if run.migration is None:
            continue
        if fmt is PlanFormat.MARKDOWN:
            out(markdown_plan(run.migration).rstrip())
            continue
        for d in run.migration.dashboards:
            arrow = f" → {d.target_id}" if d.target_id != d.id else ""
            line = f"{_SYMBOL[d.action]} {d.action.value:<9} {d.id}{arrow}"
            if d.error:
                line += f"  ({d.error.message})"
            out(line)
            _render_drift(d)
            if d.id in run.rebinds:
                out(f"      filters to rebind: {', '.join(run.rebinds[d.id])}")
            if d.id in run.embeds:
                out(f"      embeds to mirror: {', '.join(run.embeds[d.id])}")
        out(f"  Plan: {format_counts(count_actions(run.migration.dashboards)) or 'nothing'}.")
    out(f"\nTargets: {len(report.targets)} in {len(report.waves)} waves.")


def fleet_plan_exit_code(report: FleetReport, detailed: bool) -> int:
    """As `plan_exit_code`, over every target: 6 if one cannot be applied, else 10/0."""
    codes = [
        plan_exit_code(run.migration, detailed)
        if run.migration is not None
        else PartialError.exit_code
        for run in report.targets
    ]
    for code in (PartialError.exit_code, CHANGES_PENDING):
        if code in codes:
            return code
    return SUCCESS


def render_fleet_apply(report: FleetReport, files: ReportFiles, *, quiet: bool, rerun: str) -> None:
    """Per target its outcome table (unless quiet), then the report files and the totals;
    `rerun` is the command that finishes an interrupted run."""
    from migrate.report import (  # noqa: PLC0415
        fleet_junit_xml,
        fleet_markdown,
        fleet_report,
        to_json,
        waves_line,
    )
    from migrate.storage import write_private  # noqa: PLC0415

    for run in report.targets:
        out(f"== {run.name} → {run.plan.target.workspace} (wave {run.wave})")
        if run.workspace:
            out(f"  workspace: {run.workspace}")
        if run.unusable is not None:
            err(f"  {run.name} is unusable: {run.unusable.message}")
        if not quiet:
            render_outcomes(run.outcomes)
    if files.report:
        write_private(files.report, to_json(fleet_report(report)))
    if files.junit:
        write_private(files.junit, fleet_junit_xml(report))
    if files.summary:
        write_private(files.summary, fleet_markdown(report))
    elapsed = report.finished_at - report.started_at
    for run in report.targets:
        summary = format_counts(count_results(run.outcomes)) or "nothing selected"
        out(f"Apply {run.name}: {summary}.")
    out(
        f"Apply: {len(report.targets)} targets, {waves_line(report)}; {report.source_exports}"
        f" source exports, {report.requests} requests in {elapsed:.1f}s."
    )
    if report.interrupted:
        err(f"interrupted; to finish, run again: {rerun}")


def fleet_apply_exit_code(report: FleetReport) -> int:
    """A5/A8: 6 when the run was interrupted or a target did not end clean, else 0."""
    if report.interrupted:
        return RunInterruptedError.exit_code
    return SUCCESS if report.ok else PartialError.exit_code


# ---- deploy history (docs/contract.md A9) ----------------------------------------------------


class HistoryFormat(StrEnum):
    """`migrate history --format`."""

    TEXT = "text"
    JSON = "json"


def render_history(
    histories: list[tuple[str | None, dict[str, str], list[Deploy]]], fmt: HistoryFormat
) -> None:
    """Per target (name, url and workspace, deploys oldest first): its deploys newest first,
    with id, time, commit, actor, counts per result and bundle hash."""
    from migrate.report import history_report, to_json  # noqa: PLC0415

    if fmt is HistoryFormat.JSON:
        out(to_json(history_report(histories)).rstrip())
        return
    for name, target, deploys in histories:
        head = (
            f"== {name} → {target.get('workspace', '')}"
            if name
            else f"== {target.get('workspace', '')}"
        )
        out(printable(head, lines=False))
        if not deploys:
            out("  no deploy recorded")
        for deploy in reversed(deploys):
            counts = ", ".join(f"{n} {r}" for r, n in deploy.counts().items()) or "nothing"
            parts = [
                deploy.deploy_id,
                deploy.finished_at,
                f"commit {deploy.commit or '-'}",
                f"by {deploy.actor or '-'}",
                counts,
            ]
            if deploy.bundle_manifest_sha256:
                parts.append(f"bundle {deploy.bundle_manifest_sha256[:12]}")
            if deploy.rollback_of:
                parts.append(f"rollback to {deploy.rollback_of}")
            out("  " + printable("  ".join(parts), lines=False))

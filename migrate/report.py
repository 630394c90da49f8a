"""Machine-readable results: the JSON report, JUnit XML and a Markdown summary.

Pure: results in, text out; shapes as A5 of `docs/contract.md` defines them. Writing files is
the caller's job (atomically, owner-only). Counts and change lines come from `migrate.formats`,
so the console and these files agree.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from migrate.diff import Change
from migrate.events import Outcome
from migrate.formats import count_actions, count_results, format_change, format_counts
from migrate.models import Result
from migrate.planner import MigrationPlan
from migrate.runner import ApplyReport

REPORT_VERSION = 1
_FAILING = {Result.FAILED, Result.CONFLICT, Result.INVALID, Result.BLOCKED}


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _changes(changes: Iterable[Any]) -> list[dict[str, Any]]:
    return [
        {"path": c.path, "kind": c.kind, "before": c.before, "after": c.after}
        for c in changes
        if isinstance(c, Change)
    ]


def apply_report(report: ApplyReport) -> dict[str, Any]:
    """The A5 JSON report of an apply."""
    summary: dict[str, int] = {"total": len(report.outcomes)}
    summary.update((result.value, n) for result, n in count_results(report.outcomes).items())
    document: dict[str, Any] = {
        "version": REPORT_VERSION,
        "source": report.migration.source.as_dict(),
        "target": report.migration.target,
        "started_at": _iso(report.started_at),
        "finished_at": _iso(report.finished_at),
        # How created dashboards were confirmed (settings.verify): readback or none.
        "verify": report.migration.plan.settings.verify.value,
        "summary": summary,
        "dashboards": [
            {
                "id": o.id,
                "target_id": o.target_id,
                "result": o.result.value,
                "attempts": o.attempts,
                "duration_s": o.duration_s,
                "error": o.error.as_dict() if o.error else None,
                "blocked_by": list(o.blocked_by),
                "changes": _changes(o.changes),
            }
            for o in report.outcomes
        ],
    }
    source = report.migration.source
    if source.manifest_sha256 is not None:
        # Proves in a CI log which reviewed bundle reached the target.
        document["bundle"] = {
            "path": source.bundle or "",
            "manifest_sha256": source.manifest_sha256,
        }
    return document


def plan_report(
    migration: MigrationPlan, *, started_at: float, finished_at: float
) -> dict[str, Any]:
    """`plan --format json`: the A5 shape with `action` in place of `result`."""
    summary: dict[str, int] = {"total": len(migration.dashboards)}
    summary.update((action.value, n) for action, n in count_actions(migration.dashboards).items())
    return {
        "version": REPORT_VERSION,
        "source": migration.source.as_dict(),
        "target": migration.target,
        "started_at": _iso(started_at),
        "finished_at": _iso(finished_at),
        "summary": summary,
        "warnings": list(migration.warnings),
        "schema_pairs": [
            {"replace": old, "target": new, "occurrences": places, "dashboards": boards}
            for old, new, places, boards in migration.schema_pair_preview()
        ],
        "dashboards": [
            {
                "id": d.id,
                "target_id": d.target_id,
                "name": d.name,
                "action": d.action.value,
                "depends_on": list(d.depends_on),
                "error": d.error.as_dict() if d.error else None,
                "blocked_by": list(d.blocked_by),
                "changes": _changes(d.changes),
            }
            for d in migration.dashboards
        ],
    }


def to_json(document: dict[str, Any]) -> str:
    """Stable, readable JSON text."""
    return json.dumps(document, indent=2, ensure_ascii=False, default=str) + "\n"


def junit_xml(report: ApplyReport) -> str:
    """One JUnit test case per dashboard; `failure` for failed, conflict, invalid and blocked."""
    outcomes = report.outcomes
    counts = count_results(outcomes)
    failures = sum(counts[result] for result in _FAILING)
    skipped = counts[Result.SKIPPED]
    suite = ET.Element(
        "testsuite",
        name="migrate apply",
        tests=str(len(outcomes)),
        failures=str(failures),
        errors="0",
        skipped=str(skipped),
        time=f"{report.finished_at - report.started_at:.3f}",
        timestamp=_iso(report.started_at),
    )
    for outcome in outcomes:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"migrate.{report.migration.target.get('workspace', 'target')}",
            name=outcome.id,
            time=f"{outcome.duration_s:.3f}",
        )
        if outcome.result in _FAILING:
            message = outcome.error.message if outcome.error else outcome.result.value
            failure = ET.SubElement(case, "failure", message=message, type=outcome.result.value)
            failure.text = _outcome_detail(outcome)
        elif outcome.result is Result.SKIPPED:
            ET.SubElement(case, "skipped", message="target differs; on_conflict is skip")
        else:
            out = ET.SubElement(case, "system-out")
            out.text = f"{outcome.result.value} as {outcome.target_id}"
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _outcome_detail(outcome: Outcome) -> str:
    lines = [f"result: {outcome.result.value}", f"target id: {outcome.target_id}"]
    if outcome.error:
        lines.append(f"{outcome.error.code}: {outcome.error.message}")
    if outcome.blocked_by:
        lines.append("blocked by: " + ", ".join(outcome.blocked_by))
    lines.extend(format_change(c) for c in outcome.changes if isinstance(c, Change))
    return "\n".join(lines)


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_summary(report: ApplyReport) -> str:
    """A Markdown table and totals, fit for a PR comment or $GITHUB_STEP_SUMMARY."""
    outcomes = report.outcomes
    target = report.migration.target
    status = "✅ succeeded" if report.ok else "❌ did not fully succeed"
    lines = [
        f"### migrate apply → {target.get('workspace', '')} {status}",
        "",
        f"Target: `{target.get('url', '')}` · {len(outcomes)} dashboards · "
        + format_counts(count_results(outcomes)),
        "",
        "| dashboard | target id | result | attempts | detail |",
        "|---|---|---|---:|---|",
    ]
    for o in outcomes:
        detail = o.error.message if o.error else ""
        lines.append(
            f"| {_md_cell(o.id)} | {_md_cell(o.target_id)} | {o.result.value} | {o.attempts} |"
            f" {_md_cell(detail)} |"
        )
    return "\n".join(lines) + "\n"


def markdown_plan(migration: MigrationPlan) -> str:
    """`plan --format markdown`: what apply would do, as a table."""
    # Alphabetical, unlike the console's enum order: kept as the format has always been.
    counts = sorted((a.value, n) for a, n in count_actions(migration.dashboards).items() if n)
    lines = [
        f"### migrate plan → {migration.target.get('workspace', '')}",
        "",
        f"{len(migration.dashboards)} dashboards: "
        + (", ".join(f"{n} {a}" for a, n in counts) or "nothing selected"),
        "",
        "| dashboard | target id | action | detail |",
        "|---|---|---|---|",
    ]
    for d in migration.dashboards:
        detail = d.error.message if d.error else ""
        if d.changes and not detail:
            detail = f"{len(d.changes)} changes, first at `{d.changes[0].path}`"
        lines.append(
            f"| {_md_cell(d.id)} | {_md_cell(d.target_id)} | {d.action.value}"
            f" | {_md_cell(detail)} |"
        )
    for warning in migration.warnings:
        lines.append(f"\n> ⚠️ {_md_cell(warning)}")
    return "\n".join(lines) + "\n"

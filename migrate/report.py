"""Machine-readable results: the JSON report, JUnit XML and a Markdown summary.

Pure: results in, text out; shapes as A5 of `docs/contract.md` defines them. Writing files is
the caller's job (atomically, owner-only). Counts and change lines come from `migrate.formats`,
so the console and these files agree.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from migrate.diff import Change
from migrate.events import Outcome
from migrate.fleet import FleetReport
from migrate.formats import count_actions, count_results, format_change, format_counts
from migrate.history import Deploy
from migrate.models import Result
from migrate.planner import MigrationPlan, PlannedDashboard
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
        "dashboards": _outcome_entries(report.outcomes),
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
                "embeds": [{"name": e.name, "embed_id": e.id} for e in d.embeds],
                "drifted": d.drifted,
                "drift": _drift(d),
            }
            for d in migration.dashboards
        ],
    }


def _drift(d: PlannedDashboard) -> dict[str, Any] | None:
    """A drifted dashboard's two diffs (docs/contract.md A9), else None."""
    if not d.drifted:
        return None
    return {
        "deploy_id": d.deployed_by,
        "deployed_to_target": _changes(d.drift_changes),
        "deployed_to_source": _changes(d.source_changes),
    }


def markdown_drift(migration: MigrationPlan) -> str:
    """The drift section of a plan: per dashboard edited in the target since its last deploy,
    the edit and the change; empty when nothing drifted."""
    drifted = [d for d in migration.dashboards if d.drifted]
    if not drifted:
        return ""
    lines = [
        f"#### Drift: {len(drifted)} dashboards edited in the target since their last deploy",
        "",
    ]
    for d in drifted:
        by = _md_cell(d.deployed_by or "")
        lines.append(f"- **{_md_cell(d.id)}** ({d.action.value}; deployed by {by})")
        for title, changes in (
            ("edited in the target (deployed → target)", d.drift_changes),
            ("changed in the source (deployed → source)", d.source_changes),
        ):
            lines.append(f"  - {title}: {len(changes)} changes")
            lines.extend(f"    - `{_md_cell(c.path)}` {c.kind}" for c in changes[:_MD_DRIFT_LINES])
            if len(changes) > _MD_DRIFT_LINES:
                lines.append(f"    - … and {len(changes) - _MD_DRIFT_LINES} more")
    return "\n".join(lines) + "\n"


_MD_DRIFT_LINES = 10


def to_json(document: dict[str, Any]) -> str:
    """Stable, readable JSON text."""
    return json.dumps(document, indent=2, ensure_ascii=False, default=str) + "\n"


# What XML 1.0 forbids in a document (most C0 controls, lone surrogates, U+FFFE/U+FFFF), and
# the C1 controls and DEL it merely discourages: shown as visible escapes instead.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")


def _xml(text: str) -> str:
    """`text` with every character XML cannot hold replaced by a visible `\\uXXXX` escape."""
    return _NOT_XML.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def junit_xml(report: ApplyReport) -> str:
    """One JUnit test case per dashboard; `failure` for failed, conflict, invalid and blocked.

    Well-formed whatever the ids and messages hold: characters XML forbids are escaped.
    """
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
            classname=_xml(f"migrate.{report.migration.target.get('workspace', 'target')}"),
            name=_xml(outcome.id),
            time=f"{outcome.duration_s:.3f}",
        )
        if outcome.result in _FAILING:
            message = outcome.error.message if outcome.error else outcome.result.value
            failure = ET.SubElement(
                case, "failure", message=_xml(message), type=outcome.result.value
            )
            failure.text = _xml(_outcome_detail(outcome))
        elif outcome.result is Result.SKIPPED:
            ET.SubElement(case, "skipped", message="target differs; on_conflict is skip")
        else:
            out = ET.SubElement(case, "system-out")
            out.text = _xml(f"{outcome.result.value} as {outcome.target_id}")
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


def _md_cell(text: str, *, in_table: bool = True) -> str:
    """Remote text made inert: one code span, so no HTML, link, image or emphasis in it is
    rendered (GitHub autolinks bare URLs everywhere but in code), on one line."""
    if not text:
        return ""
    flat = _xml(re.sub(r"[\r\n\t\u2028\u2029]+", " ", text))
    if in_table:
        flat = flat.replace("|", "\\|")
    fence = "`" * (max((len(run) for run in re.findall("`+", flat)), default=0) + 1)
    return f"{fence} {flat} {fence}"


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
    changed = [(o.id, e) for o in outcomes for e in o.embeds if e.changed]
    if changed:
        # Host applications render dashboards by embed id: each of these needs updating.
        lines += ["", "Embed ids that changed:", ""]
        lines += [
            f"- {_md_cell(dash_id, in_table=False)}: {_md_cell(e.name, in_table=False)}"
            f" {_md_cell(e.previous_embed_id or '', in_table=False)} →"
            f" {_md_cell(e.embed_id or 'not re-created', in_table=False)}"
            for dash_id, e in changed
        ]
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
            detail = f"{len(d.changes)} changes, first at {d.changes[0].path}"
        lines.append(
            f"| {_md_cell(d.id)} | {_md_cell(d.target_id)} | {d.action.value}"
            f" | {_md_cell(detail)} |"
        )
    for warning in migration.warnings:
        lines.append(f"\n> ⚠️ {_md_cell(warning, in_table=False)}")
    drift = markdown_drift(migration)
    if drift:
        lines.extend(["", drift.rstrip()])
    return "\n".join(lines) + "\n"


# ---- many targets (docs/contract.md A8) ------------------------------------------------------


def _outcome_entries(outcomes: list[Outcome]) -> list[dict[str, Any]]:
    """The A5 `dashboards` entries, one per outcome (also each target's, A8)."""
    return [
        {
            "id": o.id,
            "target_id": o.target_id,
            "result": o.result.value,
            "attempts": o.attempts,
            "duration_s": o.duration_s,
            "error": o.error.as_dict() if o.error else None,
            "blocked_by": list(o.blocked_by),
            "changes": _changes(o.changes),
            "embeds": [embed.as_dict() for embed in o.embeds],
        }
        for o in outcomes
    ]


def waves_line(report: FleetReport) -> str:
    """Which waves ran, e.g. `waves: 1 of 2 ran ([staging]); [prod-eu, prod-us] blocked`."""
    ran = [f"[{', '.join(w)}]" for w in report.waves[: report.waves_ran]]
    rest = [f"[{', '.join(w)}]" for w in report.waves[report.waves_ran :]]
    line = f"waves: {report.waves_ran} of {len(report.waves)} ran ({', '.join(ran) or 'none'})"
    return line + (f"; {', '.join(rest)} blocked" if rest else "")


def fleet_report(report: FleetReport) -> dict[str, Any]:
    """The A5 JSON report of an apply over `targets:`, nested per target (A8)."""
    totals: dict[str, int] = {"total": 0}
    targets: dict[str, Any] = {}
    for run in report.targets:
        counts = count_results(run.outcomes)
        summary: dict[str, int] = {"total": len(run.outcomes)}
        summary.update((result.value, n) for result, n in counts.items())
        for key, n in summary.items():
            totals[key] = totals.get(key, 0) + n
        entry: dict[str, Any] = {
            "target": run.plan.target.describe(),
            "wave": run.wave,
            "ok": run.clean,
            "summary": summary,
            "dashboards": _outcome_entries(run.outcomes),
        }
        if run.workspace is not None:
            entry["workspace"] = run.workspace
        if run.unusable is not None:
            entry["error"] = run.unusable.as_dict()
        if run.blocked is not None:
            entry["blocked"] = run.blocked
        if run.report is not None:
            entry["started_at"] = _iso(run.report.started_at)
            entry["finished_at"] = _iso(run.report.finished_at)
        targets[run.name] = entry
    return {
        "version": REPORT_VERSION,
        "source": report.source.as_dict(),
        "started_at": _iso(report.started_at),
        "finished_at": _iso(report.finished_at),
        "waves": [list(w) for w in report.waves],
        "waves_ran": report.waves_ran,
        "source_exports": report.source_exports,
        "requests": report.requests,
        "summary": totals,
        "targets": targets,
    }


def fleet_junit_xml(report: FleetReport) -> str:
    """One JUnit test suite per target, one test case per dashboard."""
    root = ET.Element("testsuites")
    for run in report.targets:
        counts = count_results(run.outcomes)
        suite = ET.SubElement(
            root,
            "testsuite",
            name=f"migrate apply {run.name}",
            tests=str(len(run.outcomes)),
            failures=str(sum(counts[result] for result in _FAILING)),
            errors="0",
            skipped=str(counts[Result.SKIPPED]),
            time=f"{report.finished_at - report.started_at:.3f}",
            timestamp=_iso(report.started_at),
        )
        for outcome in run.outcomes:
            case = ET.SubElement(
                suite,
                "testcase",
                classname=f"migrate.{run.name}",
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
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def fleet_markdown(report: FleetReport) -> str:
    """A first line saying which waves ran, then one section per target."""
    status = "✅ succeeded" if report.ok else "❌ did not fully succeed"
    # Target names are the plan's own, limited by its schema to [A-Za-z0-9_.-]: nothing to escape.
    lines = [f"**migrate apply {status}** · {waves_line(report)}", ""]
    for run in report.targets:
        target = run.plan.target.describe()
        lines += [
            f"### {_md_cell(run.name)} → {_md_cell(target['workspace'])} (wave {run.wave})",
            "",
            f"Target: `{_md_cell(target['url'])}` · {len(run.outcomes)} dashboards · "
            + format_counts(count_results(run.outcomes)),
        ]
        for note in (run.workspace, run.blocked, run.unusable and run.unusable.message):
            if note:
                lines.append(f"\n> {_md_cell(note)}")
        lines += [
            "",
            "| dashboard | target id | result | embeds | detail |",
            "|---|---|---|---|---|",
        ]
        for o in run.outcomes:
            embeds = ", ".join(e.embed_id for e in o.embeds if e.embed_id)
            detail = o.error.message if o.error else ""
            lines.append(
                f"| {_md_cell(o.id)} | {_md_cell(o.target_id)} | {o.result.value}"
                f" | {_md_cell(embeds)} | {_md_cell(detail)} |"
            )
        lines.append("")
    return "\n".join(lines)


def fleet_plan_report(report: FleetReport) -> dict[str, Any]:
    """`plan --format json` over `targets:`: one plan report per target."""
    targets: dict[str, Any] = {}
    for run in report.targets:
        if run.migration is not None:
            entry = plan_report(
                run.migration, started_at=report.started_at, finished_at=report.finished_at
            )
            entry.pop("version", None)
            entry.pop("source", None)
        else:
            entry = {"target": run.plan.target.describe(), "dashboards": []}
        entry["wave"] = run.wave
        if run.workspace is not None:
            entry["workspace"] = run.workspace
        if run.unusable is not None:
            entry["error"] = run.unusable.as_dict()
        targets[run.name] = entry
    return {
        "version": REPORT_VERSION,
        "source": report.source.as_dict(),
        "waves": [list(w) for w in report.waves],
        "targets": targets,
    }


# ---- deploy history (docs/contract.md A9) ----------------------------------------------------


def history_report(
    histories: Sequence[tuple[str | None, dict[str, str], Sequence[Deploy]]],
) -> dict[str, Any]:
    """`history --format json`: per target its deploys newest first, each a deploy record with
    `counts` per result. With one `target:`, `deploys` is also at the top."""
    targets = [
        {
            "name": name,
            "target": dict(target),
            "deploys": [
                {**deploy.as_record(), "counts": deploy.counts()} for deploy in reversed(deploys)
            ],
        }
        for name, target, deploys in histories
    ]
    document: dict[str, Any] = {"version": REPORT_VERSION, "targets": targets}
    if len(targets) == 1 and targets[0]["name"] is None:
        document["deploys"] = targets[0]["deploys"]
    return document

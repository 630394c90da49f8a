"""Decide what apply would do with each dashboard (docs/contract.md A3); reads, never writes.

`make_plan` lists the target once, lists and exports the source, validates every payload, builds
the dependency graph, applies `--select`, and compares each dashboard the target already holds
with its source, normalized so that server-minted ids and schema rewrites are not drift. It never
writes; `plan`, `apply --dry-run` and `apply` all start here.
"""

from __future__ import annotations

import asyncio
import fnmatch
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from migrate.client import DataAppClient, DatabrainClient
from migrate.diff import Change, diff_payloads, normalize_for_compare
from migrate.embeds import RecordedEmbed, embeds_of
from migrate.errors import (
    AuthError,
    EndpointError,
    MigrateError,
    PlanError,
    RunInterruptedError,
    Violation,
    WorkspaceNotFoundError,
)
from migrate.events import ErrorInfo, Progress
from migrate.filters import canonical_filters
from migrate.graph import DependencyGraph, build_graph, load_library, select
from migrate.history import Deployed, DeployedLookup
from migrate.jsontext import dump_json_fast
from migrate.models import (
    Action,
    DashboardRef,
    DashboardSpec,
    Embed,
    ExportFile,
    OnConflict,
    OnDrift,
    Plan,
    SchemaPair,
    SourceInfo,
)
from migrate.references import find_references, rewrite_references, target_id
from migrate.schema import PayloadValidator, check_export_meta, format_violations
from migrate.schemapairs import (
    count_schema_occurrences,
    equals_after_schema_pairs,
    merge_schema_pairs,
)
from migrate.source import PayloadSource, held_spool
from migrate.spool import PayloadSpool

MAX_CHANGES = 50


@dataclass
class PlannedDashboard:
    """One dashboard's planned action and everything apply needs to carry it out."""

    id: str
    target_id: str
    name: str
    action: Action
    depends_on: tuple[str, ...] = ()
    blocked_by: list[str] = field(default_factory=list)
    error: ErrorInfo | None = None
    changes: list[Change] = field(default_factory=list)
    schema_pairs: tuple[SchemaPair, ...] = ()
    rename: str | None = None  # dashboardName to send, when the plan sets one
    violations: tuple[Violation, ...] = ()  # why the payload is invalid, located
    failure: MigrateError | None = None  # why the export failed, when it did
    references: tuple[tuple[str, str], ...] = ()  # (JSON path, planned id) found in the payload
    spool: PayloadSpool | None = field(default=None, repr=False)  # holds the valid export
    embeds: tuple[RecordedEmbed, ...] = ()  # `update`: the embeds that will be re-created
    # Edited in the target since the last deploy the history knows (docs/contract.md A9): the
    # edit (deployed → target) and the change to bring (deployed → source).
    drifted: bool = False
    drift_changes: list[Change] = field(default_factory=list)
    source_changes: list[Change] = field(default_factory=list)
    deployed_by: str | None = None  # the deploy whose copy the target's now differs from
    # `unchanged`, but not as the history last recorded it (an interrupted run of ours wrote
    # it): the target's copy, for the next deploy record to adopt.
    observed: bytes | None = field(default=None, repr=False)

    @property
    def exported(self) -> bool:
        """True when a valid export of this dashboard is held."""
        return self.spool is not None and self.id in self.spool

    def load(self) -> ExportFile:
        """The export file (parsed again if it was spooled to disk: call once per use)."""
        assert self.spool is not None
        return self.spool.get(self.id)

    def raw(self) -> bytes:
        """The export file's bytes as the API returned them."""
        assert self.spool is not None
        return self.spool.raw(self.id)

    def data_text(self) -> bytes | None:
        """The text of the payload's `data` as it arrived, when it is exactly what
        `jsontext.dump_json` writes of it (a compact server's export); None when not shown."""
        assert self.spool is not None
        return self.spool.data_text(self.id)

    def held(self) -> ExportFile | None:
        """The export file when it is held parsed (`load` would not parse), else None."""
        assert self.spool is not None
        return self.spool.held(self.id)

    @property
    def source_sha256(self) -> str | None:
        """sha256 of the source payload's `data`, canonical (key order and export time aside)."""
        if not self.exported:
            return None
        canonical = json.dumps(
            self.load().data, sort_keys=True, ensure_ascii=False, separators=(",", ":")
        )
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class TargetIds:
    """Source id → target id of every planned dashboard, with what each comparison and import
    needs from it computed once (not once per dashboard)."""

    mapping: dict[str, str]
    renamed: dict[str, str] = field(init=False)  # only the ids that change
    targets: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "renamed", {old: new for old, new in self.mapping.items() if old != new}
        )
        object.__setattr__(self, "targets", frozenset(self.mapping.values()))

    def __getitem__(self, source_id: str) -> str:
        return self.mapping[source_id]


@dataclass
class MigrationPlan:
    """The outcome of planning: selected dashboards in dependency order, plus context."""

    plan: Plan
    dashboards: list[PlannedDashboard]
    graph: DependencyGraph
    id_map: TargetIds
    target_inventory: frozenset[str]
    source: SourceInfo
    target: dict[str, str]
    warnings: list[str] = field(default_factory=list)
    selectors: tuple[str, ...] = ()
    source_ids: frozenset[str] = frozenset()
    spool: PayloadSpool | None = field(default=None, repr=False)

    def schema_pair_preview(self) -> list[tuple[str, str, int, int]]:
        """Per schema pair: (replace, target, places it rewrites, dashboards it touches), over
        the dashboards to create. Parses every payload again: for `plan`'s output only."""
        totals: dict[tuple[str, str], list[int]] = {}
        for item in self.dashboards:
            if item.action is not Action.CREATE or not item.exported or not item.schema_pairs:
                continue
            counts = count_schema_occurrences(item.load().data, item.schema_pairs)
            for pair in item.schema_pairs:
                entry = totals.setdefault((pair.replace, pair.target), [0, 0])
                entry[0] += counts.get(pair.replace, 0)
                entry[1] += 1 if counts.get(pair.replace, 0) else 0
        return [
            (old, new, places, boards) for (old, new), (places, boards) in sorted(totals.items())
        ]


def resolve_entries(
    entries: Sequence[DashboardSpec], inventory: Sequence[DashboardRef]
) -> tuple[dict[str, DashboardSpec], list[str]]:
    """Plan entries resolved against the source inventory: id → spec, plus warnings.

    Explicit `id:` entries win over `match:` globs for the same id. A glob that matches nothing is
    a warning (the plan may be meant for a workspace that does not have those dashboards yet).
    """
    ids = sorted(ref.id for ref in inventory)
    resolved: dict[str, DashboardSpec] = {}
    warnings: list[str] = []
    for entry in entries:
        if entry.match is None:
            continue
        matched = [dash_id for dash_id in ids if fnmatch.fnmatchcase(dash_id, entry.match)]
        if not matched:
            warnings.append(f"match {entry.match!r} selects no dashboard of the source")
        for dash_id in matched:
            resolved.setdefault(dash_id, entry)
    for entry in entries:
        if entry.id is not None:
            resolved[entry.id] = entry
    return resolved, warnings


async def make_plan(
    plan: Plan,
    source: PayloadSource,
    target: DatabrainClient | None,
    *,
    selectors: Sequence[str] = (),
    validator: PayloadValidator | None = None,
    progress: Progress | None = None,
    spool: PayloadSpool | None = None,
    data_app: DataAppClient | None = None,
    deployed: DeployedLookup | None = None,
) -> MigrationPlan:
    """Classify every selected dashboard per A3. Reads only; raises EndpointError (exit 5) when
    source or target is unusable, PlanError (exit 3) for an unusable plan (cycle, bad select).

    With `target=None` (graph, export) the target is not read: every dashboard is `create`.
    With `data_app` (the target's, for `on_conflict: replace`) its embeds are listed beside the
    first listings, so a bad data-app key stops the run (AuthError, exit 5) before any work,
    and each `update` names the embeds it will re-create. With `deployed` (the target's
    deploy history), a dashboard whose target copy differs from what was last deployed there is
    `drifted`, and `on_drift` decides its action (A9).
    """
    progress = progress or Progress()
    validator = validator or PayloadValidator()
    spool = spool or PayloadSpool()
    settings = plan.settings
    workspace = plan.target.workspace
    # The graph library is imported while the listings and exports wait on the network: done
    # between the last export and the first import, it idled a rate-limited run's budget. Should
    # this function raise first, the import finishes in its thread and nothing waits for it.
    library = asyncio.ensure_future(asyncio.to_thread(load_library))
    progress.stage("listing source and target dashboards")
    source_refs, target_refs, app_embeds = await asyncio.gather(
        source.inventory(),
        target.list_dashboards(workspace) if target else _nothing(),
        data_app.list_embeds() if data_app is not None and target else _no_embeds(),
    )
    target_ids = frozenset(ref.id for ref in target_refs)
    source_names = {ref.id: ref.name for ref in source_refs}
    specs, warnings = resolve_entries(plan.dashboards, source_refs)
    id_map = TargetIds(
        {
            dash_id: target_id(
                dash_id,
                override=spec.target_id,
                prefix=settings.id_prefix,
                suffix=settings.id_suffix,
            )
            for dash_id, spec in specs.items()
        }
    )
    items = {
        dash_id: PlannedDashboard(
            id=dash_id,
            target_id=id_map[dash_id],
            name=spec.name or source_names.get(dash_id, ""),
            action=Action.CREATE,
            schema_pairs=merge_schema_pairs(settings.schema_pairs, spec.schema_pairs),
            rename=spec.name,
        )
        for dash_id, spec in specs.items()
    }
    progress.stage(f"exporting {len(items)} source dashboards")
    exporter = _Exporter(
        source,
        source_names=source_names,
        validator=validator,
        progress=progress,
        spool=spool,
        planned=frozenset(items),
    )
    await asyncio.gather(*(exporter.export(item) for item in items.values()))
    await library
    try:
        graph = build_graph(
            sorted(items),
            {dash_id: spec.depends_on for dash_id, spec in specs.items()},
            references={i.id: i.references for i in items.values()},
            infer=settings.infer_dependencies,
        )
    except PlanError as exc:
        # Only now, with the source inventory, can a depends_on on a glob-matched id be checked.
        if exc.file is None:
            exc.file = plan.path
        raise
    chosen = select(graph, selectors) if selectors else set(graph.nodes)
    ordered = [items[dash_id] for dash_id in graph.order() if dash_id in chosen]
    for item in ordered:
        item.depends_on = tuple(graph.dependencies(item.id))
    existing = [i for i in ordered if i.action is Action.CREATE and i.target_id in target_ids]
    if existing:
        progress.stage(f"comparing {len(existing)} dashboards the target already holds")
    if target is not None:
        await asyncio.gather(
            *(
                _compare_one(
                    item,
                    plan,
                    target,
                    id_map,
                    data_app=data_app,
                    app_embeds=app_embeds,
                    deployed=deployed,
                )
                for item in existing
            )
        )
    _block(ordered, items, chosen, id_map, target_ids)
    warnings.extend(_schema_pair_warnings(ordered, plan))
    warnings.extend(update_warnings(ordered))
    for message in warnings:
        progress.warn(message)
    for item in ordered:
        progress.planned(item.id, item.action)
    return MigrationPlan(
        plan=plan,
        dashboards=ordered,
        graph=graph,
        id_map=id_map,
        target_inventory=target_ids,
        source=source.describe(),
        target=plan.target.describe(),
        warnings=warnings,
        selectors=tuple(selectors),
        source_ids=frozenset(source_names),
        spool=spool,
    )


async def _nothing() -> list[DashboardRef]:
    return []


async def _no_embeds() -> list[Embed]:
    return []


def update_warnings(dashboards: Sequence[PlannedDashboard]) -> list[str]:
    """The A7 warning for `update`s with embeds: host applications render by embed id."""
    updates = [d for d in dashboards if d.action is Action.UPDATE and d.embeds]
    if not updates:
        return []
    count = sum(len(d.embeds) for d in updates)
    return [
        f"{count} embed(s) of {len(updates)} dashboard(s) to update will be re-created, and"
        " their ids may change: host applications render dashboards by embed id"
        f" ({', '.join(d.id for d in updates)})"
    ]


class _Exporter:
    """Exports and validates source dashboards; valid payloads go to the spool."""

    def __init__(
        self,
        source: PayloadSource,
        *,
        source_names: dict[str, str],
        validator: PayloadValidator,
        progress: Progress,
        spool: PayloadSpool,
        planned: frozenset[str],
    ) -> None:
        self.source = source
        self.source_names = source_names
        self.validator = validator
        self.progress = progress
        self.spool = spool
        self.planned = planned
        self.workspace = source.describe().workspace

    async def export(self, item: PlannedDashboard) -> None:
        """Export and validate one dashboard; on any per-dashboard failure mark it invalid."""
        if item.id not in self.source_names:
            item.action = Action.INVALID
            item.error = ErrorInfo("NOT_IN_SOURCE", f"dashboard {item.id} is not in the source")
            return
        try:
            export = await self.source.export(item.id)
        except (AuthError, WorkspaceNotFoundError):
            raise
        except RunInterruptedError:
            # Nothing is wrong with this dashboard: the run stopped before it was read.
            item.action = Action.BLOCKED
            item.error = ErrorInfo("INTERRUPTED", "the run was interrupted; rerun to finish")
            return
        except MigrateError as exc:
            item.failure = exc
            item.action = Action.INVALID
            code = exc.error_code if isinstance(exc, EndpointError) else type(exc).__name__
            item.error = ErrorInfo(code, exc.message)
            return
        violations = self.validator.validate_export(export.document)
        if not violations and self.workspace is not None:
            violations = check_export_meta(
                export.document, dashboard_id=item.id, workspace=self.workspace
            )
        if violations:
            item.violations = tuple(violations)
            item.action = Action.INVALID
            item.error = ErrorInfo("SCHEMA", "; ".join(format_violations(violations, limit=5)))
            self.progress.warn(f"{item.id}: payload fails the dashboard schema")
            return
        # References are found now, while the payload is parsed, so the graph needs no payloads.
        # Its own id (settings.externalId, say) is no dependency: ignoring it lets most
        # payloads skip the walk (references.py decides that on the compact text).
        # Written once for both the reference search and the spool's check of the text.
        text = dump_json_fast(export.data)
        item.references = tuple(
            find_references(export.data, self.planned, ignore=item.id, text=text)
        )
        shared = held_spool(self.source)
        if shared is not None and item.id in shared:
            item.spool = shared  # held once for every target of the run, not once per target
            return
        self.spool.put(item.id, export, text)
        item.spool = self.spool


def payload_to_send(data: Any, id_map: TargetIds) -> Any:
    """The `importDashboardData` to send: the source `data` with dashboard references rewritten
    to target ids (`data` itself, uncopied, when no planned id changes)."""
    return rewrite_references(data, id_map.renamed) if id_map.renamed else data


def compare_with_target(
    item: PlannedDashboard, plan: Plan, id_map: TargetIds, sent: Any, target_data: Any
) -> list[Change]:
    """The changes between what the source says the target should hold and what it holds;
    empty when the content is equal (A3). `sent` is `payload_to_send(item, id_map)`.

    Cheap checks first: the target holding exactly what was sent, or what was sent with the
    schema pairs applied as we expect the server to. Only when both fail are both sides
    normalized (server-minted ids, other rewrites of schema names, ignored paths).
    """
    if target_data == sent:
        return []
    if item.schema_pairs and equals_after_schema_pairs(sent, target_data, item.schema_pairs):
        return []
    ignore = plan.settings.compare_ignore
    # Target ids stay literal on both sides, so a dashboard reference is compared, not aliased.
    keep = id_map.targets
    # A filter rebound through the API (schemaName + tableName) equals the source's form.
    sent, target_data = canonical_filters(sent), canonical_filters(target_data)
    expected = normalize_for_compare(sent, schema_pairs=item.schema_pairs, ignore=ignore, keep=keep)
    actual = normalize_for_compare(
        target_data, schema_pairs=item.schema_pairs, ignore=ignore, keep=keep
    )
    if expected == actual:
        return []
    changes = diff_payloads(expected, actual, limit=MAX_CHANGES)
    return changes or [Change("data", "changed", "(source)", "(target)")]


async def _compare_one(
    item: PlannedDashboard,
    plan: Plan,
    target: DatabrainClient,
    id_map: TargetIds,
    *,
    data_app: DataAppClient | None = None,
    app_embeds: Sequence[Embed] = (),
    deployed: DeployedLookup | None = None,
) -> None:
    """Classify a dashboard the target already holds: unchanged, skip, conflict or update."""
    if not item.exported:
        return
    try:
        copy = await target.export_dashboard(plan.target.workspace, item.target_id)
    except (AuthError, WorkspaceNotFoundError):
        raise
    except RunInterruptedError:
        item.action = Action.BLOCKED
        item.error = ErrorInfo("INTERRUPTED", "the run was interrupted; rerun to finish")
        return
    except EndpointError as exc:
        item.action = Action.CONFLICT
        item.error = ErrorInfo(exc.error_code, f"cannot read the target copy: {exc.message}")
        return
    sent = payload_to_send(item.load().data, id_map)
    changes = compare_with_target(item, plan, id_map, sent, copy.data)
    if not changes:
        item.action = Action.UNCHANGED
        if deployed is not None:
            known = deployed(item.target_id)
            if known is not None and _normalized(item, plan, id_map, known.data) != _normalized(
                item, plan, id_map, copy.data
            ):
                item.observed = copy.raw
        return
    item.changes = changes
    base = deployed(item.target_id) if deployed is not None else None
    replace = plan.settings.on_conflict is OnConflict.REPLACE
    if base is not None and _drift(item, plan, id_map, base, sent=sent, now=copy.data):
        if not _overwrite(item, plan, base, data_app=data_app):
            return
        replace = True
    if replace:
        item.action = Action.UPDATE
        if data_app is not None:
            try:
                found = await embeds_of(data_app, app_embeds, item.target_id, copy.data)
            except AuthError:
                raise
            except EndpointError as exc:
                item.action = Action.CONFLICT
                item.error = ErrorInfo(
                    exc.error_code, f"cannot read the embeds of the target copy: {exc.message}"
                )
                return
            item.embeds = tuple(found)
        return
    if plan.settings.on_conflict is OnConflict.FAIL:
        item.action = Action.CONFLICT
        item.error = ErrorInfo(
            "CONTENT_DIFFERS",
            f"target {item.target_id} differs from the source ({len(item.changes)} changes);"
            " on_conflict is fail",
        )
    else:
        item.action = Action.SKIP


def _overwrite(
    item: PlannedDashboard, plan: Plan, base: Deployed, *, data_app: DataAppClient | None
) -> bool:
    """`on_drift` for a drifted dashboard: True when it is to be replaced (overwrite), else
    its action (conflict or skip) is set here."""
    if plan.settings.on_drift is OnDrift.SKIP:
        item.action = Action.SKIP
        return False
    if plan.settings.on_drift is OnDrift.FAIL:
        item.action = Action.CONFLICT
        item.error = ErrorInfo(
            "DRIFTED",
            f"target {item.target_id} was edited since deploy {base.deploy_id}"
            f" ({len(item.drift_changes)} changes); on_drift is fail",
        )
        return False
    if data_app is None:
        item.action = Action.CONFLICT
        item.error = ErrorInfo(
            "DRIFTED",
            f"target {item.target_id} was edited since deploy {base.deploy_id};"
            " on_drift: overwrite replaces it through the target's data app, and the"
            " plan names none (add target.data_app)",
        )
        return False
    return True


def _normalized(item: PlannedDashboard, plan: Plan, id_map: TargetIds, data: Any) -> Any:
    """`data` normalized for drift: both sides are target copies or what was sent to one."""
    return normalize_for_compare(
        canonical_filters(data),
        schema_pairs=item.schema_pairs,
        ignore=plan.settings.compare_ignore,
        keep=id_map.targets,
    )


def _drift(
    item: PlannedDashboard, plan: Plan, id_map: TargetIds, base: Deployed, *, sent: Any, now: Any
) -> bool:
    """True (and the two diffs set on `item`) when the target's copy `now` differs from what
    the last deploy left (`base`), normalized as every comparison is."""
    deployed, target, source = (
        _normalized(item, plan, id_map, data) for data in (base.data, now, sent)
    )
    if deployed == target:
        return False
    item.drifted = True
    item.deployed_by = base.deploy_id
    item.drift_changes = diff_payloads(deployed, target, limit=MAX_CHANGES) or [
        Change("data", "changed", "(deployed)", "(target)")
    ]
    item.source_changes = diff_payloads(deployed, source, limit=MAX_CHANGES)
    return True


def _block(
    ordered: list[PlannedDashboard],
    items: dict[str, PlannedDashboard],
    chosen: set[str],
    id_map: TargetIds,
    target_ids: frozenset[str],
) -> None:
    """Mark `blocked` every dashboard to create whose dependency cannot be in place (A3)."""
    for item in ordered:  # dependency order: a dependency's final action is known first
        for dep in item.depends_on:
            if dep in chosen:
                if items[dep].action in (Action.INVALID, Action.CONFLICT, Action.BLOCKED):
                    item.blocked_by.append(dep)
            elif id_map[dep] not in target_ids:
                item.blocked_by.append(dep)
        if item.blocked_by and item.action in (Action.CREATE, Action.UPDATE):
            item.action = Action.BLOCKED
            item.error = ErrorInfo(
                "BLOCKED",
                "waits for "
                + ", ".join(
                    f"{dep} ({items[dep].action.value})"
                    if dep in chosen
                    else f"{dep} (not selected and not in the target)"
                    for dep in item.blocked_by
                ),
            )


def _schema_pair_warnings(ordered: list[PlannedDashboard], plan: Plan) -> list[str]:
    """A schema pair that matches nothing in any selected payload is usually a typo."""
    touched: dict[str, int] = {}
    for item in ordered:
        if not item.exported or not item.schema_pairs:
            continue
        raw = item.raw()
        for pair in item.schema_pairs:
            # A name absent from the raw text cannot match; only then is the exact count needed.
            if pair.replace.encode("utf-8") in raw:
                touched[pair.replace] = touched.get(pair.replace, 0) + 1
            else:
                touched.setdefault(pair.replace, 0)
    return [
        f"schema pair {name!r} matches nothing in the selected dashboards (typo?)"
        for name, count in sorted(touched.items())
        if count == 0
    ]

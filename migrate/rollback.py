"""Bring a target back to what one recorded deploy left there (docs/contract.md A9).

A rollback is an ordinary apply whose payloads are the deploy's snapshots (`SnapshotSource`)
instead of the source workspace: every dashboard that deploy left a copy of is planned under
its target id, with `on_conflict: replace` and `on_drift: overwrite` forced, and then goes
through the replace path of A7 — so its plan output, journal, lock, reports and exit codes are
apply's, and a crash is finished by the next run from the journal. Everything that can make it
impossible (an unknown deploy id, a missing or altered snapshot, no target data app) is a
PlanError (exit 3) raised before any request is sent.
"""

from __future__ import annotations

import dataclasses

from migrate.errors import DashboardNotFoundError, PlanError
from migrate.events import Progress
from migrate.history import Deploy, later_creations
from migrate.jsontext import parse_json
from migrate.models import (
    DashboardRef,
    DashboardSpec,
    EmbedsMode,
    ExportFile,
    OnConflict,
    OnDrift,
    Plan,
    SourceInfo,
)
from migrate.planner import MigrationPlan
from migrate.runner import ApplyReport, RunOptions, run_apply, run_plan
from migrate.snapshots import SnapshotStore


class SnapshotSource:
    """A `PayloadSource` serving one deploy's snapshots, keyed by target id."""

    def __init__(
        self, store: SnapshotStore, snapshots: dict[str, str], *, url: str, workspace: str
    ) -> None:
        self.store = store
        self.snapshots = snapshots  # target id -> snapshot digest
        self.url = url
        self.workspace = workspace

    async def inventory(self) -> list[DashboardRef]:
        """The dashboards of the deploy."""
        return [DashboardRef(tid, tid) for tid in sorted(self.snapshots)]

    async def export(self, dashboard_id: str) -> ExportFile:
        """The snapshot of `dashboard_id`, exactly as the target returned it after the deploy."""
        digest = self.snapshots.get(dashboard_id)
        if digest is None:
            raise DashboardNotFoundError(
                f"the deploy holds no snapshot of {dashboard_id}",
                dashboard_id=dashboard_id,
                workspace=self.workspace,
            )
        raw = self.store.get(digest)
        document = parse_json(raw, source=f"snapshot {digest[:12]}")
        if not isinstance(document, dict):
            raise PlanError(f"snapshot {digest[:12]} is not an export file")
        return ExportFile(raw, document)

    def describe(self) -> SourceInfo:
        """The history folder and the deploy, as reports say the source."""
        return SourceInfo(self.url, self.workspace)


@dataclasses.dataclass(frozen=True)
class RollbackPlan:
    """The apply a rollback runs: its plan, its payloads, and what it leaves alone."""

    plan: Plan
    source: SnapshotSource
    deploy: Deploy
    left_alone: tuple[str, ...]  # dashboards created after the deploy


def prepare_rollback(plan: Plan, options: RunOptions, deploy_id: str) -> RollbackPlan:
    """The rollback of `plan`'s target to `deploy_id`; PlanError (exit 3) when the deploy is
    unknown, a snapshot it names is missing or altered, or the target has no data app."""
    history = options.history_of(plan)
    deploy = history.find(deploy_id)
    if plan.target.data_app is None:
        raise PlanError(
            "rollback replaces dashboards through the target's data app, and the plan names none",
            file=plan.path,
            hint="add `data_app: {name: APP, key_env: VAR}` to the target (docs/contract.md A7)",
        )
    touched = {d.target_id: d.snapshot for d in deploy.touched if d.snapshot is not None}
    if not touched:
        raise PlanError(
            f"deploy {deploy_id} left no snapshot in the history: nothing to go back to",
            file=str(history.log),
        )
    missing = []
    for target_id, digest in sorted(touched.items()):
        try:
            history.snapshots.get(digest)
        except PlanError as exc:
            missing.append(f"{target_id} (snapshot {digest[:12]}: {exc.message})")
    if missing:
        raise PlanError(
            f"cannot roll back to {deploy_id}: snapshots missing: {'; '.join(missing)}",
            file=str(history.snapshots.folder),
            hint="restore the history folder (deploys.jsonl and snapshots/) from where CI keeps it",
        )
    settings = dataclasses.replace(
        plan.settings,
        on_conflict=OnConflict.REPLACE,
        on_drift=OnDrift.OVERWRITE,
        id_prefix="",
        id_suffix="",
        schema_pairs=(),  # snapshots already hold the target's schema names
        embeds=EmbedsMode.NONE,
        filter_bindings=(),
    )
    rolled = dataclasses.replace(
        plan,
        settings=settings,
        dashboards=tuple(DashboardSpec(id=tid) for tid in sorted(touched)),
        deferred_depends_on=(),
        targets=(),
        waves=(),
    )
    source = SnapshotSource(
        history.snapshots,
        touched,
        url=f"history:{deploy_id}",
        workspace=plan.target.workspace,
    )
    left = later_creations(history.deploys(), deploy_id, set(touched))
    return RollbackPlan(rolled, source, deploy, tuple(left))


def _announce(prepared: RollbackPlan, progress: Progress) -> None:
    if prepared.left_alone:
        progress.warn(
            f"created after deploy {prepared.deploy.deploy_id}, left in place:"
            f" {', '.join(prepared.left_alone)}"
        )


async def run_rollback_plan(
    prepared: RollbackPlan, options: RunOptions, progress: Progress | None = None
) -> MigrationPlan:
    """`rollback --dry-run`: the plan of the rollback; writes nothing."""
    progress = progress or Progress()
    _announce(prepared, progress)
    options = dataclasses.replace(options, bundle=None, selectors=())
    migration = await run_plan(prepared.plan, options, progress, payloads=prepared.source)
    migration.warnings.extend(_left_alone(prepared))
    return migration


async def run_rollback(
    prepared: RollbackPlan, options: RunOptions, progress: Progress | None = None
) -> ApplyReport:
    """The rollback itself, through apply; recorded in the history as a deploy of its own."""
    progress = progress or Progress()
    _announce(prepared, progress)
    options = dataclasses.replace(
        options, bundle=None, selectors=(), rollback_of=prepared.deploy.deploy_id
    )
    report = await run_apply(prepared.plan, options, progress, payloads=prepared.source)
    report.migration.warnings.extend(_left_alone(prepared))
    return report


def _left_alone(prepared: RollbackPlan) -> list[str]:
    if not prepared.left_alone:
        return []
    return [
        f"created after deploy {prepared.deploy.deploy_id} and left in place:"
        f" {', '.join(prepared.left_alone)}"
    ]

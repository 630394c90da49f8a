"""Run one plan against several targets (docs/contract.md A8): the source read once, targets
in waves, one throttle per API host.

Each target runs the single-target path (`runner.run_plan` / `runner.run_apply`) on its own
view of the plan, with its own lock and journal; what they share is handed to them as
`runner.SharedResources`. A target that cannot be used (credentials, missing workspace) ends
with its dashboards `blocked`; its siblings go on. A wave starts only when every target of the
previous one ended clean; otherwise the later waves' dashboards are `blocked` naming the wave.
"""

from __future__ import annotations

import asyncio
import fnmatch
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from migrate.client import ClientOptions
from migrate.connection import canonical_url, open_client
from migrate.errors import (
    AuthError,
    EndpointError,
    LockHeldError,
    MigrateError,
    UsageError,
    WorkspaceNotFoundError,
)
from migrate.events import ErrorInfo, Outcome, Progress
from migrate.filters import may_need_rebinding, plan_rebindings
from migrate.models import (
    Action,
    DashboardRef,
    EmbedsMode,
    ExportFile,
    NamedTarget,
    Plan,
    Result,
    SourceInfo,
)
from migrate.planner import MigrationPlan, resolve_entries
from migrate.references import target_id
from migrate.runner import (
    ApplyReport,
    Interrupts,
    RunOptions,
    SharedResources,
    new_throttle,
    open_source,
    payload_schema,
    run_apply,
    run_plan,
)
from migrate.schema import PayloadValidator
from migrate.serving import Serving, SourceEmbeds
from migrate.source import PayloadSource
from migrate.spool import PayloadSpool
from migrate.throttle import Throttle


class SharedSource:
    """A `PayloadSource` read once: one listing and one export per dashboard, whatever the
    number of targets asking; exports are kept in a spool (memory first, then disk) and
    failures are remembered, so a second target gets the same answer without a request."""

    def __init__(self, inner: PayloadSource, spool: PayloadSpool) -> None:
        self.inner = inner
        self.spool = spool
        self.exports = 0  # exports actually requested from `inner`
        self.unusable: EndpointError | None = None  # the source itself failed (exit 5)
        self._inventory: asyncio.Future[list[DashboardRef]] | None = None
        self._pending: dict[str, asyncio.Future[None]] = {}
        self._failed: dict[str, MigrateError] = {}

    async def inventory(self) -> list[DashboardRef]:
        """The source listing, requested once."""
        if self._inventory is None:
            self._inventory = asyncio.ensure_future(self._list())
        return list(await asyncio.shield(self._inventory))

    async def _list(self) -> list[DashboardRef]:
        try:
            return list(await self.inner.inventory())
        except (AuthError, WorkspaceNotFoundError) as exc:
            self.unusable = exc
            raise

    async def export(self, dashboard_id: str) -> ExportFile:
        """The export of `dashboard_id`, requested at most once."""
        if dashboard_id not in self._pending:
            self._pending[dashboard_id] = asyncio.ensure_future(self._fetch(dashboard_id))
        await asyncio.shield(self._pending[dashboard_id])
        if dashboard_id in self._failed:
            raise self._failed[dashboard_id]
        return self.spool.get(dashboard_id)

    async def _fetch(self, dashboard_id: str) -> None:
        self.exports += 1
        try:
            export = await self.inner.export(dashboard_id)
        except (AuthError, WorkspaceNotFoundError) as exc:
            self.unusable = exc
            self._failed[dashboard_id] = exc
            return
        except MigrateError as exc:
            self._failed[dashboard_id] = exc
            return
        self.spool.put(dashboard_id, export)

    def describe(self) -> SourceInfo:
        """What the wrapped source says."""
        return self.inner.describe()


_UNAPPLIABLE = (Action.CONFLICT, Action.INVALID, Action.BLOCKED)


class OnceValidator(PayloadValidator):
    """Validates each export once per run, however many targets plan it."""

    def __init__(self, inner: PayloadValidator) -> None:
        self.inner = inner
        self._seen: dict[tuple[str, str], list[object]] = {}

    def validate_export(self, document: object) -> list:  # type: ignore[type-arg]
        """The inner validator's answer, remembered by (dashboard id, export time)."""
        meta = document.get("_meta") if isinstance(document, dict) else None
        key = (
            (str(meta.get("dashboardId")), str(meta.get("exportedAt")))
            if isinstance(meta, dict)
            else None
        )
        if key is None:
            return self.inner.validate_export(document)
        if key not in self._seen:
            self._seen[key] = list(self.inner.validate_export(document))
        return list(self._seen[key])


@dataclass
class TargetRun:
    """What happened in one target: its plan or apply, or why it could not be used/started."""

    name: str
    wave: int  # 1-based
    plan: Plan
    migration: MigrationPlan | None = None
    report: ApplyReport | None = None
    outcomes: list[Outcome] = field(default_factory=list)
    unusable: ErrorInfo | None = None
    blocked: str | None = None  # "wave 1 failed: staging"
    workspace: str | None = None  # what was (or would be) done to the workspace
    # plan only: per dashboard to create, the filters apply would rebind if the server leaves
    # them on the source schema, and the names of the embeds it would mirror
    rebinds: dict[str, list[str]] = field(default_factory=dict)
    embeds: dict[str, list[str]] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        """True when every dashboard of this target reached created/unchanged/skipped."""
        if self.unusable is not None or self.blocked is not None:
            return False
        if self.report is not None:
            return self.report.ok
        if self.migration is not None:
            return not any(d.action in _UNAPPLIABLE for d in self.migration.dashboards)
        return True


@dataclass
class FleetReport:
    """A run over several targets, target by target in plan order."""

    source: SourceInfo
    waves: tuple[tuple[str, ...], ...]
    waves_ran: int
    targets: list[TargetRun]
    started_at: float
    finished_at: float
    source_exports: int = 0
    requests: int = 0
    interrupted: bool = False  # a first SIGINT/SIGTERM stopped it: rerun to finish

    @property
    def ok(self) -> bool:
        """True when every target ended clean."""
        return all(t.clean for t in self.targets)


def select_targets(plan: Plan, patterns: Sequence[str]) -> list[NamedTarget]:
    """The plan's targets that `--target` names (names or globs); all when none is given."""
    if not plan.targets:
        if patterns:
            raise UsageError(
                "--target selects among a plan's `targets:`, and this plan has one `target:`",
                hint="drop --target, or write the plan with `targets:`",
            )
        return []
    if not patterns:
        return list(plan.targets)
    chosen = [t for t in plan.targets if any(fnmatch.fnmatchcase(t.name, p) for p in patterns)]
    unmatched = [p for p in patterns if not any(fnmatch.fnmatchcase(t.name, p) for t in chosen)]
    if unmatched or not chosen:
        raise UsageError(
            f"--target {', '.join(unmatched or patterns)} names no target of the plan",
            hint="targets: " + ", ".join(t.name for t in plan.targets),
        )
    return chosen


def _host(url: str) -> str:
    """The API host a URL talks to: one throttle each (Databrain limits per client IP)."""
    parts = urlsplit(canonical_url(url))
    return f"{parts.scheme}://{parts.netloc}"


class _Fleet:
    """The shared parts of a run over several targets: the source, one throttle per host."""

    def __init__(self, plan: Plan, options: RunOptions) -> None:
        self.plan = plan
        self.options = options
        self.throttles: dict[str, Throttle] = {}
        self.interrupted = False
        self.spool = PayloadSpool(
            options.policy.state_dir / "spool", memory_budget=options.spool_budget
        )
        pacer = self.throttle_for(plan.source.url) if plan.source is not None else None
        inner, self._client = open_source(
            plan,
            options,
            ClientOptions(max_connections=self.concurrency),
            pacer,
        )
        self.source = SharedSource(inner, self.spool)
        self.validator = OnceValidator(PayloadValidator(payload_schema(plan)))
        self.embeds: SourceEmbeds | None = None
        mirror = any(t.plan.settings.embeds is EmbedsMode.MIRROR for t in plan.targets)
        if mirror and plan.source is not None:
            pacer = self.throttle_for(plan.source.url)
            self.embeds = SourceEmbeds.of_source(plan, options.policy, pacer)

    @property
    def concurrency(self) -> int:
        return self.options.concurrency or self.plan.settings.concurrency

    def throttle_for(self, url: str) -> Throttle:
        """The throttle of `url`'s host, shared by every client talking to it."""
        host = _host(url)
        if host not in self.throttles:
            self.throttles[host] = new_throttle(self.plan, self.options)
        throttle = self.throttles[host]
        if self.interrupted:
            throttle.close()  # a host first met after the interrupt starts nothing either
        return throttle

    def interrupt(self) -> None:
        """Stop every host's requests (in-flight ones finish) and end every wait at once."""
        self.interrupted = True
        for throttle in self.throttles.values():
            throttle.close()

    @property
    def requests(self) -> int:
        """Requests made so far, every host together."""
        return sum(t.requests for t in self.throttles.values())

    async def aclose(self) -> None:
        if self.embeds is not None:
            await self.embeds.aclose()
        if self._client is not None:
            await self._client.aclose()
        self.spool.close()


async def run_targets(
    plan: Plan,
    options: RunOptions,
    progress: Progress | None = None,
    *,
    names: Sequence[str] = (),
    dry_run: bool = False,
) -> FleetReport:
    """Plan (`dry_run`) or apply `plan` to its selected targets, wave by wave.

    Raises the source's EndpointError (exit 5) when the source is unusable, and the first
    target's when every selected target is unusable; anything else a target meets ends up in
    its `TargetRun`.
    """
    progress = progress or Progress()
    started = time.time()
    selected = select_targets(plan, names)
    chosen = {t.name for t in selected}
    waves = tuple(w for w in (tuple(n for n in wave if n in chosen) for wave in plan.waves) if w)
    by_name = {t.name: t for t in selected}
    wave_of = {name: i + 1 for i, wave in enumerate(waves) for name in wave}
    runs = {t.name: TargetRun(t.name, wave_of[t.name], t.plan) for t in selected}
    fleet = _Fleet(plan, options)
    waves_ran = 0
    interrupts = Interrupts(fleet.interrupt, progress)
    if not dry_run:
        interrupts.install()  # once for every target: their own runs install none
    try:
        # The listing first: an unusable source stops the run before any target is touched.
        await fleet.source.inventory()
        failed_wave: str | None = None
        for index, wave in enumerate(waves, start=1):
            if failed_wave is None and fleet.interrupted:
                failed_wave = f"interrupted before wave {index}"
            if failed_wave is not None:
                for name in wave:
                    runs[name].blocked = failed_wave
                    runs[name].outcomes = await _blocked_outcomes(
                        runs[name], fleet, "WAVE_FAILED", failed_wave
                    )
                continue
            progress.stage(f"wave {index}: {', '.join(wave)}")
            waves_ran += 1
            await asyncio.gather(
                *(
                    _run_target(
                        by_name[name], runs[name], fleet, options, progress, dry_run=dry_run
                    )
                    for name in wave
                )
            )
            if fleet.source.unusable is not None:
                raise fleet.source.unusable
            bad = [name for name in wave if not runs[name].clean]
            if bad:
                failed_wave = f"wave {index} failed: {', '.join(bad)}"
        unusable = [r for r in runs.values() if r.unusable is not None]
        if runs and len(unusable) == len(runs) and unusable[0].unusable is not None:
            error = unusable[0].unusable
            raise EndpointError(
                f"every selected target is unusable; {unusable[0].name}: {error.message}",
                code=error.code,
                hint="fix the targets' credentials and workspaces, then run again",
            )
    finally:
        interrupts.remove()
        await fleet.aclose()
    return FleetReport(
        source=fleet.source.describe(),
        waves=waves,
        waves_ran=waves_ran,
        targets=[runs[t.name] for t in selected],
        started_at=started,
        finished_at=time.time(),
        source_exports=fleet.source.exports,
        requests=fleet.requests,
        interrupted=interrupts.count > 0,
    )


async def _run_target(
    named: NamedTarget,
    run: TargetRun,
    fleet: _Fleet,
    options: RunOptions,
    progress: Progress,
    *,
    dry_run: bool,
) -> None:
    """One target's plan or apply; what makes it unusable is recorded, never raised."""
    view = named.plan
    throttle = fleet.throttle_for(view.target.url)
    serving: Serving | None = None
    try:
        read_target = True
        if not dry_run:  # credentials checked before anything is created, a workspace included
            serving = await Serving.for_target(view, fleet.options.policy, throttle, fleet.embeds)
        if named.create_workspace is not None:
            run.workspace, exists = await _prepare_workspace(named, fleet, throttle, dry_run)
            read_target = exists
        shared = SharedResources(
            source=fleet.source,
            target_throttle=throttle,
            validator=fleet.validator,
            after_import=serving.after_import if serving is not None else None,
        )
        if dry_run:
            run.migration = await run_plan(
                view, options, _Named(progress, named.name), read_target=read_target, shared=shared
            )
            await _preview(run, run.migration, fleet)
        else:
            run.report = await run_apply(view, options, _Named(progress, named.name), shared=shared)
            run.outcomes = run.report.outcomes
    except (EndpointError, LockHeldError) as exc:
        if fleet.source.unusable is not None:
            return  # the source failed, not this target: run_targets raises it
        run.unusable = ErrorInfo(
            exc.error_code if isinstance(exc, EndpointError) else "LOCKED", exc.message
        )
        progress.warn(f"target {named.name} is unusable: {exc.message}")
        run.outcomes = await _blocked_outcomes(run, fleet, "TARGET_UNUSABLE", exc.message)
    finally:
        if serving is not None:
            await serving.aclose()


async def _preview(run: TargetRun, migration: MigrationPlan, fleet: _Fleet) -> None:
    """What apply would do after each import: filters to rebind, embeds to mirror."""
    settings = run.plan.settings
    mirror = fleet.embeds if settings.embeds is EmbedsMode.MIRROR else None
    try:
        for item in migration.dashboards:
            if item.action is not Action.CREATE or not item.exported:
                continue
            rules, pairs = settings.filter_bindings, item.schema_pairs
            found = (
                plan_rebindings(item.load().data, item.target_id, pairs, rules)
                if may_need_rebinding(item.raw(), pairs, rules)
                else []
            )
            if found:
                run.rebinds[item.id] = [r.filter_name for r in found]
            if mirror is not None:
                names = [e.name for e in await mirror.of(item.id)]
                if names:
                    run.embeds[item.id] = names
    finally:
        if migration.spool is not None:
            migration.spool.close()


async def _prepare_workspace(
    named: NamedTarget, fleet: _Fleet, throttle: Throttle, dry_run: bool
) -> tuple[str, bool]:
    """Create the target's workspace when it is missing (not in a dry run): (what was done,
    whether the workspace exists now). Raises EndpointError when it cannot be created."""
    binding = named.create_workspace
    assert binding is not None
    target = named.plan.target
    client = open_client(target, policy=fleet.options.policy, pacer=throttle)
    try:
        if target.workspace in await client.list_workspaces():
            # The listing gives names only: a binding that differs cannot be seen from here.
            return "exists; left alone (its binding is not listed by the API)", True
        what = f"{binding.connection_type.value} {binding.name}"
        if not binding.connection_type.uses_datamart and binding.name not in (
            await client.list_datasources()
        ):
            raise EndpointError(
                f"workspace {target.workspace!r} is missing and datasource {binding.name!r},"
                " which create_workspace names, does not exist",
                url=target.url,
                code="DATASOURCE_NOT_FOUND",
                hint="fix create_workspace.datasource (GET /api/v2/datasource lists them)",
            )
        if dry_run:
            return f"missing: apply creates it bound to {what}", False
        await client.create_workspace(target.workspace, binding)
        return f"created, bound to {what}", True
    finally:
        await client.aclose()


async def _blocked_outcomes(run: TargetRun, fleet: _Fleet, code: str, why: str) -> list[Outcome]:
    """Every dashboard the plan selects, `blocked` in this target for `why`."""
    refs = await fleet.source.inventory()
    specs, _ = resolve_entries(run.plan.dashboards, refs)
    names = {ref.id: ref.name for ref in refs}
    s = run.plan.settings
    return [
        Outcome(
            id=dash_id,
            target_id=target_id(
                dash_id, override=spec.target_id, prefix=s.id_prefix, suffix=s.id_suffix
            ),
            result=Result.BLOCKED,
            error=ErrorInfo(code, why),
            name=spec.name or names.get(dash_id, ""),
        )
        for dash_id, spec in sorted(specs.items())
    ]


class _Named(Progress):
    """Progress of one target, its messages prefixed with the target's name."""

    def __init__(self, inner: Progress, name: str) -> None:
        self.inner = inner
        self.name = name

    def stage(self, message: str) -> None:
        self.inner.stage(f"[{self.name}] {message}")

    def warn(self, message: str) -> None:
        self.inner.warn(f"[{self.name}] {message}")

    def planned(self, dashboard_id: str, action: Action) -> None:
        self.inner.planned(dashboard_id, action)

    def started(self, dashboard_id: str) -> None:
        self.inner.started(dashboard_id)

    def finished(self, outcome: Outcome) -> None:
        self.inner.finished(outcome)

"""Run a migration: open the endpoints, plan, then import (`apply`) or write a bundle (`export`).

The entry points the CLI calls: `run_plan`, `run_apply`, `run_export`. They own the run's
resources — one throttle shared by source and target, the target lock, the journal, signal
handlers — and hand the importing itself to `importer.Importer`.
"""

from __future__ import annotations

import asyncio
import math
import os
import secrets
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from migrate.bundle import BundleEntry, BundleItem, BundleSource, load_manifest, write_bundle
from migrate.client import ClientOptions, DataAppClient, DatabrainClient
from migrate.connection import (
    ConnectionPolicy,
    open_client,
    open_data_app,
    target_key,
)
from migrate.errors import (
    PayloadInvalidError,
    PlanError,
    UsageError,
    Violation,
)
from migrate.events import Outcome, Progress
from migrate.history import History, record_run
from migrate.importer import AfterImport, Importer
from migrate.journal import Journal, journal_key
from migrate.lock import TargetLock
from migrate.models import Action, EmbedsMode, OnConflict, OnDrift, Plan
from migrate.planner import MigrationPlan, make_plan
from migrate.replace import Replacer
from migrate.savedplan import SavedPlan, check_saved_plan, check_saved_plan_header
from migrate.schema import PayloadValidator, format_violations
from migrate.serving import Serving, SourceEmbeds
from migrate.snapshots import default_history_dir
from migrate.source import LiveSource, PayloadSource
from migrate.spool import DEFAULT_MEMORY_BUDGET, PayloadSpool
from migrate.storage import check_state_dir
from migrate.throttle import Throttle


@dataclass(frozen=True)
class RunOptions:
    """What the command line adds to a plan."""

    selectors: tuple[str, ...] = ()
    concurrency: int | None = None
    max_rps: float | None = None
    fail_fast: bool = False
    bundle: Path | None = None
    spool_budget: int = DEFAULT_MEMORY_BUDGET  # bytes of export files kept in memory
    policy: ConnectionPolicy = field(default_factory=ConnectionPolicy)
    history_dir: Path | None = None  # snapshots and deploys; default <state-dir>/history/
    note: str | None = None  # the deploy's commit (`--note`), else GITHUB_SHA / CI_COMMIT_SHA
    rollback_of: str | None = None  # the deploy a rollback goes back to (docs/contract.md A9)

    def history_of(self, plan: Plan) -> History:
        """The history (deploys, snapshots) of `plan`'s target."""
        folder = self.history_dir or default_history_dir(self.policy.state_dir)
        return History(folder, target_key(plan.target))


@dataclass
class ApplyReport:
    """Everything an apply produced, for the console and the A5 report."""

    migration: MigrationPlan
    outcomes: list[Outcome]
    started_at: float
    finished_at: float
    requests: int = 0
    rate_limited: int = 0
    interrupted: bool = False
    lock_id: str = ""

    @property
    def ok(self) -> bool:
        """True when every dashboard reached created, unchanged or skipped."""
        return all(outcome.result.ok for outcome in self.outcomes)


class _Endpoints:
    """The payload source and the target client of one run, sharing one throttle.

    Payloads come from the bundle when `options.bundle` is set (the source API is never
    called), else from the plan's source workspace.
    """

    def __init__(
        self,
        plan: Plan,
        options: RunOptions,
        *,
        need_target: bool = True,
        shared: SharedResources | None = None,
        payloads: PayloadSource | None = None,
    ) -> None:
        concurrency = options.concurrency or plan.settings.concurrency
        self.throttle = (
            shared.target_throttle if shared is not None else new_throttle(plan, options)
        )
        # A pool no larger than the requests in flight: httpx scans the whole pool per request.
        client_options = ClientOptions(max_connections=concurrency)
        self._clients: list[DatabrainClient] = []
        self.source: PayloadSource
        if payloads is not None:
            self.source = payloads  # a rollback's snapshots (docs/contract.md A9)
        elif shared is not None:
            self.source = shared.source  # read once for every target (docs/contract.md A8)
        else:
            self.source, client = open_source(plan, options, client_options, self.throttle)
            if client is not None:
                self._clients.append(client)
        self.target: DatabrainClient | None = None
        if need_target:
            self.target = open_client(
                plan.target, policy=options.policy, options=client_options, pacer=self.throttle
            )
            self._clients.append(self.target)
        # The target's data app, for `on_conflict: replace` (docs/contract.md A7).
        self.data_app: DataAppClient | None = None
        # `on_drift: overwrite` replaces edited dashboards the same way (A9).
        replacing = (
            plan.settings.on_conflict is OnConflict.REPLACE
            or plan.settings.on_drift is OnDrift.OVERWRITE
        )
        if need_target and plan.target.data_app and replacing:
            self.data_app = open_data_app(
                plan.target, policy=options.policy, options=client_options, pacer=self.throttle
            )

    def require_target(self) -> DatabrainClient:
        """The target client (opened when the run needs one)."""
        assert self.target is not None
        return self.target

    async def aclose(self) -> None:
        for client in self._clients:
            await client.aclose()
        if self.data_app is not None:
            await self.data_app.aclose()


@dataclass(frozen=True)
class SharedResources:
    """What a run over several targets hands each target's run: the one source every target
    reads, the throttle of the target's API host, and the steps that serve an imported
    dashboard (filters, embeds)."""

    source: PayloadSource
    target_throttle: Throttle
    validator: PayloadValidator | None = None
    after_import: AfterImport | None = None


async def run_plan(
    plan: Plan,
    options: RunOptions,
    progress: Progress | None = None,
    *,
    read_target: bool = True,
    shared: SharedResources | None = None,
    payloads: PayloadSource | None = None,
) -> MigrationPlan:
    """Plan only: read source (and target, unless `read_target` is False), write nothing.
    `payloads` stands in for the plan's source (a rollback's snapshots)."""
    endpoints = _Endpoints(plan, options, need_target=read_target, shared=shared, payloads=payloads)
    try:
        migration = await make_plan(
            plan,
            endpoints.source,
            endpoints.target,
            spool=PayloadSpool(
                options.policy.state_dir / "spool", memory_budget=options.spool_budget
            ),
            selectors=options.selectors,
            validator=_validator(plan, shared),
            progress=progress,
            data_app=endpoints.data_app,
            deployed=options.history_of(plan).lookup() if read_target else None,
        )
        # A wait the server announced beyond --max-wait stops the run (exit 5), even where
        # it first surfaced as one dashboard's failed export.
        endpoints.throttle.raise_if_stopped()
        return migration
    finally:
        await endpoints.aclose()


async def run_apply(
    plan: Plan,
    options: RunOptions,
    progress: Progress | None = None,
    *,
    saved: SavedPlan | None = None,
    shared: SharedResources | None = None,
    payloads: PayloadSource | None = None,
) -> ApplyReport:
    """Plan, then import every `create` in dependency order; never raises for one dashboard.

    Holds the target's lock for the whole run (LockHeldError, exit 7, if another run has it),
    journals intent and outcome per import (LocalFileError, exit 3, when the state dir or the
    journal cannot be used; a journal write failing mid-run stops it before its next import),
    and refuses (StalePlanError, exit 7) when `saved`
    — a saved plan — no longer matches what planning finds now. The first SIGINT/SIGTERM stops
    new requests and lets in-flight ones finish (the report says `interrupted`); a second one
    exits at once.
    """
    progress = progress or Progress()
    started = time.time()
    state_dir = options.policy.state_dir
    # Every spelling of the target's URL (127.0.0.1 vs localhost/, :443) is one lock, one journal.
    lock_key = target_key(plan.target)
    selectors = options.selectors
    if saved is not None:
        selectors = check_saved_plan_header(saved, plan)
    check_state_dir(state_dir)  # before the lock, the plan and any request
    with TargetLock(state_dir, lock_key, warn=progress.warn) as lock:
        endpoints = _Endpoints(plan, options, shared=shared, payloads=payloads)
        interrupts = Interrupts(endpoints.throttle.close, progress)
        serving: Serving | None = None
        spool = PayloadSpool(state_dir / "spool", memory_budget=options.spool_budget)
        try:
            if shared is None:  # a run over several targets handles signals once for all
                interrupts.install()
            target = endpoints.require_target()
            history = options.history_of(plan)
            migration = await make_plan(
                plan,
                endpoints.source,
                target,
                spool=spool,
                selectors=selectors,
                validator=_validator(plan, shared),
                progress=progress,
                data_app=endpoints.data_app,
                deployed=history.lookup(),
            )
            endpoints.throttle.raise_if_stopped()
            if saved is not None:
                check_saved_plan(saved, migration)
            key = journal_key(lock_key)
            async with Journal(state_dir, key) as journal:
                _announce_resume(journal, migration, progress)
                to_create = sum(1 for d in migration.dashboards if d.action is Action.CREATE)
                to_update = sum(1 for d in migration.dashboards if d.action is Action.UPDATE)
                progress.stage(
                    f"importing {to_create} dashboards"
                    + (f", replacing {to_update}" if to_update else "")
                )
                replacer = None
                if endpoints.data_app is not None:
                    replacer = Replacer(
                        migration,
                        target,
                        endpoints.data_app,
                        history.snapshots,
                        journal=journal,
                        run_id=secrets.token_hex(4),
                    )
                if shared is None and _needs_serving(plan):  # one target: its own steps
                    serving = await _serving(plan, options, endpoints.throttle)
                executor = Importer(
                    migration,
                    target,
                    fail_fast=options.fail_fast,
                    journal=journal,
                    max_active=2 * endpoints.throttle.ceiling,
                    replacer=replacer,
                    after_import=(
                        shared.after_import
                        if shared is not None
                        else serving.after_import
                        if serving is not None
                        else None
                    ),
                    history=history,
                )
                interrupts.executor = executor
                outcomes = await executor.run(progress)
                # Under the lock, so two runs cannot interleave records (docs/contract.md A9).
                await asyncio.to_thread(
                    record_run,
                    history,
                    migration,
                    outcomes,
                    started=started,
                    note=options.note,
                    rollback_of=options.rollback_of,
                )
                endpoints.throttle.raise_if_stopped()
        finally:
            interrupts.remove()
            spool.close()
            await endpoints.aclose()
            if serving is not None:
                await serving.aclose()
                if serving.source_embeds is not None:  # ours alone in a one-target run
                    await serving.source_embeds.aclose()
    return ApplyReport(
        migration=migration,
        outcomes=outcomes,
        started_at=started,
        finished_at=time.time(),
        requests=endpoints.throttle.requests,
        rate_limited=endpoints.throttle.rate_limited,
        interrupted=interrupts.count > 0,
        lock_id=lock.info.lock_id,
    )


@dataclass(frozen=True)
class ExportSummary:
    """What `run_export` wrote."""

    manifest: Path
    manifest_sha256: str
    dashboards: tuple[BundleEntry, ...]


async def run_export(
    plan: Plan, out_dir: Path, options: RunOptions, progress: Progress | None = None
) -> ExportSummary:
    """Write a bundle (A4) of the selected source dashboards; the target is never read.

    The same planning path as `plan`, then: an `id:` the source does not hold is a PlanError
    (exit 3); an export that failed raises its EndpointError (exit 5); payloads failing the
    schema are one PayloadInvalidError (exit 4) listing each id and JSON path. In every failing
    case nothing is written: a bundle is whole or absent.
    """
    migration = await run_plan(plan, options, progress, read_target=False)
    try:
        _refuse_unexportable(migration, plan)
        # Payloads are read from the spool one at a time as they are written.
        items = [BundleItem(d.id, d.name, d.raw, d.depends_on) for d in migration.dashboards]
        manifest_path = await asyncio.to_thread(write_bundle, out_dir, migration.source, items)
    finally:
        if migration.spool is not None:
            migration.spool.close()
    manifest = load_manifest(manifest_path.parent)
    return ExportSummary(manifest_path, manifest.sha256, manifest.entries)


def _refuse_unexportable(migration: MigrationPlan, plan: Plan) -> None:
    """Raise unless every selected dashboard was exported and is valid (see `run_export`)."""
    missing = [d.id for d in migration.dashboards if d.id not in migration.source_ids]
    if missing:
        raise PlanError(
            f"the plan names dashboards the source workspace does not hold: {', '.join(missing)}",
            file=plan.path,
            hint="fix the ids in the plan, or export from the workspace that holds them",
        )
    for item in migration.dashboards:
        if item.failure is not None:
            raise item.failure
    invalid = [d for d in migration.dashboards if d.action is Action.INVALID]
    if invalid:
        violations = [
            Violation(f"{d.id}: {v.path}", v.message) for d in invalid for v in d.violations
        ]
        raise PayloadInvalidError(
            f"{len(invalid)} of {len(migration.dashboards)} payloads fail the dashboard schema;"
            f" no bundle was written ({', '.join(d.id for d in invalid)}):\n"
            + "\n".join(f"  {line}" for line in format_violations(violations, limit=30)),
            violations=violations,
        )


def _announce_resume(journal: Journal, migration: MigrationPlan, progress: Progress) -> None:
    """Tell the user what an interrupted earlier run against this target left behind."""
    prior = journal.prior
    if prior is None or prior.finished:
        return
    in_target = len(prior.intended & migration.target_inventory)
    progress.warn(
        f"resuming an interrupted run: it sent {len(prior.intended)} imports, confirmed"
        f" {len(prior.confirmed)}; {in_target} of them are in the target and are not imported"
        " again"
    )


class Interrupts:
    """First SIGINT/SIGTERM: stop starting requests and end every wait (Retry-After, pacing,
    backoff) at once; only requests in flight may delay the exit. Second: exit at once.

    `close` stops the requests: one throttle's `close` for one target, every throttle of a run
    over several targets."""

    def __init__(self, close: Callable[[], None], progress: Progress) -> None:
        self.close = close
        self.progress = progress
        self.executor: Importer | None = None
        self.count = 0
        self._installed: list[signal.Signals] = []

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, self._on_signal)
            except (NotImplementedError, RuntimeError, ValueError):
                continue  # not the main thread (tests, embedding): no handler, no harm
            self._installed.append(sig)

    def remove(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in self._installed:
            loop.remove_signal_handler(sig)
        self._installed.clear()

    def _on_signal(self) -> None:
        self.count += 1
        if self.count > 1:
            os._exit(130)  # the user insists: stop now, as promised
        self.progress.warn(
            "interrupted: finishing the requests in flight, starting no new ones"
            " (interrupt again to exit at once)"
        )
        self.close()
        if self.executor is not None:
            self.executor.stop_reason = "interrupted before it started"


def _needs_serving(plan: Plan) -> bool:
    """True when an imported dashboard may need serving steps: embeds to mirror, or filters
    that a schema pair or a filter rule may leave bound to the source's columns."""
    settings = plan.settings
    return (
        settings.embeds is EmbedsMode.MIRROR
        or bool(settings.filter_bindings)
        or bool(settings.schema_pairs)
        or any(spec.schema_pairs for spec in plan.dashboards)
    )


def open_source(
    plan: Plan, options: RunOptions, client_options: ClientOptions, pacer: Throttle | None
) -> tuple[PayloadSource, DatabrainClient | None]:
    """Where payloads come from: `--bundle`, else the plan's source workspace through a client
    (returned too, for the caller to close); PlanError when the plan has no source."""
    if options.bundle is not None:
        return BundleSource(options.bundle), None
    if plan.source is None:
        raise PlanError(
            "the plan has no `source`, so payloads can only come from a bundle",
            file=plan.path,
            hint="add a source section, or pass --bundle DIR",
        )
    client = open_client(plan.source, policy=options.policy, options=client_options, pacer=pacer)
    return LiveSource(client, plan.source.workspace, plan.source.url), client


def new_throttle(plan: Plan, options: RunOptions) -> Throttle:
    """The pacing of one API host: `--concurrency` in flight, `--max-rps` (UsageError unless a
    finite number above 0) or the plan's `max_rps`, server-announced waits capped at
    --max-wait."""
    if options.max_rps is not None and not (math.isfinite(options.max_rps) and options.max_rps > 0):
        raise UsageError(f"--max-rps must be a finite number above 0, not {options.max_rps}")
    return Throttle(
        options.concurrency or plan.settings.concurrency,
        max_rps=options.max_rps or plan.settings.max_rps,
        max_wait_s=options.policy.max_wait_s,
    )


async def _serving(plan: Plan, options: RunOptions, throttle: Throttle) -> Serving:
    """The post-import steps of a one-target plan (filters rebound, embeds mirrored when
    `embeds: mirror`), as a run over several targets gives each of its targets."""
    mirror = plan.settings.embeds is EmbedsMode.MIRROR
    source_embeds = SourceEmbeds.of_source(plan, options.policy, throttle) if mirror else None
    try:
        return await Serving.for_target(plan, options.policy, throttle, source_embeds)
    except BaseException:
        if source_embeds is not None:
            await source_embeds.aclose()
        raise


def _validator(plan: Plan, shared: SharedResources | None) -> PayloadValidator:
    """The shared validator of a run over several targets, else this plan's own."""
    if shared is not None and shared.validator is not None:
        return shared.validator
    return PayloadValidator(payload_schema(plan))


def payload_schema(plan: Plan) -> Path | None:
    """The plan's `payload_schema` file, if it names one."""
    if plan.settings.payload_schema is None:
        return None
    path = Path(plan.settings.payload_schema)
    # A relative schema path is relative to the plan file, as a reader of the plan expects.
    return path if path.is_absolute() else Path(plan.path).parent / path

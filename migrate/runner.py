"""Run a migration: open the endpoints, plan, then (for apply) import in dependency order.

A dashboard's import starts as soon as every dependency is in the target — there is no
level-by-level barrier — with at most `concurrency` requests in flight across the run (the
shared `Throttle`). Each import is confirmed exactly once: after an uncertain outcome the target
inventory is re-read before anything is re-sent, and every import is read back and compared.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from migrate.bundle import BundleEntry, BundleSource, load_manifest, write_bundle
from migrate.client import ClientOptions, DatabrainClient
from migrate.connection import ConnectionPolicy, open_client
from migrate.diff import diff_payloads
from migrate.errors import (
    AuthError,
    EndpointError,
    PayloadInvalidError,
    PlanError,
    RequestRejectedError,
    RunInterruptedError,
    Violation,
    WorkspaceNotFoundError,
)
from migrate.events import ErrorInfo, Outcome, Progress
from migrate.journal import Journal, journal_key
from migrate.lock import TargetLock
from migrate.models import Action, Plan, Result
from migrate.planner import MAX_CHANGES, MigrationPlan, PlannedDashboard, make_plan, normalized_pair
from migrate.savedplan import check_saved_plan, check_saved_plan_header
from migrate.schema import PayloadValidator, format_violations
from migrate.source import LiveSource, PayloadSource
from migrate.throttle import Throttle
from migrate.transform import rewrite_references

_PLANNED_RESULT = {
    Action.UNCHANGED: Result.UNCHANGED,
    Action.SKIP: Result.SKIPPED,
    Action.CONFLICT: Result.CONFLICT,
    Action.INVALID: Result.INVALID,
    Action.BLOCKED: Result.BLOCKED,
}
_MAX_IMPORT_ROUNDS = 5
_DUPLICATE_WORDS = ("exist", "duplicate", "already", "taken", "in use", "conflict")


@dataclass(frozen=True)
class RunOptions:
    """What the command line adds to a plan."""

    selectors: tuple[str, ...] = ()
    concurrency: int | None = None
    max_rps: float | None = None
    fail_fast: bool = False
    bundle: Path | None = None
    policy: ConnectionPolicy = field(default_factory=ConnectionPolicy)


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

    def __init__(self, plan: Plan, options: RunOptions, *, need_target: bool = True) -> None:
        settings = plan.settings
        concurrency = options.concurrency or settings.concurrency
        self.throttle = Throttle(concurrency, max_rps=options.max_rps or settings.max_rps)
        # A pool no larger than the requests in flight: httpx scans the whole pool per request.
        client_options = ClientOptions(max_connections=concurrency)
        self._clients: list[DatabrainClient] = []
        self.source: PayloadSource
        if options.bundle is not None:
            self.source = BundleSource(options.bundle)
        elif plan.source is None:
            raise PlanError(
                "the plan has no `source`, so payloads can only come from a bundle",
                file=plan.path,
                hint="add a source section, or pass --bundle DIR",
            )
        else:
            client = open_client(
                plan.source, policy=options.policy, options=client_options, pacer=self.throttle
            )
            self._clients.append(client)
            self.source = LiveSource(client, plan.source.workspace, plan.source.url)
        self.target: DatabrainClient | None = None
        if need_target:
            self.target = open_client(
                plan.target, policy=options.policy, options=client_options, pacer=self.throttle
            )
            self._clients.append(self.target)

    def require_target(self) -> DatabrainClient:
        """The target client (opened when the run needs one)."""
        assert self.target is not None
        return self.target

    async def aclose(self) -> None:
        for client in self._clients:
            await client.aclose()


async def run_plan(
    plan: Plan,
    options: RunOptions,
    progress: Progress | None = None,
    *,
    read_target: bool = True,
) -> MigrationPlan:
    """Plan only: read source (and target, unless `read_target` is False), write nothing."""
    endpoints = _Endpoints(plan, options, need_target=read_target)
    try:
        return await make_plan(
            plan,
            endpoints.source,
            endpoints.target,
            selectors=options.selectors,
            validator=PayloadValidator(_payload_schema(plan)),
            progress=progress,
        )
    finally:
        await endpoints.aclose()


async def run_apply(
    plan: Plan,
    options: RunOptions,
    progress: Progress | None = None,
    *,
    saved: dict[str, Any] | None = None,
) -> ApplyReport:
    """Plan, then import every `create` in dependency order; never raises for one dashboard.

    Holds the target's lock for the whole run (LockHeldError, exit 7, if another run has it),
    journals intent and outcome per import, and refuses (StalePlanError, exit 7) when `saved`
    — a saved plan — no longer matches what planning finds now. The first SIGINT/SIGTERM stops
    new requests and lets in-flight ones finish (the report says `interrupted`); a second one
    exits at once.
    """
    progress = progress or Progress()
    started = time.time()
    state_dir = options.policy.state_dir
    target_key = f"{plan.target.url}#{plan.target.workspace}"
    selectors = options.selectors
    if saved is not None:
        selectors = check_saved_plan_header(saved, plan)
    with TargetLock(state_dir, target_key, warn=progress.warn) as lock:
        endpoints = _Endpoints(plan, options)
        interrupts = _Interrupts(endpoints.throttle, progress)
        try:
            interrupts.install()
            target = endpoints.require_target()
            migration = await make_plan(
                plan,
                endpoints.source,
                target,
                selectors=selectors,
                validator=PayloadValidator(_payload_schema(plan)),
                progress=progress,
            )
            if saved is not None:
                check_saved_plan(saved, migration)
            key = journal_key(plan.target.url, plan.target.workspace, plan.digest)
            async with Journal(state_dir, key) as journal:
                _announce_resume(journal, migration, progress)
                to_create = sum(1 for d in migration.dashboards if d.action is Action.CREATE)
                progress.stage(f"importing {to_create} dashboards")
                executor = _Executor(
                    migration, target, fail_fast=options.fail_fast, journal=journal
                )
                interrupts.executor = executor
                outcomes = await executor.run(progress)
        finally:
            interrupts.remove()
            await endpoints.aclose()
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
    items = [
        (d.id, d.name, d.export.raw, list(d.depends_on))
        for d in migration.dashboards
        if d.export is not None
    ]
    manifest_path = await asyncio.to_thread(write_bundle, out_dir, migration.source, items)
    manifest = load_manifest(manifest_path.parent)
    return ExportSummary(manifest_path, manifest.sha256, manifest.entries)


def _announce_resume(journal: Journal, migration: MigrationPlan, progress: Progress) -> None:
    """Tell the user what an interrupted earlier run of this plan left behind."""
    prior = journal.prior
    if prior is None or prior.finished:
        return
    in_target = len(prior.intended & migration.target_inventory)
    progress.warn(
        f"resuming an interrupted run: it sent {len(prior.intended)} imports, confirmed"
        f" {len(prior.confirmed)}; {in_target} of them are in the target and are not imported"
        " again"
    )


class _Interrupts:
    """First SIGINT/SIGTERM: stop starting requests. Second: exit at once."""

    def __init__(self, throttle: Throttle, progress: Progress) -> None:
        self.throttle = throttle
        self.progress = progress
        self.executor: _Executor | None = None
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
        self.throttle.close()
        if self.executor is not None:
            self.executor.stop_reason = "interrupted before it started"


def _payload_schema(plan: Plan) -> Path | None:
    if plan.settings.payload_schema is None:
        return None
    path = Path(plan.settings.payload_schema)
    # A relative schema path is relative to the plan file, as a reader of the plan expects.
    return path if path.is_absolute() else Path(plan.path).parent / path


class _Executor:
    """Imports the `create` dashboards of a plan, each as soon as its dependencies are in."""

    def __init__(
        self,
        migration: MigrationPlan,
        target: DatabrainClient,
        *,
        fail_fast: bool,
        journal: Journal | None = None,
    ) -> None:
        self.migration = migration
        self.journal = journal
        self.target = target
        self.workspace = migration.plan.target.workspace
        self.fail_fast = fail_fast
        self.stop_reason: str | None = None
        self.done: dict[str, asyncio.Event] = {d.id: asyncio.Event() for d in migration.dashboards}
        self.results: dict[str, Result] = {}
        self._inventory: frozenset[str] = migration.target_inventory
        self._inventory_lock = asyncio.Lock()
        self._inventory_at = 0.0

    async def run(self, progress: Progress) -> list[Outcome]:
        """All outcomes, in plan order."""
        tasks = [self._one(item, progress) for item in self.migration.dashboards]
        return list(await asyncio.gather(*tasks))

    async def _one(self, item: PlannedDashboard, progress: Progress) -> Outcome:
        started = time.monotonic()
        try:
            outcome = await self._decide(item, progress, started)
        except RunInterruptedError:
            outcome = self._outcome(
                item,
                Result.BLOCKED,
                started,
                error=ErrorInfo("INTERRUPTED", "the run was interrupted; rerun to finish"),
            )
        finally:
            self.done[item.id].set()
        self.results[item.id] = outcome.result
        if self.journal is not None and outcome.attempts:
            self.journal.record(
                "outcome", id=item.id, target_id=item.target_id, result=outcome.result.value
            )
            await self.journal.sync()
        if not outcome.result.ok and self.fail_fast and self.stop_reason is None:
            self.stop_reason = f"--fail-fast: stopped after {item.id} ended {outcome.result}"
        progress.finished(outcome)
        return outcome

    async def _decide(self, item: PlannedDashboard, progress: Progress, started: float) -> Outcome:
        if item.action is not Action.CREATE:
            return self._outcome(item, _PLANNED_RESULT[item.action], started, error=item.error)
        blockers: list[str] = []
        for dep in item.depends_on:
            if dep in self.done:
                await self.done[dep].wait()
                if not self.results[dep].ok:
                    blockers.append(dep)
        if blockers:
            detail = ", ".join(f"{dep} ({self.results[dep]})" for dep in blockers)
            return self._outcome(
                item,
                Result.BLOCKED,
                started,
                error=ErrorInfo("BLOCKED", f"waits for {detail}"),
                blocked_by=tuple(blockers),
            )
        if self.stop_reason:
            return self._outcome(
                item, Result.BLOCKED, started, error=ErrorInfo("NOT_STARTED", self.stop_reason)
            )
        progress.started(item.id)
        return await self._import(item, started)

    async def _import(self, item: PlannedDashboard, started: float) -> Outcome:
        """Import once, confirming uncertain outcomes through the inventory, then read back."""
        assert item.export is not None
        data = rewrite_references(item.export.data, self.migration.id_map)
        pairs = tuple((pair.replace, pair.target) for pair in item.schema_pairs)
        attempts = 0
        uncertain = False
        if self.journal is not None:
            self.journal.record("intent", id=item.id, target_id=item.target_id)
        for _ in range(_MAX_IMPORT_ROUNDS):
            asked_at = time.monotonic()
            try:
                result = await self.target.import_dashboard(
                    self.workspace, item.target_id, data, name=item.rename, schema_pairs=pairs
                )
                attempts += result.attempts
                break
            except (AuthError, WorkspaceNotFoundError) as exc:
                attempts += exc.attempts
                return self._failed(item, started, attempts, exc)
            except EndpointError as exc:
                attempts += exc.attempts
                refused = isinstance(exc, RequestRejectedError) and exc.code != (
                    "INVALID_REQUEST_BODY"
                )
                if not (exc.uncertain or refused):
                    return self._failed(item, started, attempts, exc)
                try:
                    present = item.target_id in await self._fresh_inventory(asked_at)
                except EndpointError as inventory_exc:
                    return self._failed(item, started, attempts, inventory_exc)
                if present:
                    if refused and not uncertain:
                        # Refused as a duplicate before any attempt of ours could have landed:
                        # someone else created it since the plan was made. Compare, don't claim.
                        return await self._verify(item, started, attempts, created=False)
                    break  # an earlier attempt of ours landed
                if refused:
                    return self._refused(item, started, attempts, exc)
                uncertain = True
        else:
            return self._outcome(
                item,
                Result.FAILED,
                started,
                attempts=attempts,
                error=ErrorInfo("GAVE_UP", f"import not confirmed after {attempts} attempts"),
            )
        # Dependents may start now: the dashboard exists. Its read-back runs beside them.
        self.results[item.id] = Result.CREATED
        self.done[item.id].set()
        return await self._verify(item, started, attempts, created=True)

    async def _verify(
        self, item: PlannedDashboard, started: float, attempts: int, *, created: bool
    ) -> Outcome:
        """Read the dashboard back from the target and compare it with what was sent."""
        try:
            copy = await self.target.export_dashboard(self.workspace, item.target_id)
        except RunInterruptedError:
            # The import is confirmed; only its read-back was cut short. A rerun compares it.
            return self._outcome(item, Result.CREATED, started, attempts=attempts)
        except EndpointError as exc:
            return self._failed(item, started, attempts, exc, what="read-back failed: ")
        expected, actual = normalized_pair(
            item, self.migration.plan, self.migration.id_map, copy.data
        )
        if expected == actual:
            return self._outcome(
                item, Result.CREATED if created else Result.UNCHANGED, started, attempts=attempts
            )
        changes = diff_payloads(expected, actual, limit=MAX_CHANGES)
        verb = "the imported copy" if created else "a dashboard created by someone else"
        return self._outcome(
            item,
            Result.FAILED if created else Result.CONFLICT,
            started,
            attempts=attempts,
            error=ErrorInfo(
                "READBACK_MISMATCH" if created else "CONTENT_DIFFERS",
                f"{verb} differs from the source in {len(changes)} places,"
                f" first at {changes[0].path}"
                if changes
                else f"{verb} differs from the source",
            ),
            changes=tuple(changes),
        )

    def _refused(
        self, item: PlannedDashboard, started: float, attempts: int, exc: EndpointError
    ) -> Outcome:
        """An import refused while the workspace does not list the id."""
        text = f"{exc.code or ''} {exc.message}".lower()
        if any(word in text for word in _DUPLICATE_WORDS):
            return self._outcome(
                item,
                Result.CONFLICT,
                started,
                attempts=attempts,
                error=ErrorInfo(
                    exc.error_code,
                    f"id {item.target_id!r} is refused as already existing, but workspace"
                    f" {self.workspace!r} does not list it: another workspace of the company"
                    " holds it. Fix: set settings.id_prefix (or id_suffix), or target_id for"
                    " this dashboard",
                ),
            )
        return self._failed(item, started, attempts, exc)

    async def _fresh_inventory(self, after: float) -> frozenset[str]:
        """The target's ids as listed after `after`; concurrent callers share one listing."""
        async with self._inventory_lock:
            if self._inventory_at <= after:
                listed_at = time.monotonic()
                refs = await self.target.list_dashboards(self.workspace)
                self._inventory = frozenset(ref.id for ref in refs)
                self._inventory_at = listed_at
            return self._inventory

    def _failed(
        self,
        item: PlannedDashboard,
        started: float,
        attempts: int,
        exc: EndpointError,
        what: str = "",
    ) -> Outcome:
        return self._outcome(
            item,
            Result.FAILED,
            started,
            attempts=attempts,
            error=ErrorInfo(exc.error_code, what + exc.message),
        )

    @staticmethod
    def _outcome(
        item: PlannedDashboard,
        result: Result,
        started: float,
        *,
        attempts: int = 0,
        error: ErrorInfo | None = None,
        blocked_by: Sequence[str] | None = None,
        changes: tuple[object, ...] | None = None,
    ) -> Outcome:
        return Outcome(
            id=item.id,
            target_id=item.target_id,
            result=result,
            attempts=attempts,
            duration_s=round(time.monotonic() - started, 3),
            error=error,
            blocked_by=tuple(blocked_by if blocked_by is not None else item.blocked_by),
            changes=changes if changes is not None else tuple(item.changes),
            name=item.name,
        )

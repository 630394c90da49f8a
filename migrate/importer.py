"""Import the `create` dashboards of a plan, each as soon as its dependencies are in the target.

There is no level-by-level barrier: every dashboard waits only for its own dependencies, and the
shared throttle bounds the requests in flight. Each import is confirmed exactly once: after an
uncertain outcome (timeout, dropped connection, 5xx after sending) the target inventory is
re-read — one listing shared by every dashboard that needs it — before anything is re-sent, and
every import is read back and compared with what was sent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from migrate.client import DatabrainClient
from migrate.diff import Change
from migrate.errors import (
    AuthError,
    EndpointError,
    RequestRejectedError,
    RunInterruptedError,
    WorkspaceNotFoundError,
)
from migrate.events import ErrorInfo, Outcome, Progress
from migrate.journal import Journal
from migrate.models import Action, Result, Verify
from migrate.planner import MigrationPlan, PlannedDashboard, compare_with_target, payload_to_send
from migrate.schemapairs import expected_copy_text

_PLANNED_RESULT = {
    Action.UNCHANGED: Result.UNCHANGED,
    Action.SKIP: Result.SKIPPED,
    Action.CONFLICT: Result.CONFLICT,
    Action.INVALID: Result.INVALID,
    Action.BLOCKED: Result.BLOCKED,
}
_MAX_IMPORT_ROUNDS = 5
_DUPLICATE_WORDS = ("exist", "duplicate", "already", "taken", "in use", "conflict")


class Importer:
    """Imports the `create` dashboards of a plan, each as soon as its dependencies are in."""

    def __init__(
        self,
        migration: MigrationPlan,
        target: DatabrainClient,
        *,
        fail_fast: bool,
        journal: Journal | None = None,
        max_active: int = 32,
    ) -> None:
        self.migration = migration
        # Bounds the payloads held parsed at once: a dashboard loads its payload only when it
        # holds one of these, not while it merely waits for a request slot.
        self._active = asyncio.Semaphore(max_active)
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
        async with self._active:
            progress.started(item.id)
            return await self._import(item, started)

    async def _import(self, item: PlannedDashboard, started: float) -> Outcome:
        """Import once, confirming uncertain outcomes through the inventory, then read back."""
        data = payload_to_send(item.load().data, self.migration.id_map)
        pairs = tuple((pair.replace, pair.target) for pair in item.schema_pairs)
        attempts = 0
        uncertain = False
        if self.journal is not None:
            self.journal.record("intent", id=item.id, target_id=item.target_id)
        for round_ in range(1, _MAX_IMPORT_ROUNDS + 1):
            if uncertain:
                # The server just failed this import: give it a moment before asking again.
                await asyncio.sleep(self.target.options.retry.backoff(round_ - 1))
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
                        return await self._verify(item, started, attempts, data, created=False)
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
        if self.migration.plan.settings.verify is Verify.NONE:
            return self._outcome(item, Result.CREATED, started, attempts=attempts)
        return await self._verify(item, started, attempts, data, created=True)

    async def _verify(
        self, item: PlannedDashboard, started: float, attempts: int, sent: Any, *, created: bool
    ) -> Outcome:
        """Read the dashboard back from the target and compare it with what was sent."""
        try:
            # Proven equal on the text when the server stored exactly what we expect: the
            # body is then never parsed (most of a read-back's CPU); else compared parsed.
            expected = expected_copy_text(sent, item.schema_pairs)
            copy = await self.target.read_back(self.workspace, item.target_id, expected)
        except RunInterruptedError:
            # The import is confirmed; only its read-back was cut short. A rerun compares it.
            return self._outcome(item, Result.CREATED, started, attempts=attempts)
        except EndpointError as exc:
            return self._failed(item, started, attempts, exc, what="read-back failed: ")
        if copy is None:
            return self._outcome(
                item, Result.CREATED if created else Result.UNCHANGED, started, attempts=attempts
            )
        changes = compare_with_target(
            item, self.migration.plan, self.migration.id_map, sent, copy.data
        )
        if not changes:
            return self._outcome(
                item, Result.CREATED if created else Result.UNCHANGED, started, attempts=attempts
            )
        verb = "the imported copy" if created else "a dashboard created by someone else"
        return self._outcome(
            item,
            Result.FAILED if created else Result.CONFLICT,
            started,
            attempts=attempts,
            error=ErrorInfo(
                "READBACK_MISMATCH" if created else "CONTENT_DIFFERS",
                f"{verb} differs from the source in {len(changes)} places,"
                f" first at {changes[0].path}",
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
        changes: tuple[Change, ...] | None = None,
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

"""Import the `create` dashboards of a plan, each as soon as its dependencies are in the target.

There is no level-by-level barrier: every dashboard waits only for its own dependencies, and the
shared throttle bounds the requests in flight. Each import is confirmed exactly once: after an
uncertain outcome (timeout, dropped connection, 5xx after sending) or a refusal, the id is read
back from the target — a listing, begun only after the outcome was seen, stands in when the
read-back itself fails — before anything is re-sent, and every import is read back and compared
with what was sent. An answer naming another dashboard id than the one sent, or a read-back that
differs, is journaled as a hold: later runs report that dashboard failed and do not import it
again until the user acts.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from migrate.client import DatabrainClient
from migrate.diff import Change
from migrate.errors import (
    AuthError,
    DashboardNotFoundError,
    EndpointError,
    MigrateError,
    RequestRejectedError,
    RunInterruptedError,
    WorkspaceNotFoundError,
)
from migrate.events import ErrorInfo, Outcome, Progress
from migrate.history import History
from migrate.journal import Held, Journal
from migrate.jsontext import dump_json
from migrate.models import Action, EmbedChange, ExportFile, Result, Verify
from migrate.planner import MigrationPlan, PlannedDashboard, compare_with_target, payload_to_send
from migrate.replace import Replacer
from migrate.schemapairs import rewritten_text

_PLANNED_RESULT = {
    Action.UPDATE: Result.SKIPPED,  # only without a data app, which the plan loader refuses
    Action.UNCHANGED: Result.UNCHANGED,
    Action.SKIP: Result.SKIPPED,
    Action.CONFLICT: Result.CONFLICT,
    Action.INVALID: Result.INVALID,
    Action.BLOCKED: Result.BLOCKED,
}
# Runs after an import is confirmed and read back equal (filters, embeds: docs/contract.md A8):
# given the dashboard, the copy read back and whether it was replaced (its embeds just
# re-created), it returns the embeds it created for the outcome, or an ErrorInfo that fails
# the dashboard.
AfterImport = Callable[
    [PlannedDashboard, Any, bool], Awaitable[tuple[tuple[EmbedChange, ...], ErrorInfo | None]]
]
_MAX_IMPORT_ROUNDS = 5
_DUPLICATE_WORDS = ("exist", "duplicate", "already", "taken", "in use", "conflict")
_MAX_SHOWN_ID = 120  # a server's answer is untrusted: show no more of an id than this


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
        replacer: Replacer | None = None,
        after_import: AfterImport | None = None,
        history: History | None = None,
    ) -> None:
        self.migration = migration
        self.history = history  # each created copy read back is kept (docs/contract.md A9)
        self.replacer = replacer
        self.after_import = after_import
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
        prior = journal.prior if journal is not None else None
        self._held: dict[str, Held] = dict(prior.held) if prior is not None else {}
        self._holds: dict[str, dict[str, str]] = {}  # dashboard id -> hold fields to journal

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
        if self.journal is not None and (outcome.attempts or item.target_id in self._held):
            # A held dashboard's outcome is journaled even without a request: it keeps the
            # hold, or (created, unchanged) ends it.
            self.journal.record(
                "outcome",
                id=item.id,
                target_id=item.target_id,
                result=outcome.result.value,
                **self._holds.pop(item.id, {}),
            )
            await self.journal.sync()
        if not outcome.result.ok and self.fail_fast and self.stop_reason is None:
            self.stop_reason = f"--fail-fast: stopped after {item.id} ended {outcome.result}"
        progress.finished(outcome)
        return outcome

    def _replacing(self, item: PlannedDashboard) -> bool:
        """True for an `update`, and for a dashboard an earlier run left half-replaced."""
        if self.replacer is None or not item.exported:
            return False
        if item.action is Action.UPDATE:
            return True
        resumable = (Action.CREATE, Action.UNCHANGED, Action.SKIP)
        return item.action in resumable and item.target_id in self.replacer.pending

    async def _decide(self, item: PlannedDashboard, progress: Progress, started: float) -> Outcome:
        held = self._held.get(item.target_id)
        if held is not None and (kept := self._still_held(item, held, started)) is not None:
            return kept
        replacing = self._replacing(item)
        if item.action is Action.UNCHANGED and self._unserved(item):
            return await self._serve_again(item, started)
        if item.action is not Action.CREATE and not replacing:
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
            if replacing:
                return await self._replace(item, started)
            return await self._import(item, started)

    async def _replace(self, item: PlannedDashboard, started: float) -> Outcome:
        """Replace under the same id (docs/contract.md A7); dependents start once it is in."""
        assert self.replacer is not None
        data = payload_to_send(item.load().data, self.migration.id_map)

        def imported() -> None:
            self.results[item.id] = Result.UPDATED
            self.done[item.id].set()

        done = await self.replacer.replace(item, data, imported)
        result, error, embeds = done.result, done.error, done.embeds
        if result is Result.UPDATED and self.after_import is not None:
            # A replaced dashboard is served like a created one (docs/contract.md A8): its
            # filters rebound, and source embeds it lacks mirrored beside the re-created ones.
            mirrored, error = await self.after_import(item, done.data, True)
            if error is not None:
                result = Result.FAILED
            kept = {embed.embed_id for embed in embeds}
            embeds = embeds + tuple(e for e in mirrored if e.embed_id not in kept)
        outcome = self._outcome(
            item,
            result,
            started,
            attempts=done.attempts,
            error=error,
            changes=done.changes or None,
            embeds=embeds,
        )
        return dataclasses.replace(
            outcome, snapshot=done.snapshot, snapshot_before=done.snapshot_before
        )

    async def _import(self, item: PlannedDashboard, started: float) -> Outcome:
        """Import once, confirming uncertain outcomes through the inventory, then read back."""
        data = self._to_send(item)
        pairs = tuple((pair.replace, pair.target) for pair in item.schema_pairs)
        attempts = 0
        uncertain = False
        answered_id: str | None = None
        read: ExportFile | None = None
        if self.journal is not None:
            self.journal.record("intent", id=item.id, target_id=item.target_id)
        for round_ in range(1, _MAX_IMPORT_ROUNDS + 1):
            if uncertain:
                # The server just failed this import: give it a moment before asking again.
                await self.target.pause(self.target.options.retry.backoff(round_ - 1))
            try:
                result = await self.target.import_dashboard(
                    self.workspace, item.target_id, data, name=item.rename, schema_pairs=pairs
                )
                attempts += result.attempts
                answered_id = result.dashboard_id
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
                    present, read = await self._present(item, observed=time.monotonic())
                except EndpointError as inventory_exc:
                    return self._failed(item, started, attempts, inventory_exc)
                if present:
                    if refused and not uncertain and _is_duplicate(exc):
                        # Refused as a duplicate before any attempt of ours could have landed:
                        # someone else created it since the plan was made. Compare, don't claim.
                        return await self._verify(
                            item, started, attempts, data, created=False, copy=read
                        )
                    # An earlier attempt of ours landed, or the server stored this one although
                    # it answered with a refusal that does not say "duplicate".
                    break
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
        if answered_id is not None and answered_id != item.target_id:
            return self._foreign(item, started, attempts, answered_id)
        # Dependents may start now: the dashboard exists. Its read-back runs beside them.
        self.results[item.id] = Result.CREATED
        self.done[item.id].set()
        if self.migration.plan.settings.verify is Verify.NONE and read is None:
            # No comparison read-back: serving (filters, embeds) works from what was sent and
            # confirms its own steps.
            return await self._equal(item, started, attempts, created=True, copy=data, raw=None)
        return await self._verify(item, started, attempts, data, created=True, copy=read)

    def _to_send(self, item: PlannedDashboard) -> Any:
        """What to import for `item`: its `data` as the compact text it arrived as, when that
        text is `dump_json` of it and no planned id changes (so nothing in it is rewritten);
        else `payload_to_send` of the parsed payload. The client sends the same bytes either
        way; the text spares parsing the payload again and writing it back."""
        if not self.migration.id_map.renamed:
            text = item.data_text()
            if text is not None:
                return text
        return payload_to_send(item.load().data, self.migration.id_map)

    def _parsed(self, item: PlannedDashboard, sent: Any) -> Any:
        """`sent` as parsed data: `_to_send`'s text stands for the payload's own `data`."""
        if isinstance(sent, bytes):
            return payload_to_send(item.load().data, self.migration.id_map)
        return sent

    def _unserved(self, item: PlannedDashboard) -> bool:
        """True when an earlier run sent this import but never recorded its outcome: a crash
        may have come between the import and the steps that serve it (filters, embeds)."""
        prior = self.journal.prior if self.journal is not None else None
        return (
            self.after_import is not None
            and prior is not None
            and item.target_id in prior.unconfirmed
        )

    async def _serve_again(self, item: PlannedDashboard, started: float) -> Outcome:
        """Finish the serving steps of a dashboard an interrupted run imported; both steps are
        idempotent (a filter already rebound is left alone, an embed already there is kept)."""
        assert self.after_import is not None
        try:
            copy = await self.target.export_dashboard(self.workspace, item.target_id)
        except EndpointError as exc:
            return self._failed(item, started, 0, exc, what="read-back failed: ")
        embeds, error = await self.after_import(item, copy.data, False)
        if error is not None:
            return self._outcome(item, Result.FAILED, started, error=error)
        if self.journal is not None:  # confirmed now: later runs need not serve it again
            self.journal.record("outcome", id=item.id, target_id=item.target_id, result="created")
            await self.journal.sync()
        return self._outcome(item, Result.UNCHANGED, started, embeds=embeds)

    async def _verify(
        self,
        item: PlannedDashboard,
        started: float,
        attempts: int,
        sent: Any,
        *,
        created: bool,
        copy: ExportFile | None = None,
    ) -> Outcome:
        """Read the dashboard back from the target (unless `copy` is that read-back) and
        compare it with what was sent (`sent`: as `_to_send` gives it)."""
        expected: bytes | None = None
        try:
            if copy is None:
                # Proven equal on the text when the server stored exactly what we expect: the
                # body is then never parsed (most of a read-back's CPU); else compared parsed.
                text = sent if isinstance(sent, bytes) else dump_json(sent)
                expected = rewritten_text(text, item.schema_pairs)
                answer = await self.target.read_back(self.workspace, item.target_id, expected)
                if isinstance(answer, bytes):  # equal on the text: `expected` is the copy
                    assert expected is not None
                    # The pairs changed nothing: the copy is what was sent, perhaps parsed.
                    parsed = self._held_parsed(item, sent) if expected == text else None
                    return await self._equal(
                        item,
                        started,
                        attempts,
                        created=created,
                        copy=expected,
                        raw=answer,
                        parsed=parsed,
                    )
                copy = answer
        except RunInterruptedError:
            # The import is confirmed; only its read-back was cut short. A rerun compares it.
            return self._outcome(item, Result.CREATED, started, attempts=attempts)
        except EndpointError as exc:
            return self._failed(item, started, attempts, exc, what="read-back failed: ")
        sent = self._parsed(item, sent)
        changes = compare_with_target(
            item, self.migration.plan, self.migration.id_map, sent, copy.data
        )
        if not changes:
            return await self._equal(
                item, started, attempts, created=created, copy=copy.data, raw=copy.raw
            )
        if created:
            self._holds[item.id] = {"held": "readback_differs"}
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

    async def _equal(
        self,
        item: PlannedDashboard,
        started: float,
        attempts: int,
        *,
        created: bool,
        copy: Any,
        raw: bytes | None,
        parsed: Any = None,
    ) -> Outcome:
        """The outcome of a read-back equal to what was sent: a created dashboard's copy is
        kept as a snapshot (`raw`, the export file as read back, when there was a read-back)
        and the dashboard is served (filters, embeds). `copy` is the copy's `data`, or its
        compact JSON text; `parsed`, when not None, is that text's value, already at hand."""
        result = Result.CREATED if created else Result.UNCHANGED
        if not created:
            return self._outcome(item, result, started, attempts=attempts)
        snapshot = await self._snapshot(raw, copy, parsed) if raw is not None else None
        outcome = self._outcome(item, result, started, attempts=attempts)
        if self.after_import is not None:  # `copy` may be text: parsed only if a step needs it
            embeds, error = await self.after_import(item, copy, False)
            if error is not None:
                return self._outcome(item, Result.FAILED, started, attempts=attempts, error=error)
            outcome = dataclasses.replace(outcome, embeds=embeds)
        return dataclasses.replace(outcome, snapshot=snapshot)

    async def _snapshot(self, raw: bytes, copy: Any, parsed: Any = None) -> str | None:
        """Keep the copy read back after an import as a snapshot, with what the deploy record
        says of it (one worker-thread hop); None when there is no history to keep it in, or it
        cannot be written (the deploy record then says so). `copy` and `parsed` are as for
        `_equal`."""
        if self.history is None:
            return None
        if parsed is not None:
            keep = functools.partial(self.history.keep, raw, parsed)
        elif isinstance(copy, bytes):
            keep = functools.partial(self.history.keep, raw, text=copy)
        else:
            keep = functools.partial(self.history.keep, raw, copy)
        try:
            return await asyncio.to_thread(keep)
        except (OSError, MigrateError):
            return None

    def _held_parsed(self, item: PlannedDashboard, sent: Any) -> Any:
        """The parsed value of what was sent when it is at hand without parsing, else None."""
        if not isinstance(sent, bytes):
            return sent
        held = item.held()
        return held.data if held is not None else None

    def _refused(
        self, item: PlannedDashboard, started: float, attempts: int, exc: EndpointError
    ) -> Outcome:
        """An import refused while the workspace does not hold the id (read back)."""
        if _is_duplicate(exc):
            return self._outcome(
                item,
                Result.CONFLICT,
                started,
                attempts=attempts,
                error=ErrorInfo(
                    exc.error_code,
                    f"id {item.target_id!r} is refused as already existing, but workspace"
                    f" {self.workspace!r} does not hold it: another workspace of the company"
                    " holds it. Fix: set settings.id_prefix (or id_suffix), or target_id for"
                    " this dashboard",
                ),
            )
        return self._failed(item, started, attempts, exc)

    def _foreign(
        self, item: PlannedDashboard, started: float, attempts: int, server_id: str
    ) -> Outcome:
        """The server answered an import with another dashboard id than the one sent."""
        self._holds[item.id] = {"held": "foreign_id", "server_id": server_id[:_MAX_SHOWN_ID]}
        return self._outcome(
            item,
            Result.FAILED,
            started,
            attempts=attempts,
            error=ErrorInfo("FOREIGN_ID", self._foreign_message(item, server_id)),
        )

    def _foreign_message(self, item: PlannedDashboard, server_id: str | None) -> str:
        shown = repr(server_id[:_MAX_SHOWN_ID]) if server_id else "an id of its own"
        where = f" {self.journal.path}" if self.journal is not None else ""
        return (
            f"the server stored the import of {item.id!r} under {shown}, not under the"
            f" {item.target_id!r} it was sent: it makes its own dashboard ids. Not imported"
            " again, which would add another copy: to keep that copy, set its id as target_id"
            f" for {item.id!r} in the plan; to import anew, delete that copy in the target and"
            f" remove the journal{where}"
        )

    def _still_held(self, item: PlannedDashboard, held: Held, started: float) -> Outcome | None:
        """The outcome of a dashboard an earlier run held back (see `journal.HELD_REASONS`),
        or None once what held it no longer applies."""
        if held.reason == "foreign_id" and item.action is Action.CREATE:
            self._holds[item.id] = {"held": held.reason, "server_id": held.server_id or ""}
            message = self._foreign_message(item, held.server_id)
            return self._outcome(
                item, Result.FAILED, started, error=ErrorInfo("FOREIGN_ID", message)
            )
        if held.reason == "readback_differs" and item.action in (Action.SKIP, Action.CONFLICT):
            self._holds[item.id] = {"held": held.reason}
            return self._outcome(
                item,
                Result.FAILED,
                started,
                error=ErrorInfo(
                    "READBACK_MISMATCH",
                    f"this tool imported {item.target_id!r} and its read-back differed from the"
                    f" source; it stays failed until the target copy equals the source: fix or"
                    " delete that copy in the target (a re-run imports it again), or add the"
                    " differing paths to settings.compare_ignore",
                ),
            )
        return None

    async def _present(
        self, item: PlannedDashboard, *, observed: float
    ) -> tuple[bool, ExportFile | None]:
        """Whether the target holds `item` now, with its read-back when that was how we know.

        The id itself is read back first: a listing may lag behind a commit. Only when the
        read-back fails for another reason than "not found" does a listing decide, and then
        only one that began after `observed`, when the uncertain outcome was seen.
        """
        try:
            return True, await self.target.export_dashboard(self.workspace, item.target_id)
        except DashboardNotFoundError:
            return False, None
        except EndpointError:
            return item.target_id in await self._fresh_inventory(observed), None

    async def _fresh_inventory(self, after: float) -> frozenset[str]:
        """The target's ids as listed by a listing begun after `after`; concurrent callers
        share one listing."""
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
        embeds: tuple[EmbedChange, ...] = (),
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
            embeds=embeds,
        )


def _is_duplicate(exc: EndpointError) -> bool:
    """True when a refusal says the id is taken (the API documents no code for it)."""
    text = f"{exc.code or ''} {exc.message}".lower()
    return any(word in text for word in _DUPLICATE_WORDS)

"""Replace one target dashboard by a new version under the same id (docs/contract.md A7).

A small state machine kept in the journal: every step is recorded (`replace` records, the
whole state each time) before it runs and after, and a run that finds an unfinished replace of
a dashboard first observes where the dashboard got to, then continues:

- absent: import (the new version, or the snapshot once the new one was refused for good);
- present and equal to what the last import sent: re-create the embeds, read back;
- present and equal to the snapshot: the delete did not happen, do it (again).

Steps: (1) snapshot the target's copy durably (`snapshots`), before anything destructive;
(2) record the dashboard's embeds (`embeds.embeds_of`) with their access settings; (3) delete
the dashboard through a temporary embed created *with this workspace's name*, since the embed
listing names no workspace and an existing embed might show another workspace's dashboard of
the same id; (4) import the new version; (5) re-create the recorded embeds that the delete took
with it (one still listed survived and is kept); (6) read back and compare. Writes whose
answer was lost are confirmed from the server (dashboard listing, embed listing) before being
sent again; embed ids are only ever read from answers and listings.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from migrate.client import DataAppClient, DatabrainClient
from migrate.diff import Change
from migrate.embeds import RecordedEmbed, embeds_of, same_dashboard
from migrate.errors import (
    AuthError,
    DashboardNotFoundError,
    EmbedNotFoundError,
    EndpointError,
    PlanError,
    RequestRejectedError,
    WorkspaceNotFoundError,
)
from migrate.events import ErrorInfo
from migrate.journal import Journal
from migrate.jsontext import parse_json
from migrate.models import Embed, EmbedChange, ExportFile, Result
from migrate.planner import MigrationPlan, PlannedDashboard, compare_with_target
from migrate.snapshots import SnapshotStore

TEMP_EMBED_PREFIX = "migrate-temp-"
_ROUNDS = 5  # confirmations of one write before giving up on it


@dataclass
class ReplaceResult:
    """What one replace did, for the importer's Outcome."""

    result: Result
    attempts: int = 0
    error: ErrorInfo | None = None
    embeds: tuple[EmbedChange, ...] = ()
    changes: tuple[Change, ...] = ()
    data: Any = None  # `updated`: the target copy's `data` as read back
    snapshot: str | None = None  # the copy read back after the import (docs/contract.md A9)
    snapshot_before: str | None = None  # what the replace removed


class ReplaceFailed(Exception):
    """One step failed for good; `error` says which and why (the state stays journaled)."""

    def __init__(self, error: ErrorInfo) -> None:
        super().__init__(error.message)
        self.error = error


# Steps recorded once the delete was sent: from there the recorded embeds may exist nowhere
# but in the journal.
_DELETE_MAY_HAVE_HAPPENED = frozenset(
    {"delete-intent", "deleted", "import-refused", "embed-intent", "embed-created"}
)


@dataclass
class _State:
    """The journaled state of one replace: each record carries all of it."""

    step: str = "start"
    snapshot: str | None = None  # sha256 of the target's copy before the replace
    embeds: list[RecordedEmbed] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)  # same-id embeds not of this dashboard
    temp_name: str | None = None
    temp_id: str | None = None
    version: str = "new"  # what the import sends: "new", or "snapshot" once "new" was refused
    refused: str | None = None  # why the new version was refused
    recreated: dict[str, str] = field(default_factory=dict)  # recorded embed id -> new id

    def record(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "snapshot": self.snapshot,
            "embeds": [embed.as_record() for embed in self.embeds],
            "foreign": self.foreign,
            "temp_name": self.temp_name,
            "temp_id": self.temp_id,
            "version": self.version,
            "refused": self.refused,
            "recreated": self.recreated,
        }

    @staticmethod
    def from_record(record: dict[str, Any]) -> _State:
        embeds = [RecordedEmbed.from_record(value) for value in record.get("embeds") or ()]
        recreated = record.get("recreated")

        def text(key: str) -> str | None:
            value = record.get(key)
            return value if isinstance(value, str) else None

        return _State(
            step=text("step") or "start",
            snapshot=text("snapshot"),
            embeds=[embed for embed in embeds if embed is not None],
            foreign=[v for v in record.get("foreign") or () if isinstance(v, str)],
            temp_name=text("temp_name"),
            temp_id=text("temp_id"),
            version="snapshot" if record.get("version") == "snapshot" else "new",
            refused=text("refused"),
            recreated={
                str(k): v
                for k, v in (recreated.items() if isinstance(recreated, dict) else ())
                if isinstance(v, str)
            },
        )


def pending_replaces(journal: Journal | None) -> dict[str, dict[str, Any]]:
    """Target id -> the state of each replace an earlier run left unfinished."""
    if journal is None or journal.prior is None:
        return {}
    return {
        target: record
        for target, record in journal.prior.replaces.items()
        if record.get("step") not in ("done", "start")
    }


class Replacer:
    """Replaces the dashboards of one migration, each through the A7 machine."""

    def __init__(
        self,
        migration: MigrationPlan,
        target: DatabrainClient,
        app: DataAppClient,
        snapshots: SnapshotStore,
        *,
        journal: Journal | None,
        run_id: str,
    ) -> None:
        self.migration = migration
        self.target = target
        self.app = app
        self.snapshots = snapshots
        self.journal = journal
        self.run_id = run_id
        self.workspace = migration.plan.target.workspace
        self.pending = pending_replaces(journal)

    async def replace(
        self, item: PlannedDashboard, sent: Any, on_imported: Callable[[], None]
    ) -> ReplaceResult:
        """Bring `item` to the new version `sent` (or finish an earlier run's replace of it)."""
        run = _Run(self, item, sent, on_imported)
        try:
            return await run.go()
        except ReplaceFailed as exc:
            error = exc.error
        except (EndpointError, PlanError) as exc:
            code = exc.error_code if isinstance(exc, EndpointError) else "SNAPSHOT"
            error = ErrorInfo(code, exc.message)
        return ReplaceResult(
            Result.FAILED,
            run.attempts,
            error,
            embeds=run.embed_changes(),
            snapshot_before=run.state.snapshot,
        )


class _Run:
    """One dashboard's replace."""

    def __init__(
        self,
        owner: Replacer,
        item: PlannedDashboard,
        sent: Any,
        on_imported: Callable[[], None],
    ) -> None:
        self.o = owner
        self.item = item
        self.tid = item.target_id
        self.sent = sent
        self.on_imported = on_imported
        record = owner.pending.get(self.tid)
        self.state = _State.from_record(record) if record else _State()
        self.attempts = 0
        self.final_ids: dict[str, str | None] = {}

    # ---- journal ---------------------------------------------------------------------------

    async def save(self, step: str) -> None:
        """Record the state at `step`, durably, before what comes next runs."""
        self.state.step = step
        if self.o.journal is not None:
            self.o.journal.record(
                "replace", id=self.item.id, target_id=self.tid, **self.state.record()
            )
            await self.o.journal.sync()

    # ---- the machine -----------------------------------------------------------------------

    async def go(self) -> ReplaceResult:
        copy = await self.observe()
        state = self.state
        if state.snapshot is None:
            if copy is None:
                # Nothing to replace and nothing of ours deleted it: a plain import.
                state.version = "new"
                return await self.import_and_finish()
            state.snapshot = await asyncio.to_thread(self.o.snapshots.put, copy.raw)
            await self.save("snapshotted")
        if copy is not None:
            if state.version == "snapshot" and same_dashboard(copy.data, self.snapshot_data()):
                return await self.embeds_and_finish()  # the restore landed
            if state.version == "new" and not self.changes(copy.data):
                return await self.embeds_and_finish()  # the new version landed
            carried: list[RecordedEmbed] = []
            if not same_dashboard(copy.data, self.snapshot_data()):
                # Changed since our snapshot (an import of ours landed, then the source moved
                # on; or someone edited it): snapshot what is there now. Once our delete may
                # have happened, the embeds it took are in no listing any more: only this
                # record knows them, so they are carried over, never forgotten.
                if state.step in _DELETE_MAY_HAVE_HAPPENED:
                    carried = [e for e in state.embeds if e.id not in state.recreated]
                state.snapshot = await asyncio.to_thread(self.o.snapshots.put, copy.raw)
                state.step = "start"
            if state.step in ("start", "snapshotted"):
                await self.record_embeds(copy.data, carried=carried)
            await self.delete()
        return await self.import_and_finish()

    async def observe(self) -> ExportFile | None:
        """The target's copy now, or None when the workspace does not hold the dashboard."""
        try:
            return await self.o.target.export_dashboard(self.o.workspace, self.tid)
        except DashboardNotFoundError:
            return None
        except (AuthError, WorkspaceNotFoundError):
            raise
        except EndpointError as exc:
            message = f"cannot read the target copy: {exc.message}"
            raise ReplaceFailed(ErrorInfo(exc.error_code, message)) from exc

    def changes(self, data: Any) -> list[Change]:
        """Where a target copy differs from the new version (empty: equal)."""
        plan = self.o.migration
        return compare_with_target(self.item, plan.plan, plan.id_map, self.sent, data)

    def snapshot_data(self) -> Any:
        assert self.state.snapshot is not None
        raw = self.o.snapshots.get(self.state.snapshot)
        document = parse_json(raw, source=f"snapshot {self.state.snapshot[:12]}")
        return document.get("data") if isinstance(document, dict) else None

    async def record_embeds(self, data: Any, *, carried: Sequence[RecordedEmbed] = ()) -> None:
        """Step 2: the embeds showing this dashboard (plus `carried`: recorded before a delete
        that took them), and the same-id embeds that do not show it."""
        listing = await self.call(self.o.app.list_embeds())
        mine = await self.call(embeds_of(self.o.app, listing, self.tid, data))
        ids = {embed.id for embed in mine}
        self.state.embeds = [*mine, *(e for e in carried if e.id not in ids)]
        self.state.foreign = [
            other.id for other in listing if other.dashboard_id == self.tid and other.id not in ids
        ]
        await self.save("embeds-recorded")

    async def delete(self) -> None:
        """Step 3: delete through a temporary embed of this workspace's dashboard."""
        state = self.state
        if state.temp_id is None and state.step == "temp-intent" and state.temp_name:
            # The create of an earlier run may have landed: find it rather than make another.
            listing = await self.call(self.o.app.list_embeds())
            state.temp_id = self.adopt(listing, RecordedEmbed("", state.temp_name, "", {}), set())
        for _ in range(_ROUNDS):
            if state.temp_id is None:
                state.temp_name = state.temp_name or f"{TEMP_EMBED_PREFIX}{self.o.run_id}"
                await self.save("temp-intent")
                state.temp_id = await self.create_embed(
                    RecordedEmbed("", state.temp_name, "dashboard", {}), known=set()
                )
                await self.save("temp-created")
            await self.save("delete-intent")
            try:
                await self.o.app.delete_embed(state.temp_id, delete_dashboard=True)
                self.attempts += 1
                await self.save("deleted")  # a 2xx answer is certain: nothing to confirm
                return
            except (AuthError, WorkspaceNotFoundError):
                raise
            except EmbedNotFoundError as exc:
                self.attempts += exc.attempts
            except EndpointError as exc:
                self.attempts += exc.attempts
                if not exc.uncertain:
                    await self.drop_temp()
                    raise ReplaceFailed(
                        ErrorInfo(exc.error_code, f"delete refused, nothing changed: {exc}")
                    ) from exc
            # "Embed not found" or a lost answer: an earlier attempt may have deleted it.
            if not await self.listed():
                await self.save("deleted")
                return
            listing = await self.call(self.o.app.list_embeds())
            if state.temp_id not in {embed.id for embed in listing}:
                state.temp_id = None  # gone without its dashboard: make another
        raise ReplaceFailed(ErrorInfo("GAVE_UP", f"delete of {self.tid} not confirmed"))

    async def drop_temp(self) -> None:
        """Remove the temporary embed (not its dashboard) after a delete that failed."""
        if self.state.temp_id is None:
            return
        try:
            await self.o.app.delete_embed(self.state.temp_id)
        except EmbedNotFoundError:
            pass
        except EndpointError:
            return  # recorded: the next run finds it and deletes it
        self.state.temp_id = None
        await self.save("done")

    async def import_and_finish(self) -> ReplaceResult:
        """Step 4: import (new version; the snapshot once it is refused for good)."""
        state = self.state
        while True:
            await self.save(f"import-intent-{state.version}")
            try:
                await self.import_once()
                break
            except RequestRejectedError as exc:
                if state.version == "snapshot" or state.snapshot is None:
                    raise ReplaceFailed(ErrorInfo(exc.error_code, exc.message)) from exc
                state.version = "snapshot"
                state.refused = f"{exc.error_code}: {exc.message}"
                await self.save("import-refused")
        await self.save(f"imported-{state.version}")
        return await self.embeds_and_finish()

    async def import_once(self) -> None:
        """One import, confirmed through the listing after an uncertain answer; the server's
        lasting refusal (RequestRejectedError) goes up."""
        if self.state.version == "new":
            data, pairs = self.sent, tuple((p.replace, p.target) for p in self.item.schema_pairs)
        else:
            data, pairs = self.snapshot_data(), ()
        for round_ in range(1, _ROUNDS + 1):
            if round_ > 1:
                await self.o.target.pause(self.o.target.options.retry.backoff(round_ - 1))
            try:
                result = await self.o.target.import_dashboard(
                    self.o.workspace, self.tid, data, name=self.item.rename, schema_pairs=pairs
                )
                self.attempts += result.attempts
                return
            except (AuthError, WorkspaceNotFoundError):
                raise
            except EndpointError as exc:
                self.attempts += exc.attempts
                if await self.listed():
                    return  # an attempt of ours landed (the id was free: we deleted it)
                if isinstance(exc, RequestRejectedError) and not exc.uncertain:
                    raise
                if not exc.uncertain:
                    raise ReplaceFailed(ErrorInfo(exc.error_code, exc.message)) from exc
        raise ReplaceFailed(ErrorInfo("GAVE_UP", f"import of {self.tid} not confirmed"))

    async def embeds_and_finish(self) -> ReplaceResult:
        """Step 5 and 6: re-create the embeds the delete took, read back, close the record."""
        state = self.state
        restored = state.version == "snapshot"
        if not restored:
            self.on_imported()
        listing = await self.call(self.o.app.list_embeds())
        listed = {embed.id for embed in listing}
        for embed in state.embeds:
            if embed.id in state.recreated:
                continue
            if embed.id in listed and embed.id != state.temp_id:
                self.final_ids[embed.id] = embed.id  # survived the delete: kept as it is
                continue
            known = self.known_ids()
            adopted = self.adopt(listing, embed, known)
            if adopted is None:
                await self.save("embed-intent")
                adopted = await self.create_embed(embed, known=known)
            state.recreated[embed.id] = adopted
            await self.save("embed-created")
        for old, new in state.recreated.items():
            self.final_ids[old] = new
        changes: tuple[Change, ...] = ()
        error: ErrorInfo | None = None
        result = Result.UPDATED
        copy: ExportFile | None = None
        after: str | None = None
        if restored:
            result = Result.FAILED
            after = state.snapshot  # the target holds the snapshot again
            error = ErrorInfo(
                "REFUSED_RESTORED",
                f"the new version was refused for good ({state.refused}); the previous version"
                " was restored and its embeds re-created",
            )
        else:
            copy = await self.observe()
            if copy is not None:
                after = await asyncio.to_thread(self.o.snapshots.put, copy.raw)
            found = (
                self.changes(copy.data)
                if copy is not None
                else [Change("data", "removed", "(source)", None)]
            )
            if found:
                changes = tuple(found)
                result = Result.FAILED
                error = ErrorInfo(
                    "READBACK_MISMATCH",
                    f"the imported copy differs from the source in {len(found)} places,"
                    f" first at {found[0].path}",
                )
        await self.save("done")
        return ReplaceResult(
            result,
            self.attempts,
            error,
            embeds=self.embed_changes(),
            changes=changes,
            data=copy.data if not restored and copy is not None else None,
            snapshot=after,
            snapshot_before=state.snapshot,
        )

    def known_ids(self) -> set[str]:
        state = self.state
        return (
            {embed.id for embed in state.embeds}
            | set(state.foreign)
            | set(state.recreated.values())
            | ({state.temp_id} if state.temp_id else set())
        )

    def adopt(self, listing: list[Embed], embed: RecordedEmbed, known: set[str]) -> str | None:
        """An embed an earlier attempt created for `embed` (its answer lost), if listed."""
        for listed in listing:
            if (
                listed.dashboard_id == self.tid
                and listed.name == embed.name
                and listed.id not in known
            ):
                return listed.id
        return None

    async def create_embed(self, embed: RecordedEmbed, *, known: set[str]) -> str:
        """Create `embed` on this workspace's dashboard; an uncertain answer is confirmed
        through the listing before creating again. Returns the id the server minted."""
        for round_ in range(1, _ROUNDS + 1):
            if round_ > 1:
                await self.o.target.pause(self.o.target.options.retry.backoff(round_ - 1))
            try:
                new_id = await self.o.app.create_embed(
                    self.o.workspace,
                    self.tid,
                    embed.name,
                    embed_type=embed.type or "dashboard",
                    access_settings=embed.access_settings or None,
                    metric_id=embed.metric_id if embed.type == "metric" else None,
                )
                self.attempts += 1
                return new_id
            except (AuthError, WorkspaceNotFoundError):
                raise
            except EndpointError as exc:
                self.attempts += exc.attempts
                if not exc.uncertain:
                    raise ReplaceFailed(
                        ErrorInfo(exc.error_code, f"embed {embed.name!r}: {exc.message}")
                    ) from exc
                listing = await self.call(self.o.app.list_embeds())
                adopted = self.adopt(listing, embed, known)
                if adopted is not None:
                    return adopted
        raise ReplaceFailed(ErrorInfo("GAVE_UP", f"embed {embed.name!r} not confirmed"))

    async def listed(self) -> bool:
        """True when the target workspace holds the dashboard now: read back by id, since a
        listing may lag behind a write it just answered (and an import confirmed by a lagging
        listing would be sent again)."""
        return await self.observe() is not None

    async def call(self, awaitable: Awaitable[Any]) -> Any:
        """A read; its failure fails this replace (the state stays journaled for a rerun)."""
        try:
            return await awaitable
        except (AuthError, WorkspaceNotFoundError):
            raise
        except EndpointError as exc:
            raise ReplaceFailed(ErrorInfo(exc.error_code, exc.message)) from exc

    def embed_changes(self) -> tuple[EmbedChange, ...]:
        return tuple(
            EmbedChange(embed.name, self.final_ids.get(embed.id), embed.id)
            for embed in self.state.embeds
        )

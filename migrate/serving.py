"""Make an imported dashboard served (docs/contract.md A8): its filters rebound to the target's
columns, and — with `embeds: mirror` — the embeds its source has, created in the target's data
app.

`Serving.after_import` is the importer's hook: it runs once a dashboard's import is confirmed
and read back equal. Embed ids are read from the server's answers, never constructed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any

from migrate.client import DataAppClient, DatabrainClient
from migrate.connection import open_client, open_data_app
from migrate.embeds import embeds_of
from migrate.errors import EndpointError
from migrate.events import ErrorInfo
from migrate.filters import may_need_rebinding, plan_rebindings, unapplied
from migrate.jsontext import parse_json
from migrate.models import ConnectionPolicy, Embed, EmbedChange, EmbedsMode, Plan
from migrate.planner import PlannedDashboard
from migrate.redaction import holds_secret
from migrate.retry import Pacer

EmbedList = tuple[EmbedChange, ...]


class SourceEmbeds:
    """The source data app's embeds, read once per run and shared by every target: one
    listing, then one export per embed of a mirrored dashboard (for its access settings)."""

    def __init__(self, client: DataAppClient) -> None:
        self.client = client
        self._listing: asyncio.Future[list[Embed]] | None = None
        self._exports: dict[str, asyncio.Future[Embed]] = {}

    @classmethod
    def of_source(cls, plan: Plan, policy: ConnectionPolicy, pacer: Pacer) -> SourceEmbeds | None:
        """The embeds of the plan's source data app; None when the source names none."""
        if plan.source is None or plan.source.data_app is None:
            return None
        return cls(open_data_app(plan.source, policy=policy, pacer=pacer))

    async def of(self, dashboard_id: str) -> list[Embed]:
        """The embeds of source dashboard `dashboard_id`, with their access settings."""
        if self._listing is None:
            self._listing = asyncio.ensure_future(self.client.list_embeds())
        embeds = await asyncio.shield(self._listing)
        mine = [e for e in embeds if e.dashboard_id == dashboard_id]
        for embed in mine:
            if embed.id not in self._exports:
                self._exports[embed.id] = asyncio.ensure_future(self._export(embed))
        return [await asyncio.shield(self._exports[e.id]) for e in mine]

    async def _export(self, embed: Embed) -> Embed:
        exported = await self.client.export_embed(embed.id)
        return dataclasses.replace(embed, access_settings=exported.embed.access_settings or {})

    async def aclose(self) -> None:
        await self.client.aclose()


class Serving:
    """The post-import steps of one target."""

    def __init__(
        self,
        plan: Plan,
        target: DatabrainClient,
        *,
        target_app: DataAppClient | None = None,
        source_embeds: SourceEmbeds | None = None,
    ) -> None:
        self.plan = plan
        self.workspace = plan.target.workspace
        self.target = target
        self.target_app = target_app
        self.source_embeds = source_embeds
        self._existing: asyncio.Future[list[Embed]] | None = None

    @classmethod
    async def for_target(
        cls,
        plan: Plan,
        policy: ConnectionPolicy,
        pacer: Pacer,
        source_embeds: SourceEmbeds | None,
    ) -> Serving:
        """The steps `plan` (one target's view) asks for, with clients paced by `pacer`;
        AuthError when a credential is missing."""
        target = open_client(plan.target, policy=policy, pacer=pacer)
        app = None
        mirror = plan.settings.embeds is EmbedsMode.MIRROR
        if mirror and plan.target.data_app is not None:
            try:
                app = open_data_app(plan.target, policy=policy, pacer=pacer)
            except Exception:
                await target.aclose()
                raise
        serving = cls(plan, target, target_app=app, source_embeds=source_embeds if mirror else None)
        if app is not None:
            try:
                # A bad data-app key makes the target unusable before its first import, not
                # after it (a dashboard imported but never served).
                await serving._listing()
            except Exception:
                await serving.aclose()
                raise
        return serving

    async def after_import(
        self, item: PlannedDashboard, data: Any, replaced: bool = False
    ) -> tuple[EmbedList, ErrorInfo | None]:
        """Rebind the filters of the dashboard just imported, then mirror its embeds (`replaced`:
        its embeds were just re-created, so the data app is listed again). `data` is the copy's
        `data`, or its compact JSON text, parsed only when a step needs it."""
        try:
            if isinstance(data, bytes) and not may_need_rebinding(
                data, item.schema_pairs, self.plan.settings.filter_bindings
            ):
                data = _LazyData(data, item.target_id)
            else:
                data = await self._rebind(item, _parsed(data, item.target_id))
            embeds = await self._mirror(item, data, fresh=replaced)
        except EndpointError as exc:
            return (), ErrorInfo(exc.error_code, f"imported, but not served: {exc.message}")
        except _NotServed as exc:
            return (), exc.info
        return embeds, None

    async def _rebind(self, item: PlannedDashboard, data: Any) -> Any:
        """Rebind what needs it; returns the workspace's copy (`data`) as it is now."""
        wanted = plan_rebindings(
            data, item.target_id, item.schema_pairs, self.plan.settings.filter_bindings
        )
        if not wanted:
            return data
        await self.target.rebind_filters(self.workspace, wanted)
        # Unmatched labels are silently ignored by the API: only a read-back tells.
        copy = await self.target.export_dashboard(self.workspace, item.target_id)
        missing = unapplied(copy.data, wanted)
        if missing:
            raise _NotServed(
                ErrorInfo(
                    "FILTER_REBIND",
                    f"filters {', '.join(missing)} are still bound to the source's columns after"
                    " the rebinding",
                )
            )
        return copy.data

    async def _mirror(self, item: PlannedDashboard, data: Any, *, fresh: bool) -> EmbedList:
        if self.source_embeds is None or self.target_app is None:
            return ()
        wanted = await self.source_embeds.of(item.id)
        if not wanted:
            return ()
        if fresh:
            existing = await self.target_app.list_embeds()
        else:
            existing = await self._listing()
        # The listing names no workspace: a same-id dashboard of another workspace may have an
        # embed of that name in this data app. Only an embed whose export shows this
        # workspace's copy counts as already mirrored (docs/contract.md A7, `embeds`).
        candidates = [e for e in existing if e.dashboard_id == item.target_id]
        mine: set[str] = set()
        if candidates:
            copy = data.value() if isinstance(data, _LazyData) else data
            shown = await embeds_of(self.target_app, candidates, item.target_id, copy)
            mine = {embed.id for embed in shown}
        override = self.plan.settings.embed_access
        made: list[EmbedChange] = []
        for embed in wanted:
            present = next(
                (e for e in candidates if e.id in mine and e.name == embed.name),
                None,
            )
            if present is not None:  # a rerun: keep it, do not create a second one
                made.append(EmbedChange(present.name, present.id))
                continue
            wanted_access = {**(embed.access_settings or {}), **override}
            if holds_secret(json.dumps([embed.name, wanted_access]).encode("utf-8")):
                # A server echoing a credential into what it lists must not have it copied
                # into another data app, where everyone with access to that one can read it.
                raise _NotServed(
                    ErrorInfo("CREDENTIAL_ECHO", "a source embed holds a credential of this run")
                )
            embed_id = await self.target_app.create_embed(
                self.workspace,
                item.target_id,
                embed.name,
                embed_type=embed.type or "dashboard",
                access_settings=wanted_access,
                metric_id=embed.metric_id,
            )
            made.append(EmbedChange(embed.name, embed_id))
        return tuple(made)

    async def _listing(self) -> list[Embed]:
        """The target data app's embeds, listed once per run and shared."""
        assert self.target_app is not None
        if self._existing is None:
            self._existing = asyncio.ensure_future(self.target_app.list_embeds())
        return await asyncio.shield(self._existing)

    async def aclose(self) -> None:
        await self.target.aclose()
        if self.target_app is not None:
            await self.target_app.aclose()


class _NotServed(Exception):
    """A post-import step found the dashboard not served; carries the report's error."""

    def __init__(self, info: ErrorInfo) -> None:
        super().__init__(info.message)
        self.info = info


class _LazyData:
    """A copy's compact JSON text, parsed the first time a step asks for its `data`."""

    def __init__(self, text: bytes, target_id: str) -> None:
        self.text = text
        self.target_id = target_id
        self._value: Any = None

    def value(self) -> Any:
        if self._value is None:
            self._value = _parsed(self.text, self.target_id)
        return self._value


def _parsed(data: Any, target_id: str) -> Any:
    """`data` itself, or parsed when it is a copy's JSON text (text the tool wrote itself)."""
    if isinstance(data, bytes):
        return parse_json(data, source=f"the expected copy of {target_id}")
    return data

"""Where payloads come from: the source API, or a reviewed bundle (docs/contract.md A4)."""

from __future__ import annotations

from typing import Protocol

from migrate.client import DatabrainClient
from migrate.models import DashboardRef, ExportFile, SourceInfo
from migrate.spool import PayloadSpool


class PayloadSource(Protocol):
    """Lists and exports source dashboards."""

    async def inventory(self) -> list[DashboardRef]:
        """Every dashboard the source holds."""
        ...

    async def export(self, dashboard_id: str) -> ExportFile:
        """One dashboard's export file; raises EndpointError (or BundleError) if unavailable."""
        ...

    def describe(self) -> SourceInfo:
        """What reports say about the source (never a credential)."""
        ...


class LiveSource:
    """The source workspace, through the API."""

    def __init__(self, client: DatabrainClient, workspace: str, url: str) -> None:
        self.client = client
        self.workspace = workspace
        self.url = url

    async def inventory(self) -> list[DashboardRef]:
        """The workspace's dashboard listing."""
        return await self.client.list_dashboards(self.workspace)

    async def export(self, dashboard_id: str) -> ExportFile:
        """The export file, as the API returned it."""
        return await self.client.export_dashboard(self.workspace, dashboard_id)

    def describe(self) -> SourceInfo:
        """url and workspace."""
        return SourceInfo(self.url, self.workspace)


def held_spool(source: PayloadSource) -> PayloadSpool | None:
    """The spool a source keeps its exports in, when it keeps them (the one source a run over
    several targets shares): planning then points at those exports instead of storing them
    again per target."""
    spool = getattr(source, "spool", None)
    return spool if isinstance(spool, PayloadSpool) else None

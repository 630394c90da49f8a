"""Which embeds of a data app show one dashboard of one workspace (docs/contract.md A7).

The embed listing names a dashboard id but no workspace, and dashboard ids may repeat across
workspaces. An embed is taken as showing the workspace's dashboard only when its listing names
the id **and** its export's `data` equals the workspace's own export of that dashboard
(normalized: key order and server-minted ids aside). Embeds of a same-id dashboard with other
content in another workspace are left out. Two workspaces holding the very same content under
the same id cannot be told apart this way, which is why a replace never deletes through an
existing embed: it deletes through a temporary embed it creates with `workspaceName` (see
`migrate.replace`), and an embed still listed after that delete is kept, not re-created.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from migrate.client import DataAppClient
from migrate.diff import normalize_for_compare
from migrate.errors import EmbedNotFoundError
from migrate.models import Embed, JSONObject


@dataclass(frozen=True)
class RecordedEmbed:
    """What re-creating an embed needs: the A7 step (2) record, as the journal keeps it."""

    id: str
    name: str
    type: str
    access_settings: JSONObject
    metric_id: str | None = None

    def as_record(self) -> dict[str, Any]:
        """The journal shape."""
        return {
            "id": self.id,
            "name": self.name,
            "type": self.type,
            "access_settings": self.access_settings,
            "metric_id": self.metric_id,
        }

    @staticmethod
    def from_record(value: Any) -> RecordedEmbed | None:
        """The embed a journal record holds; None for a record that is not one."""
        if not isinstance(value, dict):
            return None
        fields = (value.get("id"), value.get("name"), value.get("type"))
        if not all(isinstance(field, str) for field in fields):
            return None
        settings = value.get("access_settings")
        metric = value.get("metric_id")
        return RecordedEmbed(
            id=str(value["id"]),
            name=str(value["name"]),
            type=str(value["type"]),
            access_settings=settings if isinstance(settings, dict) else {},
            metric_id=metric if isinstance(metric, str) else None,
        )


def same_dashboard(embed_data: Any, workspace_data: Any) -> bool:
    """True when an embed export's `data` is the workspace's export `data` of the dashboard."""
    if embed_data == workspace_data:
        return True
    return bool(normalize_for_compare(embed_data) == normalize_for_compare(workspace_data))


async def embeds_of(
    app: DataAppClient, listing: Sequence[Embed], dashboard_id: str, workspace_data: Any
) -> list[RecordedEmbed]:
    """The embeds of `listing` that show `dashboard_id` as the workspace holds it (one embed
    export each), with their access settings. An embed deleted meanwhile is left out."""
    candidates = [embed for embed in listing if embed.dashboard_id == dashboard_id]

    async def export(embed: Embed) -> RecordedEmbed | None:
        try:
            exported = await app.export_embed(embed.id)
        except EmbedNotFoundError:
            return None
        if not same_dashboard(exported.data, workspace_data):
            return None
        found = exported.embed
        return RecordedEmbed(
            id=embed.id,
            name=found.name or embed.name,
            type=found.type or embed.type or "dashboard",
            access_settings=dict(found.access_settings or {}),
            metric_id=found.metric_id or embed.metric_id,
        )

    found = await asyncio.gather(*(export(embed) for embed in candidates))
    return [embed for embed in found if embed is not None]

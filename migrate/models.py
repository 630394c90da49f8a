"""Plain data shared by the core and the sandbox: frozen dataclasses and enums, no behaviour.

`dict[str, Any]` appears only where JSON enters or leaves (payloads).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

JSONObject = dict[str, Any]

SANDBOX_SCHEME = "sandbox://"

Operation = Literal[
    "list_workspaces",
    "list_dashboards",
    "list_metrics",
    "export",
    "import",
    "list_embeds",
    "create_embed",
    "export_embed",
    "update_embed",
    "rename_embed",
    "delete_embed",
    "list_app_dashboards",
    "create_workspace",
    "list_datasources",
    "rebind_filters",
]
"""The documented calls, by the names the client's retry policy and the sandbox's request log
both use."""


@dataclass(frozen=True)
class SchemaPair:
    """Rewrite schema name `replace` (source) to `target` in SQL and structured fields."""

    replace: str
    target: str


@dataclass(frozen=True)
class DataApp:
    """A data app by name, and where its API key lives (env var or owner-only file, never the
    key itself). Embed calls authenticate with this key, not the service token (A7)."""

    name: str
    key_env: str | None = None
    key_file: str | None = None


@dataclass(frozen=True)
class Endpoint:
    """One side of a migration: where the API is, which workspace, where the token lives."""

    url: str
    workspace: str
    token_env: str | None = None
    token_file: str | None = None
    data_app: DataApp | None = None

    @property
    def is_sandbox(self) -> bool:
        """True for the embedded `sandbox://NAME` default."""
        return self.url.startswith(SANDBOX_SCHEME)

    def describe(self) -> dict[str, str]:
        """What reports say about this endpoint: url and workspace, never a credential."""
        return {"url": self.url, "workspace": self.workspace}


class OnConflict(enum.StrEnum):
    """What to do when the target holds the id with different content."""

    SKIP = "skip"
    FAIL = "fail"
    REPLACE = "replace"  # delete and re-import through the target's data app (A7)


class Verify(enum.StrEnum):
    """How a created dashboard is confirmed: read back and compared, or not at all."""

    READBACK = "readback"
    NONE = "none"


class OnDrift(enum.StrEnum):
    """What to do when the target's copy was edited since the last deploy the history knows (A9)."""

    FAIL = "fail"  # plan and apply say `conflict`
    OVERWRITE = "overwrite"  # replace it anyway; the replace's snapshot keeps the edit
    SKIP = "skip"  # leave it


@dataclass(frozen=True)
class SourceInfo:
    """Where a run's payloads came from, as reports and saved plans say it (never a credential).

    `bundle` and `manifest_sha256` are set when the payloads came from a reviewed bundle.
    """

    url: str
    workspace: str
    bundle: str | None = None
    manifest_sha256: str | None = None

    def as_dict(self) -> dict[str, str]:
        """The report shape: url and workspace, plus bundle and manifest_sha256 when set."""
        described = {"url": self.url, "workspace": self.workspace}
        if self.bundle is not None:
            described["bundle"] = self.bundle
        if self.manifest_sha256 is not None:
            described["manifest_sha256"] = self.manifest_sha256
        return described


class EmbedsMode(enum.StrEnum):
    """What happens to the embeds of a dashboard that is created in a target (A8)."""

    NONE = "none"
    MIRROR = "mirror"


@dataclass(frozen=True)
class FilterBindingRule:
    """Rebind filters applied on column `source` (schema.table.column) to column `target`."""

    source: ColumnRef
    target: ColumnRef


@dataclass(frozen=True)
class Settings:
    """Plan-wide settings (docs/contract.md A2).

    These defaults are the only ones: the plan loader takes them from here, and tests hold the
    plan schema's `default` values and docs/plan-reference.md to them.
    """

    concurrency: int = 8
    on_conflict: OnConflict = OnConflict.SKIP
    on_drift: OnDrift = OnDrift.FAIL
    id_prefix: str = ""
    id_suffix: str = ""
    schema_pairs: tuple[SchemaPair, ...] = ()
    infer_dependencies: bool = True
    compare_ignore: tuple[str, ...] = ()
    payload_schema: str | None = None
    max_rps: float | None = None
    embeds: EmbedsMode = EmbedsMode.NONE
    # A partial `accessSettings` object laid over each mirrored embed's own (usually per target).
    embed_access: JSONObject = field(default_factory=dict)
    filter_bindings: tuple[FilterBindingRule, ...] = ()
    # `none` saves one request per created dashboard (a third under a tight rate limit); a copy
    # created by someone else is still compared, since that decides its result.
    verify: Verify = Verify.READBACK


@dataclass(frozen=True)
class DashboardSpec:
    """One entry of a plan's `dashboards:` list: either `id` or `match` is set."""

    id: str | None = None
    match: str | None = None
    target_id: str | None = None
    name: str | None = None
    depends_on: tuple[str, ...] = ()
    schema_pairs: tuple[SchemaPair, ...] = ()
    line: int | None = None


@dataclass(frozen=True)
class Plan:
    """A loaded, validated migration plan."""

    target: Endpoint
    source: Endpoint | None = None
    settings: Settings = field(default_factory=Settings)
    dashboards: tuple[DashboardSpec, ...] = ()
    path: str = "<plan>"
    digest: str = ""  # sha256 of the plan file's bytes: keys journals and saved plans
    # depends_on names that are no explicit `id:` entry in a plan that also has `match:` entries:
    # they may name a matched dashboard, so only the source inventory can confirm them.
    deferred_depends_on: tuple[str, ...] = ()
    # A plan with `targets:` (A8): one single-target view per named target, in plan order, and
    # the waves they run in. `target` is then the first view's target, for code that needs one.
    targets: tuple[NamedTarget, ...] = ()
    waves: tuple[tuple[str, ...], ...] = ()


@dataclass(frozen=True)
class NamedTarget:
    """One of a plan's `targets:`: its name, its single-target view of the plan (settings
    merged: the target's `settings` keys over the plan's), and the workspace to create when
    it is missing."""

    name: str
    plan: Plan
    create_workspace: WorkspaceBinding | None = None


@dataclass(frozen=True)
class ConnectionPolicy:
    """Process-wide connection settings from global flags."""

    state_dir: Path = Path(".migrate")
    allow_insecure_http: bool = False
    ca_bundle: Path | None = None
    # --max-wait: the longest wait a server may announce (Retry-After, resets, pacing) before
    # the run stops with exit 5 instead of waiting.
    max_wait_s: float = 300.0


@dataclass(frozen=True)
class DashboardRef:
    """A dashboard as a workspace listing shows it."""

    id: str
    name: str


@dataclass(frozen=True)
class MetricRef:
    """A metric as a workspace listing shows it."""

    id: str
    name: str


@dataclass(frozen=True)
class ExportFile:
    """An export exactly as the API returned it (`raw`) and parsed (`document`: `_meta`, `data`)."""

    raw: bytes
    document: JSONObject

    @property
    def data(self) -> JSONObject:
        """The `importDashboardData` part."""
        value = self.document.get("data")
        return value if isinstance(value, dict) else {}


@dataclass(frozen=True)
class ImportResult:
    """What a successful import said; fields are None under the older `{"data": []}` shape."""

    dashboard_id: str
    message: str | None = None
    name: str | None = None
    attempts: int = 1


class Action(enum.StrEnum):
    """What `plan` says apply would do with a dashboard (A3)."""

    CREATE = "create"
    UPDATE = "update"
    UNCHANGED = "unchanged"
    SKIP = "skip"
    CONFLICT = "conflict"
    INVALID = "invalid"
    BLOCKED = "blocked"


class Result(enum.StrEnum):
    """What `apply` did with a dashboard (A3)."""

    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    SKIPPED = "skipped"
    CONFLICT = "conflict"
    INVALID = "invalid"
    FAILED = "failed"
    BLOCKED = "blocked"

    @property
    def ok(self) -> bool:
        """True for the results that let apply exit 0."""
        return self in (Result.CREATED, Result.UPDATED, Result.UNCHANGED, Result.SKIPPED)


# ---- embeds, data apps and target workspaces (docs/contract.md A7, A8) ----------------------


@dataclass(frozen=True)
class Embed:
    """An embed of a data app: what a host application renders, addressed by its `id`.

    `id` is minted by the server: read it from an answer, never construct it. `type` is
    "dashboard" or "metric" (kept as the server's string). `access_settings` is known only
    from an embed export (the listing does not carry it): None when not read.
    """

    id: str
    name: str
    type: str
    dashboard_id: str
    access_settings: JSONObject | None = None
    metric_id: str | None = None
    dashboard_name: str = ""


@dataclass(frozen=True)
class EmbedExport(ExportFile):
    """An embed export as the API returned it: the embed (with its access settings) besides
    the file (`data`, as in a dashboard export)."""

    embed: Embed = field(kw_only=True)


@dataclass(frozen=True)
class EmbedChange:
    """One embed of a dashboard as the report gives it: `embed_id` now (None when it could not
    be re-created), `previous_embed_id` before a replace (None for an embed newly mirrored)."""

    name: str
    embed_id: str | None
    previous_embed_id: str | None = None

    @property
    def changed(self) -> bool:
        """True when a host application rendering the previous id must be updated."""
        return self.previous_embed_id is not None and self.embed_id != self.previous_embed_id

    def as_dict(self) -> dict[str, str | None]:
        """The A7 report shape."""
        return {
            "name": self.name,
            "embed_id": self.embed_id,
            "previous_embed_id": self.previous_embed_id,
        }


@dataclass(frozen=True)
class DataAppDashboard:
    """A dashboard a data app embeds, with the embed id that shows it."""

    id: str
    name: str
    embed_id: str


class ConnectionType(enum.StrEnum):
    """What a workspace's metrics run against."""

    DATASOURCE = "DATASOURCE"
    DATAMART = "DATAMART"
    MULTI_DATASOURCE = "MULTI_DATASOURCE"
    MULTI_DATAMART = "MULTI_DATAMART"

    @property
    def uses_datamart(self) -> bool:
        """True when the connection is named by `datamartName` rather than `datasourceName`."""
        return self in (ConnectionType.DATAMART, ConnectionType.MULTI_DATAMART)


@dataclass(frozen=True)
class WorkspaceBinding:
    """The datasource or datamart (`name`, by `connection_type`) a workspace is bound to."""

    connection_type: ConnectionType
    name: str


@dataclass(frozen=True)
class ColumnRef:
    """One column a filter applies to: `schema.table.column`, with its data type if known."""

    schema: str
    table: str
    column: str
    data_type: str | None = None


@dataclass(frozen=True)
class FilterRebinding:
    """Rebind the filter labelled `filter_name` of dashboard `dashboard_id` to `apply_on`."""

    dashboard_id: str
    filter_name: str
    apply_on: tuple[ColumnRef, ...]

"""Plain data shared by the core and the sandbox: frozen dataclasses and enums, no behaviour.

`dict[str, Any]` appears only where JSON enters or leaves (payloads).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

JSONObject = dict[str, Any]

SANDBOX_SCHEME = "sandbox://"


@dataclass(frozen=True)
class SchemaPair:
    """Rewrite schema name `replace` (source) to `target` in SQL and structured fields."""

    replace: str
    target: str


@dataclass(frozen=True)
class Endpoint:
    """One side of a migration: where the API is, which workspace, where the token lives."""

    url: str
    workspace: str
    token_env: str | None = None
    token_file: str | None = None

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


@dataclass(frozen=True)
class Settings:
    """Plan-wide settings (docs/contract.md A2); defaults are the contract's."""

    concurrency: int = 8
    on_conflict: OnConflict = OnConflict.SKIP
    id_prefix: str = ""
    id_suffix: str = ""
    schema_pairs: tuple[SchemaPair, ...] = ()
    infer_dependencies: bool = True
    compare_ignore: tuple[str, ...] = ()
    payload_schema: str | None = None
    max_rps: float | None = None


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


@dataclass(frozen=True)
class ConnectionPolicy:
    """Process-wide connection settings from global flags."""

    state_dir: Path = Path(".migrate")
    allow_insecure_http: bool = False
    ca_bundle: Path | None = None


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
    UNCHANGED = "unchanged"
    SKIP = "skip"
    CONFLICT = "conflict"
    INVALID = "invalid"
    BLOCKED = "blocked"


class Result(enum.StrEnum):
    """What `apply` did with a dashboard (A3)."""

    CREATED = "created"
    UNCHANGED = "unchanged"
    SKIPPED = "skipped"
    CONFLICT = "conflict"
    INVALID = "invalid"
    FAILED = "failed"
    BLOCKED = "blocked"

    @property
    def ok(self) -> bool:
        """True for the results that let apply exit 0."""
        return self in (Result.CREATED, Result.UNCHANGED, Result.SKIPPED)

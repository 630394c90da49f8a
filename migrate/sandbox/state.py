"""`Sandbox`: the state behind one sandbox app, and what tests inspect without HTTP.

It owns the SQLite store, the runtime fault knobs (`faults`), the server behaviours (`modes`)
and the statistics: committed writes, a log of every request, and concurrency peaks. It also
mints embed ids, which clients must read from answers, never construct.
"""

from __future__ import annotations

import hmac
import secrets
import string
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Literal

from migrate.models import JSONObject, Operation
from migrate.sandbox.config import SandboxConfig
from migrate.sandbox.faults import Faults, RateLimiter
from migrate.sandbox.store import Store

RequestKind = Operation | Literal["unknown"]
EmbedIdScheme = Literal["suffix", "uuid"]
_ID_ALPHABET = string.ascii_letters + string.digits


@dataclass(frozen=True)
class RequestRecord:
    """One finished request. Times are `time.monotonic()` seconds; `dropped` marks a cut reply.

    `workspace` and `dashboard_id` come from the request (body or query) when readable, so a
    request refused before its handler ran (429, injected 5xx) still names its dashboard; an
    import without `dashboardId` logs the id the server generated.
    """

    method: str
    path: str
    kind: RequestKind
    workspace: str | None
    dashboard_id: str | None
    status: int
    started: float
    finished: float
    dropped: bool = False

    @property
    def duration(self) -> float:
        """Seconds from arrival to the end of the response (or the cut)."""
        return self.finished - self.started


@dataclass
class Modes:
    """How the server behaves where the real API is undocumented; settable at runtime."""

    remint_ids: bool = False
    company_unique_ids: bool = False
    legacy_import_response: bool = False
    mint_dashboard_ids: bool = False  # ignore the requested dashboardId, answer our own
    no_duplicate_refusal: bool = False  # a second import under an id stores a second copy
    remint_other_ids: bool = False  # re-mint metric datasourceIds and filter ids on import
    # schemaPairs rewrite SQL text only; filter bindings and schemaName fields keep the source's.
    schema_pairs_sql_only: bool = False
    # "suffix": `<dashboardId>__<8 random characters>`, the shape Databrain's own demos show;
    # "uuid": a random UUID. Either way unpredictable, so only a client that reads embed ids
    # from answers works.
    embed_ids: EmbedIdScheme = "suffix"


class Sandbox:
    """A sandbox's data, knobs and statistics; `create_app` puts one on `app.state.sandbox`."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.store = Store(config.db_path)
        self.faults = Faults(
            latency_ms=config.latency_ms,
            fail_rate=config.fail_rate,
            drop_rate=config.drop_rate,
            rate_limit=config.rate_limit,
            retry_after_http_date=config.retry_after_http_date,
            rate_headers=config.rate_headers,
            rate_mode=config.rate_mode,
            retry_after_s=config.retry_after_s,
            rate_header_override=dict(config.rate_header_override),
            slow_body_bps=config.slow_body_bps,
            endless_pages=config.endless_pages,
            listing_lag=config.listing_lag,
            refuse_after_store_rate=config.refuse_after_store_rate,
            echo_credentials=config.echo_credentials,
            random_seed=config.random_seed,
        )
        self.modes = Modes(
            remint_ids=config.remint_ids,
            company_unique_ids=config.company_unique_ids,
            legacy_import_response=config.legacy_import_response,
            mint_dashboard_ids=config.mint_dashboard_ids,
            no_duplicate_refusal=config.no_duplicate_refusal,
            remint_other_ids=config.remint_other_ids,
            schema_pairs_sql_only=config.schema_pairs_sql_only,
            embed_ids="uuid" if config.embed_ids == "uuid" else "suffix",
        )
        self.rate_limiter = RateLimiter()
        self._stats_lock = threading.Lock()
        self.write_count = 0
        self.request_log: list[RequestRecord] = []
        self.in_flight = 0
        self.max_in_flight = 0
        if config.seed == "demo":
            # Imported here: seed builds on Sandbox-shaped targets and would otherwise cycle.
            from migrate.sandbox.seed import seed_demo  # noqa: PLC0415

            seed_demo(self.store)
        for name, key in config.data_apps:
            self.store.put_data_app(name, key)

    # -- statistics -------------------------------------------------------------------------

    def reset_stats(self) -> None:
        """Zero the write count and request log; the in-flight peak restarts from now."""
        with self._stats_lock:
            self.write_count = 0
            self.request_log = []
            self.max_in_flight = self.in_flight
        self.rate_limiter.reset()

    def request_started(self) -> float:
        """Count a request in; returns its start time."""
        with self._stats_lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        return time.monotonic()

    def request_finished(self, record: RequestRecord) -> None:
        """Count a request out and log it."""
        with self._stats_lock:
            self.in_flight -= 1
            self.request_log.append(record)

    def write_committed(self) -> None:
        """Count one committed import."""
        with self._stats_lock:
            self.write_count += 1

    def requests(
        self, kind: RequestKind | None = None, dashboard_id: str | None = None
    ) -> list[RequestRecord]:
        """The logged requests, optionally only one kind and/or one dashboard."""
        with self._stats_lock:
            log = list(self.request_log)
        return [
            r
            for r in log
            if (kind is None or r.kind == kind)
            and (dashboard_id is None or r.dashboard_id == dashboard_id)
        ]

    # -- direct data access (no HTTP, not counted as writes) --------------------------------

    def workspaces(self) -> list[str]:
        """Workspace names in creation order."""
        return self.store.workspaces()

    def add_workspace(self, name: str) -> None:
        """Create a workspace unless it exists."""
        self.store.add_workspace(name)

    def put_dashboard(self, workspace: str, dashboard_id: str, name: str, data: JSONObject) -> None:
        """Insert a dashboard directly (creating the workspace if needed); ValueError if taken."""
        self.store.add_workspace(workspace)
        if not self.store.insert_dashboard(workspace, dashboard_id, name, data):
            raise ValueError(f"dashboard {dashboard_id!r} already exists in {workspace!r}")

    def get_dashboard(self, workspace: str, dashboard_id: str) -> JSONObject | None:
        """The stored `data` of a dashboard, or None."""
        return self.store.get_dashboard(workspace, dashboard_id)

    def update_dashboard(self, workspace: str, dashboard_id: str, data: JSONObject) -> None:
        """Replace a dashboard's `data`, as a user editing it would; KeyError if absent."""
        self.store.update_dashboard(workspace, dashboard_id, data)

    def list_dashboards(self, workspace: str) -> list[tuple[str, str]]:
        """`(id, name)` of every dashboard in the workspace, in listing order."""
        return self.store.list_dashboards(workspace)

    # -- data apps and embeds -----------------------------------------------------------------

    def data_app_for_key(self, api_key: str) -> str | None:
        """The name of the data app whose API key this is, or None; constant time per app."""
        found = None
        for name, key in self.store.data_app_keys():
            if hmac.compare_digest(api_key.encode(), key.encode()):
                found = name
        return found

    def add_data_app(self, name: str, api_key: str) -> None:
        """Create a data app (or give it a new key)."""
        self.store.put_data_app(name, api_key)

    def mint_embed_id(self, dashboard_id: str) -> str:
        """A fresh embed id in the current scheme, unused by any data app."""
        while True:
            if self.modes.embed_ids == "uuid":
                embed_id = str(uuid.uuid4())
            else:
                suffix = "".join(secrets.choice(_ID_ALPHABET) for _ in range(8))
                embed_id = f"{dashboard_id}__{suffix}"
            if not self.store.has_embed(embed_id):
                return embed_id

    def embed_ids(self, data_app: str) -> list[str]:
        """Ids of a data app's embeds, in creation order."""
        return [row.id for row in self.store.list_embeds(data_app)]

    def workspace_binding(self, workspace: str) -> tuple[str, str] | None:
        """`(connectionType, datasource or datamart name)` of a workspace, or None."""
        return self.store.workspace_binding(workspace)

    def close(self) -> None:
        """Release the database."""
        self.store.close()

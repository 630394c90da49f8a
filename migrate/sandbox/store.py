"""SQLite persistence for the sandbox: workspaces, dashboards (data kept as JSON text), the
metrics derived from each dashboard's `data`, data apps and their embeds, datasources and
datamarts, and the connection each workspace is bound to.

One connection guarded by a lock serves the event loop and any test thread; file databases run
in WAL mode and every write is one transaction, so a crash leaves either the whole import or
nothing. Order is insertion order (`position`), which is what listings promise.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from migrate.models import JSONObject
from migrate.sandbox import codec

_SCHEMA = """
CREATE TABLE IF NOT EXISTS workspaces (
    name     TEXT PRIMARY KEY,
    position INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS dashboards (
    workspace TEXT NOT NULL REFERENCES workspaces(name),
    id        TEXT NOT NULL,
    name      TEXT NOT NULL,
    data      TEXT NOT NULL,
    position  INTEGER NOT NULL,
    PRIMARY KEY (workspace, id)
);
CREATE INDEX IF NOT EXISTS dashboards_by_id ON dashboards(id);
-- Covers the listing query: without it, reading `position` walks each row's `data` overflow
-- pages (~50 per 200 KB payload), and a page of a 1000-dashboard listing cost ~170 ms.
CREATE INDEX IF NOT EXISTS dashboards_listing ON dashboards(workspace, position, id, name);
CREATE TABLE IF NOT EXISTS metrics (
    workspace    TEXT NOT NULL,
    dashboard_id TEXT NOT NULL,
    metric_id    TEXT NOT NULL,
    name         TEXT NOT NULL,
    position     INTEGER NOT NULL,
    PRIMARY KEY (workspace, dashboard_id, position)
);
-- Tables below came with the embed calls; new tables (never new columns) keep databases
-- written by earlier versions usable.
CREATE TABLE IF NOT EXISTS data_apps (
    name     TEXT PRIMARY KEY,
    api_key  TEXT NOT NULL,
    position INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS embeds (
    id              TEXT PRIMARY KEY,
    data_app        TEXT NOT NULL,
    workspace       TEXT NOT NULL,
    dashboard_id    TEXT NOT NULL,
    name            TEXT NOT NULL,
    type            TEXT NOT NULL,
    metric_id       TEXT,
    access_settings TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    position        INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS embeds_by_dashboard ON embeds(workspace, dashboard_id);
CREATE TABLE IF NOT EXISTS connections (
    kind     TEXT NOT NULL,  -- 'datasource' | 'datamart'
    name     TEXT NOT NULL,
    position INTEGER NOT NULL,
    PRIMARY KEY (kind, name)
);
-- Second copies stored under an existing id by a server without the duplicate refusal.
CREATE TABLE IF NOT EXISTS dashboard_copies (
    workspace TEXT NOT NULL,
    id        TEXT NOT NULL,
    name      TEXT NOT NULL,
    data      TEXT NOT NULL,
    position  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS workspace_bindings (
    workspace       TEXT PRIMARY KEY,
    connection_type TEXT NOT NULL,
    connection_name TEXT NOT NULL
);
"""


def dump_data(data: JSONObject) -> str:
    """The stored text of a payload: compact, key order kept, non-ASCII kept as is."""
    return codec.dumps(data)


def metric_rows(data: JSONObject) -> list[tuple[str, str]]:
    """`(metricId, name)` of each metric object in `data["metrics"]`, tolerating odd shapes."""
    metrics = data.get("metrics")
    rows: list[tuple[str, str]] = []
    if not isinstance(metrics, list):
        return rows
    for metric in metrics:
        if not isinstance(metric, dict):
            continue
        metric_id = metric.get("metricId", metric.get("id"))
        if metric_id is None:
            continue
        name = metric.get("name")
        rows.append((str(metric_id), name if isinstance(name, str) else str(metric_id)))
    return rows


@dataclass(frozen=True)
class EmbedRow:
    """One stored embed; `access_settings` is the JSON text of its accessSettings object."""

    id: str
    data_app: str
    workspace: str
    dashboard_id: str
    name: str
    type: str
    metric_id: str | None
    access_settings: str
    created_at: str
    updated_at: str
    dashboard_name: str = ""  # filled in by reads, from the dashboards table


@dataclass(frozen=True)
class FilterBinding:
    """A rebinding request for one filter label of one dashboard: the new `applyOnTables`."""

    dashboard_id: str
    label: str
    apply_on_tables: tuple[JSONObject, ...]


_EMBED_COLUMNS = (
    "e.id, e.data_app, e.workspace, e.dashboard_id, e.name, e.type, e.metric_id,"
    " e.access_settings, e.created_at, e.updated_at, COALESCE(d.name, '')"
)
_EMBED_FROM = (
    "FROM embeds e LEFT JOIN dashboards d ON d.workspace = e.workspace AND d.id = e.dashboard_id"
)


class Store:
    """The sandbox's tables. Methods are synchronous and thread-safe; each write commits once."""

    def __init__(self, db_path: str | Path) -> None:
        self.db_path = str(db_path)
        # check_same_thread=False: a uvicorn thread and a test thread share this connection,
        # serialized by self._lock.
        self._conn = sqlite3.connect(self.db_path, check_same_thread=False, isolation_level=None)
        self._lock = threading.RLock()
        with self._lock:
            if self.db_path != ":memory:":
                self._conn.execute("PRAGMA journal_mode=WAL")
                # In WAL mode NORMAL survives a killed process (what the fault tests do);
                # only a power cut could lose the last commits.
                self._conn.execute("PRAGMA synchronous=NORMAL")
                self._conn.execute("PRAGMA busy_timeout=5000")
            self._conn.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the connection; the file keeps every committed write."""
        with self._lock:
            self._conn.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    # -- workspaces -------------------------------------------------------------------------

    def add_workspace(self, name: str) -> bool:
        """Create a workspace; False (and no change) when it exists."""
        with self._transaction() as conn:
            if conn.execute("SELECT 1 FROM workspaces WHERE name = ?", (name,)).fetchone():
                return False
            conn.execute(
                "INSERT INTO workspaces (name, position)"
                " SELECT ?, COALESCE(MAX(position), 0) + 1 FROM workspaces",
                (name,),
            )
            return True

    def workspaces(self, *, limit: int = -1, offset: int = 0) -> list[str]:
        """Workspace names in creation order; SQLite's LIMIT -1 means no limit."""
        rows = self._query(
            "SELECT name FROM workspaces ORDER BY position LIMIT ? OFFSET ?", (limit, offset)
        )
        return [row[0] for row in rows]

    def has_workspace(self, name: str) -> bool:
        """Exact, case-sensitive match (SQLite's default BINARY collation)."""
        return bool(self._query("SELECT 1 FROM workspaces WHERE name = ?", (name,)))

    # -- dashboards -------------------------------------------------------------------------

    def list_dashboards(
        self, workspace: str, *, limit: int = -1, offset: int = 0
    ) -> list[tuple[str, str]]:
        """`(id, name)` of a workspace's dashboards in insertion order (second copies too)."""
        if self._query("SELECT 1 FROM dashboard_copies LIMIT 1"):
            rows = self._query(
                "SELECT id, name, position FROM dashboards WHERE workspace = ? UNION ALL"
                " SELECT id, name, position FROM dashboard_copies WHERE workspace = ?"
                " ORDER BY position LIMIT ? OFFSET ?",
                (workspace, workspace, limit, offset),
            )
            return [(row[0], row[1]) for row in rows]
        rows = self._query(
            "SELECT id, name FROM dashboards WHERE workspace = ?"
            " ORDER BY position LIMIT ? OFFSET ?",
            (workspace, limit, offset),
        )
        return [(row[0], row[1]) for row in rows]

    def list_metrics(
        self, workspace: str, *, limit: int = -1, offset: int = 0
    ) -> list[tuple[str, str]]:
        """`(metricId, name)` of every metric of the workspace's dashboards, in dashboard order."""
        rows = self._query(
            "SELECT m.metric_id, m.name FROM metrics m JOIN dashboards d"
            " ON d.workspace = m.workspace AND d.id = m.dashboard_id"
            " WHERE m.workspace = ? ORDER BY d.position, m.position LIMIT ? OFFSET ?",
            (workspace, limit, offset),
        )
        return [(row[0], row[1]) for row in rows]

    def dashboard_text(self, workspace: str, dashboard_id: str) -> str | None:
        """The stored JSON text of a dashboard's `data`, or None."""
        rows = self._query(
            "SELECT data FROM dashboards WHERE workspace = ? AND id = ?", (workspace, dashboard_id)
        )
        return str(rows[0][0]) if rows else None

    def get_dashboard(self, workspace: str, dashboard_id: str) -> JSONObject | None:
        """The stored `data` of a dashboard, parsed, or None."""
        text = self.dashboard_text(workspace, dashboard_id)
        if text is None:
            return None
        data: JSONObject = codec.loads(text)
        return data

    def insert_dashboard(
        self,
        workspace: str,
        dashboard_id: str,
        name: str,
        data: JSONObject,
        *,
        company_unique: bool = False,
        duplicates: bool = False,
    ) -> bool:
        """Create a dashboard and its metric rows in one transaction; never overwrites.

        False, with nothing written, when the id exists in the workspace (or anywhere, when
        `company_unique`); with `duplicates` a second copy is stored instead (listings show
        the id twice, export by id still finds the first). KeyError when the workspace does
        not exist.
        """
        text = dump_data(data)
        with self._transaction() as conn:
            if not conn.execute("SELECT 1 FROM workspaces WHERE name = ?", (workspace,)).fetchone():
                raise KeyError(workspace)
            if company_unique:
                clash = conn.execute("SELECT 1 FROM dashboards WHERE id = ?", (dashboard_id,))
            else:
                clash = conn.execute(
                    "SELECT 1 FROM dashboards WHERE workspace = ? AND id = ?",
                    (workspace, dashboard_id),
                )
            if clash.fetchone():
                if not duplicates:
                    return False
                conn.execute(
                    "INSERT INTO dashboard_copies (workspace, id, name, data, position)"
                    " SELECT ?, ?, ?, ?, MAX((SELECT COALESCE(MAX(position), 0) FROM dashboards),"
                    " COALESCE(MAX(position), 0)) + 1 FROM dashboard_copies",
                    (workspace, dashboard_id, name, text),
                )
                return True
            conn.execute(
                "INSERT INTO dashboards (workspace, id, name, data, position)"
                " SELECT ?, ?, ?, ?, COALESCE(MAX(position), 0) + 1 FROM dashboards",
                (workspace, dashboard_id, name, text),
            )
            self._write_metrics(conn, workspace, dashboard_id, data)
            return True

    def update_dashboard(
        self, workspace: str, dashboard_id: str, data: JSONObject, *, name: str | None = None
    ) -> None:
        """Replace a dashboard's `data` in place (a user editing it); KeyError when absent."""
        text = dump_data(data)
        with self._transaction() as conn:
            if name is None:
                cursor = conn.execute(
                    "UPDATE dashboards SET data = ? WHERE workspace = ? AND id = ?",
                    (text, workspace, dashboard_id),
                )
            else:
                cursor = conn.execute(
                    "UPDATE dashboards SET data = ?, name = ? WHERE workspace = ? AND id = ?",
                    (text, name, workspace, dashboard_id),
                )
            if cursor.rowcount == 0:
                raise KeyError(f"{workspace}/{dashboard_id}")
            conn.execute(
                "DELETE FROM metrics WHERE workspace = ? AND dashboard_id = ?",
                (workspace, dashboard_id),
            )
            self._write_metrics(conn, workspace, dashboard_id, data)

    @staticmethod
    def _write_metrics(
        conn: sqlite3.Connection, workspace: str, dashboard_id: str, data: JSONObject
    ) -> None:
        conn.executemany(
            "INSERT INTO metrics (workspace, dashboard_id, metric_id, name, position)"
            " VALUES (?, ?, ?, ?, ?)",
            [
                (workspace, dashboard_id, metric_id, name, index)
                for index, (metric_id, name) in enumerate(metric_rows(data))
            ],
        )

    # -- data apps and embeds ---------------------------------------------------------------

    def put_data_app(self, name: str, api_key: str) -> None:
        """Create a data app, or give an existing one a new API key."""
        with self._transaction() as conn:
            updated = conn.execute(
                "UPDATE data_apps SET api_key = ? WHERE name = ?", (api_key, name)
            ).rowcount
            if not updated:
                conn.execute(
                    "INSERT INTO data_apps (name, api_key, position)"
                    " SELECT ?, ?, COALESCE(MAX(position), 0) + 1 FROM data_apps",
                    (name, api_key),
                )

    def data_app_keys(self) -> list[tuple[str, str]]:
        """`(name, api_key)` of every data app, in creation order."""
        rows = self._query("SELECT name, api_key FROM data_apps ORDER BY position")
        return [(row[0], row[1]) for row in rows]

    def has_embed(self, embed_id: str) -> bool:
        """True when any data app holds an embed with this id."""
        return bool(self._query("SELECT 1 FROM embeds WHERE id = ?", (embed_id,)))

    def insert_embed(self, row: EmbedRow) -> bool:
        """Store a new embed; False (nothing written) when its id or its dashboard is unknown."""
        with self._transaction() as conn:
            if conn.execute("SELECT 1 FROM embeds WHERE id = ?", (row.id,)).fetchone():
                return False
            if not conn.execute(
                "SELECT 1 FROM dashboards WHERE workspace = ? AND id = ?",
                (row.workspace, row.dashboard_id),
            ).fetchone():
                return False
            conn.execute(
                "INSERT INTO embeds (id, data_app, workspace, dashboard_id, name, type, metric_id,"
                " access_settings, created_at, updated_at, position)"
                " SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, COALESCE(MAX(position), 0) + 1 FROM embeds",
                (row.id, row.data_app, row.workspace, row.dashboard_id, row.name, row.type,
                 row.metric_id, row.access_settings, row.created_at, row.updated_at),
            )  # fmt: skip
            return True

    @staticmethod
    def _embed(row: tuple[Any, ...]) -> EmbedRow:
        return EmbedRow(*row)

    def list_embeds(self, data_app: str, *, limit: int = -1, offset: int = 0) -> list[EmbedRow]:
        """A data app's embeds in creation order."""
        rows = self._query(
            f"SELECT {_EMBED_COLUMNS} {_EMBED_FROM} WHERE e.data_app = ?"
            " ORDER BY e.position LIMIT ? OFFSET ?",
            (data_app, limit, offset),
        )
        return [self._embed(row) for row in rows]

    def list_dashboard_embeds(self, workspace: str, dashboard_id: str) -> list[EmbedRow]:
        """Every embed of one dashboard, whichever data app holds it."""
        rows = self._query(
            f"SELECT {_EMBED_COLUMNS} {_EMBED_FROM}"
            " WHERE e.workspace = ? AND e.dashboard_id = ? ORDER BY e.position",
            (workspace, dashboard_id),
        )
        return [self._embed(row) for row in rows]

    def get_embed(self, data_app: str, embed_id: str) -> EmbedRow | None:
        """One embed of a data app, or None (another data app's embed is not visible)."""
        rows = self._query(
            f"SELECT {_EMBED_COLUMNS} {_EMBED_FROM} WHERE e.data_app = ? AND e.id = ?",
            (data_app, embed_id),
        )
        return self._embed(rows[0]) if rows else None

    def set_embed_access(
        self, data_app: str, embed_id: str, access_settings: str, now: str
    ) -> bool:
        """Replace an embed's accessSettings; False when the data app has no such embed."""
        with self._transaction() as conn:
            return (
                conn.execute(
                    "UPDATE embeds SET access_settings = ?, updated_at = ?"
                    " WHERE data_app = ? AND id = ?",
                    (access_settings, now, data_app, embed_id),
                ).rowcount
                > 0
            )

    def rename_embed(
        self, data_app: str, embed_id: str, name: str, now: str, *, rename_dashboard: bool
    ) -> bool:
        """Rename an embed (and its dashboard's listed name when asked); False when unknown."""
        with self._transaction() as conn:
            found = conn.execute(
                "SELECT workspace, dashboard_id FROM embeds WHERE data_app = ? AND id = ?",
                (data_app, embed_id),
            ).fetchone()
            if not found:
                return False
            conn.execute(
                "UPDATE embeds SET name = ?, updated_at = ? WHERE id = ?", (name, now, embed_id)
            )
            if rename_dashboard:
                conn.execute(
                    "UPDATE dashboards SET name = ? WHERE workspace = ? AND id = ?",
                    (name, found[0], found[1]),
                )
            return True

    def delete_embed(self, data_app: str, embed_id: str, *, delete_dashboard: bool) -> bool:
        """Delete an embed; with `delete_dashboard`, also its dashboard, the dashboard's metrics
        and every other embed of it (any data app), in one transaction. False when unknown."""
        with self._transaction() as conn:
            found = conn.execute(
                "SELECT workspace, dashboard_id FROM embeds WHERE data_app = ? AND id = ?",
                (data_app, embed_id),
            ).fetchone()
            if not found:
                return False
            conn.execute("DELETE FROM embeds WHERE id = ?", (embed_id,))
            if delete_dashboard:
                for table, column in (("embeds", "dashboard_id"), ("metrics", "dashboard_id"),
                                      ("dashboards", "id")):  # fmt: skip
                    conn.execute(
                        f"DELETE FROM {table} WHERE workspace = ? AND {column} = ?",  # noqa: S608  # table names are constants
                        found,
                    )
            return True

    # -- datasources, datamarts and workspace bindings --------------------------------------

    def add_connection(self, kind: str, name: str) -> None:
        """Register a datasource or datamart (`kind`) unless it exists."""
        with self._transaction() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO connections (kind, name, position)"
                " SELECT ?, ?, COALESCE(MAX(position), 0) + 1 FROM connections",
                (kind, name),
            )

    def connections(self, kind: str, *, limit: int = -1, offset: int = 0) -> list[str]:
        """Names of the datasources or datamarts (`kind`) in creation order."""
        rows = self._query(
            "SELECT name FROM connections WHERE kind = ? ORDER BY position LIMIT ? OFFSET ?",
            (kind, limit, offset),
        )
        return [row[0] for row in rows]

    def has_connection(self, kind: str, name: str) -> bool:
        """Exact, case-sensitive match of a datasource or datamart name."""
        return bool(
            self._query("SELECT 1 FROM connections WHERE kind = ? AND name = ?", (kind, name))
        )

    def bind_workspace(self, workspace: str, connection_type: str, connection_name: str) -> None:
        """Record (or replace) the connection a workspace's metrics run against."""
        with self._transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO workspace_bindings VALUES (?, ?, ?)",
                (workspace, connection_type, connection_name),
            )

    def workspace_binding(self, workspace: str) -> tuple[str, str] | None:
        """`(connection_type, connection_name)` of a workspace, or None when unbound."""
        rows = self._query(
            "SELECT connection_type, connection_name FROM workspace_bindings WHERE workspace = ?",
            (workspace,),
        )
        return (rows[0][0], rows[0][1]) if rows else None

    def create_workspace(self, name: str, connection_type: str, connection_name: str) -> bool:
        """Create a bound workspace in one transaction; False (no change) when the name is taken."""
        with self._transaction() as conn:
            if conn.execute("SELECT 1 FROM workspaces WHERE name = ?", (name,)).fetchone():
                return False
            conn.execute(
                "INSERT INTO workspaces (name, position)"
                " SELECT ?, COALESCE(MAX(position), 0) + 1 FROM workspaces",
                (name,),
            )
            conn.execute(
                "INSERT OR REPLACE INTO workspace_bindings VALUES (?, ?, ?)",
                (name, connection_type, connection_name),
            )
            return True

    def rebind_filters(self, workspace: str, bindings: list[FilterBinding]) -> int:
        """Set `applyOnTables` of the filters whose label matches, in one transaction.

        Unknown dashboards and unmatched labels are ignored, as the real API does; returns the
        number of filters changed. Metric rows are untouched: filters hold no metrics.
        """
        changed = 0
        with self._transaction() as conn:
            by_dashboard: dict[str, list[FilterBinding]] = {}
            for binding in bindings:
                by_dashboard.setdefault(binding.dashboard_id, []).append(binding)
            for dashboard_id, wanted in by_dashboard.items():
                row = conn.execute(
                    "SELECT data FROM dashboards WHERE workspace = ? AND id = ?",
                    (workspace, dashboard_id),
                ).fetchone()
                if row is None:
                    continue
                data = codec.loads(row[0])
                hits = sum(_rebind(column, wanted) for column in _filter_columns(data))
                if hits:
                    changed += hits
                    conn.execute(
                        "UPDATE dashboards SET data = ? WHERE workspace = ? AND id = ?",
                        (dump_data(data), workspace, dashboard_id),
                    )
        return changed


def _filter_columns(data: JSONObject) -> Iterator[JSONObject]:
    """The labelled filter objects of a payload: `filters[*].columns[*]` (and bare filters)."""
    filters = data.get("filters")
    if not isinstance(filters, list):
        return
    for group in filters:
        if not isinstance(group, dict):
            continue
        columns = group.get("columns")
        if isinstance(columns, list):
            yield from (column for column in columns if isinstance(column, dict))
        elif "label" in group or "name" in group:
            yield group


def _rebind(column: JSONObject, wanted: list[FilterBinding]) -> bool:
    label = column.get("label", column.get("name"))
    for binding in wanted:
        if binding.label == label:
            column["applyOnTables"] = [dict(item) for item in binding.apply_on_tables]
            return True
    return False

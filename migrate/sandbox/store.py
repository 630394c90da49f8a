"""SQLite persistence for the sandbox: workspaces, dashboards (data kept as JSON text) and the
metrics derived from each dashboard's `data`.

One connection guarded by a lock serves the event loop and any test thread; file databases run
in WAL mode and every write is one transaction, so a crash leaves either the whole import or
nothing. Order is insertion order (`position`), which is what listings promise.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from migrate.models import JSONObject

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
"""


def dump_data(data: JSONObject) -> str:
    """The stored text of a payload: compact, key order kept, non-ASCII kept as is."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


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
        """`(id, name)` of a workspace's dashboards in insertion order."""
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
        data: JSONObject = json.loads(text)
        return data

    def insert_dashboard(
        self,
        workspace: str,
        dashboard_id: str,
        name: str,
        data: JSONObject,
        *,
        company_unique: bool = False,
    ) -> bool:
        """Create a dashboard and its metric rows in one transaction; never overwrites.

        False, with nothing written, when the id exists in the workspace (or anywhere, when
        `company_unique`). KeyError when the workspace does not exist.
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
                return False
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

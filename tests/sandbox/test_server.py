"""The sandbox under a real uvicorn server on a loopback port: shapes over TCP, a dropped
connection after commit, per-IP rate limiting, and `serve`'s start-up line."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from migrate.sandbox import DEFAULT_TOKEN, Sandbox, SandboxConfig, create_app, running_server
from migrate.sandbox.server import _bind

AUTH = {"Authorization": f"Bearer {DEFAULT_TOKEN}"}


def test_real_server_endpoints(tmp_path: Path) -> None:
    """Over real HTTP: list, export and import answer the documented shapes."""
    app = create_app(SandboxConfig(tmp_path / "s.db", seed="demo"))
    with running_server(app) as url, httpx.Client(base_url=url, headers=AUTH) as client:
        assert url.startswith("http://127.0.0.1:")
        assert client.get("/api/v2/workspace").json()["data"][0] == {"name": "Sales Dev"}
        export = client.post(
            "/api/v2/data-app/export-dashboard",
            json={"dashboardId": "region-emea", "workspaceName": "Sales Dev"},
        )
        assert export.headers["content-disposition"].endswith('"dashboard-region-emea.json"')
        imported = client.post(
            "/api/v2/data-app/import-dashboard",
            json={
                "workspaceName": "Sales Staging",
                "dashboardId": "region-emea",
                "importDashboardData": export.json()["data"],
            },
        )
        assert imported.json()["data"]["response"]["dashboardName"] == "Région EMEA"
        bad = client.get("/api/v2/workspace", headers={"Authorization": "Bearer nope"})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "AUTH_ERROR"


def test_drop_cuts_a_real_connection_after_commit() -> None:
    """drop_rate=1 on a real server: the import commits, the client sees the connection die."""
    app = create_app(SandboxConfig(":memory:", seed="demo", drop_rate=1.0))
    sandbox: Sandbox = app.state.sandbox
    body = {
        "workspaceName": "Sales Prod",
        "dashboardId": "kpi-core",
        "importDashboardData": sandbox.get_dashboard("Sales Dev", "kpi-core"),
    }
    with running_server(app) as url, httpx.Client(base_url=url, headers=AUTH) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            client.post("/api/v2/data-app/import-dashboard", json=body)
        assert sandbox.list_dashboards("Sales Prod") == [("kpi-core", "Core KPIs")]
        retry = client.post("/api/v2/data-app/import-dashboard", json=body)
        assert retry.status_code == 400
        assert retry.json()["error"]["code"] == "INVALID_DASHBOARD_ID"
    assert sandbox.write_count == 1
    assert [r.dropped for r in sandbox.requests("import")] == [True, False]


def test_rate_limit_over_tcp() -> None:
    """Rate limiting keys on the real client IP and sends Retry-After over TCP."""
    app = create_app(SandboxConfig(":memory:", rate_limit=(2, 60)))
    with running_server(app) as url, httpx.Client(base_url=url, headers=AUTH) as client:
        statuses = [client.get("/api/v2/workspace").status_code for _ in range(3)]
        last = client.get("/api/v2/workspace")
    assert statuses == [200, 200, 429]
    assert last.status_code == 429 and int(last.headers["retry-after"]) > 0


def test_serve_logs_url_not_token(tmp_path: Path) -> None:
    """`serve` logs one start-up line naming the URL, never the token, and then serves."""
    token = "very-secret-token-123"
    code = (
        "from migrate.sandbox import SandboxConfig, serve; "
        f"serve(SandboxConfig({str(tmp_path / 'x.db')!r}, token={token!r}, seed='demo'), port=0)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert "http://127.0.0.1:" in line and token not in line
        url = line.split(" on ", 1)[1].split()[0]
        deadline = time.monotonic() + 10
        while True:
            try:
                r = httpx.get(
                    f"{url}/api/v2/workspace", headers={"Authorization": f"Bearer {token}"}
                )
                break
            except httpx.ConnectError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        assert r.status_code == 200 and len(r.json()["data"]) == 4
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stderr is not None:
            proc.stderr.close()  # else an unclosed pipe is left to the garbage collector


def test_connections_the_sandbox_accepts_send_small_writes_at_once() -> None:
    """A connection accepted on the sandbox's listener has Nagle's algorithm off (TCP_NODELAY),
    as asyncio sets it for TCP sockets: an answer written as a head and then a small body
    leaves at once instead of waiting ~40 ms for the client's delayed ACK."""

    async def nodelay_of_an_accepted_connection() -> int:
        listener = _bind("127.0.0.1", 0)
        seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            sock = writer.get_extra_info("socket")
            seen.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(accepted, sock=listener)
        async with server:
            _, writer = await asyncio.open_connection(*listener.getsockname()[:2])
            value = await asyncio.wait_for(seen, timeout=10)
            writer.close()
        return value

    assert asyncio.run(nodelay_of_an_accepted_connection()) != 0

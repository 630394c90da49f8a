"""The private httpcore layout that `migrate.transport` patches is still there: when a new httpcore
(or httpx) moves it, these tests fail and say what to do, instead of the cheap idle-connection
check switching itself off without a word."""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import inspect
from pathlib import Path
from urllib.parse import urlsplit

import httpcore
import httpx

from migrate.sandbox import SandboxConfig, running_server
from migrate.transport import (
    _CheapReadableBackend,
    _CheapReadableStream,
    _LinearPool,
    pooled_transport,
)

VERSIONS = f"httpx {httpx.__version__}, httpcore {httpcore.__version__}"
FIX = (
    "migrate/transport.py replaces httpcore's per-request is_readable walk with one poll(2); "
    "adapt that patch to this version, or keep httpcore below it in pyproject.toml"
)


def test_pooled_transport_installs_the_cheap_backend() -> None:
    """pooled_transport finds httpx's pool and httpcore's network backend, and wraps it."""
    transport = pooled_transport(True, httpx.Limits())
    pool = getattr(transport, "_pool", None)
    assert pool is not None, f"{VERSIONS}: AsyncHTTPTransport has no `_pool` any more. {FIX}"
    backend = getattr(pool, "_network_backend", None)
    assert isinstance(backend, _CheapReadableBackend), (
        f"{VERSIONS}: the pool's `_network_backend` is {backend!r}, so the patch is off. {FIX}"
    )


def test_httpcore_still_asks_streams_whether_they_are_readable() -> None:
    """httpcore's HTTP/1.1 connection still checks idle connections via `is_readable`, the one
    question the patched stream answers differently."""
    try:
        http11 = importlib.import_module("httpcore._async.http11")
    except ImportError as exc:  # pragma: no cover - only on an httpcore that moved it
        raise AssertionError(f"{VERSIONS}: httpcore._async.http11 is gone. {FIX}") from exc
    assert 'get_extra_info("is_readable")' in inspect.getsource(http11), (
        f"{VERSIONS}: httpcore no longer asks `is_readable`; the patch answers nothing. {FIX}"
    )


def test_patched_streams_find_their_socket_and_serve_requests(tmp_path: Path) -> None:
    """Through a real loopback server: the wrapped backend opens streams that hold their socket
    (so the cheap check is in use) and report an idle open connection as not readable; requests
    through the patched transport succeed."""
    config = SandboxConfig(db_path=tmp_path / "t.db", seed="demo", token="tk-transport")

    async def check(url: str) -> None:
        transport = pooled_transport(True, httpx.Limits())
        backend = transport._pool._network_backend  # type: ignore[attr-defined]
        parts = urlsplit(url)
        stream = await backend.connect_tcp(parts.hostname, parts.port)
        try:
            assert isinstance(stream, _CheapReadableStream)
            assert stream._socket is not None, (
                f"{VERSIONS}: network streams no longer expose get_extra_info('socket'). {FIX}"
            )
            assert stream.get_extra_info("is_readable") is False
        finally:
            await stream.aclose()
        headers = {"Authorization": "Bearer tk-transport"}
        async with httpx.AsyncClient(transport=transport, base_url=url, headers=headers) as client:
            for _ in range(2):  # the second request reuses the pooled connection
                assert (await client.get("/api/v2/workspace")).status_code == 200

    with running_server(config) as url:
        asyncio.run(check(url))


# The sha256 of httpcore 1.0.9's `AsyncConnectionPool._assign_requests_to_connections`, the
# method `_LinearPool` re-implements in linear time with the same decisions.
ASSIGN_SHA256 = "ea1547e78a655633653bde5257e611ee458cfd46b8ab4543de13c5bae095b0ae"


def test_linear_pool_replaces_the_method_it_was_written_against() -> None:
    """pooled_transport's pool is a _LinearPool, and httpcore's own assignment method is still
    the one _LinearPool copies; a new httpcore fails here rather than diverging silently."""
    transport = pooled_transport(True, httpx.Limits())
    assert isinstance(transport._pool, _LinearPool)  # type: ignore[attr-defined]
    source = inspect.getsource(httpcore.AsyncConnectionPool._assign_requests_to_connections)
    assert hashlib.sha256(source.encode()).hexdigest() == ASSIGN_SHA256, (
        f"{VERSIONS}: httpcore changed _assign_requests_to_connections; re-derive"
        f" migrate.transport._LinearPool from it and update ASSIGN_SHA256. {FIX}"
    )


def test_linear_pool_serves_more_requests_than_connections(tmp_path: Path) -> None:
    """Through a real loopback server, 12 concurrent requests over a pool of 3 connections all
    succeed, and the pool never holds more than 3 connections."""
    config = SandboxConfig(db_path=tmp_path / "t.db", seed="demo", token="tk-transport")

    async def check(url: str) -> None:
        transport = pooled_transport(True, httpx.Limits(max_connections=3))
        headers = {"Authorization": "Bearer tk-transport"}
        async with httpx.AsyncClient(transport=transport, base_url=url, headers=headers) as client:
            answers = await asyncio.gather(*(client.get("/api/v2/workspace") for _ in range(12)))
            assert [a.status_code for a in answers] == [200] * 12
            assert len(transport._pool.connections) <= 3  # type: ignore[attr-defined]

    with running_server(config) as url:
        asyncio.run(check(url))

"""The HTTP plumbing under `client`: httpx transports for real servers and for the in-process
sandbox. Part of the HTTP boundary with `client.py`; nothing above them sees httpx or httpcore.
"""

from __future__ import annotations

import functools
import select
import socket
import ssl
from collections.abc import Iterable
from typing import Any

import certifi
import httpcore
import httpx


class _CheapReadableStream(httpcore.AsyncNetworkStream):
    """A network stream whose idle-connection check is one poll(2), not an attribute walk.

    httpcore asks every pooled connection `is_readable` each time it assigns a request; through
    anyio that lookup cost ~50 µs per connection per request (a third of the client's CPU at 16
    in flight). The socket is looked up once, at connect time, instead.
    """

    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner
        self._socket = inner.get_extra_info("socket")

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return _CheapReadableStream(
            await self._inner.start_tls(ssl_context, server_hostname, timeout)
        )

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable" and self._socket is not None:
            return _socket_readable(self._socket)
        return self._inner.get_extra_info(info)


def _socket_readable(sock: socket.socket) -> bool:
    """True when the socket has data or EOF waiting (an idle connection the server closed)."""
    if sock.fileno() < 0:
        return True
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


class _CheapReadableBackend(httpcore.AsyncNetworkBackend):
    """Wraps httpcore's backend so every stream it opens is a `_CheapReadableStream`."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend) -> None:
        self._inner = inner

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        return _CheapReadableStream(stream)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _LinearPool(httpcore.AsyncConnectionPool):
    """httpcore's pool with request assignment in linear time; otherwise the same pool.

    httpcore 1.0 runs `_assign_requests_to_connections` on every request start and end. Its
    keep-alive check builds a list over every connection for each idle one (quadratic: 256
    `is_idle` calls per call at 16 connections), and each queued request builds the lists of
    available and idle connections in full even when the first available one is taken. At 16
    requests in flight that was a third of the client's CPU. This override decides exactly as
    httpcore 1.0.9 does (the keep-alive list's length is the number of connections), in one
    pass each; `tests/test_transport.py` fails when httpcore's own method changes.
    """

    def _assign_requests_to_connections(self) -> list[httpcore.AsyncConnectionInterface]:
        closing: list[httpcore.AsyncConnectionInterface] = []
        connections: list[httpcore.AsyncConnectionInterface] = self._connections
        for connection in list(connections):
            if connection.is_closed():
                connections.remove(connection)
            elif connection.has_expired() or (
                connection.is_idle() and len(connections) > self._max_keepalive_connections
            ):
                connections.remove(connection)
                closing.append(connection)
        for pool_request in [request for request in self._requests if request.is_queued()]:
            origin = pool_request.request.url.origin
            available = next(
                (c for c in connections if c.can_handle_request(origin) and c.is_available()),
                None,
            )
            if available is not None:
                pool_request.assign_to_connection(available)
            elif len(connections) < self._max_connections:
                connection = self.create_connection(origin)
                connections.append(connection)
                pool_request.assign_to_connection(connection)
            else:
                idle = next((c for c in connections if c.is_idle()), None)
                if idle is not None:
                    connections.remove(idle)
                    closing.append(idle)
                    connection = self.create_connection(origin)
                    connections.append(connection)
                    pool_request.assign_to_connection(connection)
        return closing


@functools.cache
def _ssl_context(verify: str | bool) -> ssl.SSLContext:
    """One verifying TLS context per CA choice for the whole process: building one loads the
    CA file (~25 ms of CPU), and a run opens several clients. `verify` is a CA file or True."""
    if isinstance(verify, str):
        return ssl.create_default_context(cafile=verify)
    return ssl.create_default_context(cafile=certifi.where())


def pooled_transport(verify: str | bool, limits: httpx.Limits) -> httpx.AsyncBaseTransport:
    """httpx's own transport, with the cheap idle check and the linear request assignment
    where httpcore's layout allows them."""
    transport = httpx.AsyncHTTPTransport(verify=_ssl_context(verify), limits=limits)
    pool = getattr(transport, "_pool", None)
    backend = getattr(pool, "_network_backend", None)
    if isinstance(backend, httpcore.AsyncNetworkBackend) and hasattr(select, "poll"):
        pool._network_backend = _CheapReadableBackend(backend)  # type: ignore[union-attr]
    if type(pool) is httpcore.AsyncConnectionPool:
        # Same class layout, one method overridden: the pool httpx built becomes a _LinearPool.
        pool.__class__ = _LinearPool
    return transport


class _DroppedConnectionTransport(httpx.AsyncBaseTransport):
    """Wraps an in-process ASGI app so that an app failure looks like a lost connection."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await self._inner.handle_async_request(request)
        except Exception as exc:  # any app crash is, to a client, a dead connection
            raise httpx.RemoteProtocolError(
                f"connection closed by the server ({type(exc).__name__})", request=request
            ) from exc

    async def aclose(self) -> None:
        await self._inner.aclose()


Transport = httpx.AsyncBaseTransport
"""What a client sends its requests through (the name other modules use, so httpx stays here)."""


def asgi_transport(app: Any) -> Transport:
    """An in-process transport to an ASGI app; an app crash reads as a lost connection."""
    return _DroppedConnectionTransport(httpx.ASGITransport(app=app))

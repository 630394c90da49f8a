"""The HTTP plumbing under `client`: an HTTP/1.1 connection pool (asyncio streams, h11) for real
servers and an httpx transport for the in-process sandbox. Part of the HTTP boundary with
`client.py`; nothing above them sees httpx or h11.
"""

from __future__ import annotations

import asyncio
import functools
import select
import ssl
from collections.abc import AsyncIterator
from typing import Any

import certifi
import h11
import httpx


class _Connection:
    """One HTTP/1.1 keep-alive connection: an asyncio stream pair and h11's state for it."""

    __slots__ = ("h11", "origin", "reader", "writer")

    def __init__(
        self, origin: _Origin, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.origin = origin
        self.reader = reader
        self.writer = writer
        self.h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=_MAX_HEAD_BYTES)

    def idle_and_sound(self) -> bool:
        """True when a pooled connection can carry the next request: open, and nothing waiting
        on it (readable while idle means the server closed it, or sent what nobody asked for)."""
        if self.writer.is_closing() or _holds_input(self.reader):
            return False
        sock = self.writer.get_extra_info("socket")
        if sock is None or sock.fileno() < 0:
            return False
        if not hasattr(select, "poll"):  # Windows: what asyncio already read is all we know
            return True
        # Bytes or a close that arrived since the event loop last read the socket.
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN)
        return not poller.poll(0)

    def close(self) -> None:
        """Drop the connection at once (no TLS close_notify wait: nothing more is sent on it)."""
        self.writer.transport.abort()


def _framed(protocol: h11.Connection, request: httpx.Request, body: bytes) -> bytes | None:
    """The request as HTTP/1.1 bytes, or None when h11 refuses to frame it."""
    try:
        head = h11.Request(
            method=request.method, target=request.url.raw_path, headers=request.headers.raw
        )
        data = protocol.send(head) or b""
        if body:
            data += protocol.send(h11.Data(data=body)) or b""
        return data + (protocol.send(h11.EndOfMessage()) or b"")
    except h11.LocalProtocolError:
        return None


def _took(timeout: float | None) -> str:
    """How long an operation took before it was given up, for a timeout's message."""
    # A TimeoutError can also come from the kernel (ETIMEDOUT) with no timeout of ours set.
    return f"took over {timeout:g} s" if timeout is not None else "timed out"


def _holds_input(reader: asyncio.StreamReader) -> bool:
    """True when the event loop already took data or an EOF off the socket for this reader."""
    # asyncio reads sockets eagerly, so what the server sent sits in the reader, not the socket;
    # `_buffer` has been StreamReader's buffer since asyncio began and has no public accessor.
    return reader.at_eof() or bool(getattr(reader, "_buffer", b""))


def _take_input(reader: asyncio.StreamReader) -> bytes:
    """What the event loop took off the socket for this reader and nobody read yet (emptied)."""
    buffer: bytearray = getattr(reader, "_buffer", bytearray())
    data = bytes(buffer)
    buffer.clear()
    return data


_Origin = tuple[bytes, str, int]
"""scheme, host, port"""

_READ_BYTES = 256 * 1024
_MAX_HEAD_BYTES = 64 * 1024
_CHUNK_BYTES = 64 * 1024  # the most body handed on at once (what one chunk may inflate from)


class LeanTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 over asyncio streams with h11 for the protocol: a connection pool per client.

    httpx's default transport goes through httpcore and anyio, which cost ~1.2 ms of CPU per
    100 KB exchange here, three times the exchange itself (`benchmarks/bench_apply.py`). This
    one does what that pool did for us and no more: at most `max_connections` requests in
    flight, idle connections reused when they are still sound, TLS through one verifying
    context, the request's connect/read/write timeouts, and httpx's own exception types, which
    `client.py` translates (a request waits for a free connection without a limit: no pool
    timeout). No proxies (the client never trusts the environment), no HTTP/2, no redirects
    (the client never follows them).
    """

    def __init__(self, verify: str | bool, max_connections: int) -> None:
        self._verify = verify  # a CA file, or True for certifi's bundle; never False
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: list[_Connection] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout", {})
        await self._slots.acquire()
        connection: _Connection | None = None
        try:
            connection = await self._connection(request, timeouts.get("connect"))
            await self._send(connection, request, timeouts.get("write"))
            head = await self._head(connection, request, timeouts.get("read"))
        except BaseException:
            if connection is not None:
                connection.close()
            self._slots.release()
            raise
        return httpx.Response(
            status_code=head.status_code,
            headers=head.headers,
            stream=_Body(self, connection, request, timeouts.get("read")),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": head.reason},
        )

    async def aclose(self) -> None:
        for connection in self._idle:
            connection.close()
        self._idle.clear()

    def _release(self, connection: _Connection, reusable: bool) -> None:
        """Called once per request when its body is done: pool the connection or drop it."""
        protocol = connection.h11
        if (
            reusable
            and protocol.our_state is h11.DONE
            and protocol.their_state is h11.DONE
            # Bytes past the answer (a second answer nobody asked for, a 204's "body") would
            # be read as the next request's answer; an EOF already seen ends the connection.
            and protocol.trailing_data == (b"", False)
        ):
            protocol.start_next_cycle()
            self._idle.append(connection)
        else:
            connection.close()
        self._slots.release()

    async def _connection(self, request: httpx.Request, timeout: float | None) -> _Connection:
        url = request.url
        scheme = url.scheme
        port = url.port or (443 if scheme == "https" else 80)
        # The IDNA (ASCII) form, as in the Host header: Python's own IDNA codec may map a name
        # like "ß" to another host than the one the request names.
        host = url.raw_host.decode("ascii")
        origin: _Origin = (scheme.encode(), host, port)
        while self._idle:
            candidate = self._idle.pop()
            if candidate.origin == origin and candidate.idle_and_sound():
                return candidate
            candidate.close()
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    host,
                    port,
                    # Built on first use: loading CAs costs ~25 ms a plain-HTTP run never needs.
                    ssl=_ssl_context(self._verify) if scheme == "https" else None,
                    server_hostname=host if scheme == "https" else None,
                    limit=_READ_BYTES,
                )
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(f"connecting {_took(timeout)}", request=request) from exc
        except (OSError, ssl.SSLError) as exc:
            raise httpx.ConnectError(str(exc) or type(exc).__name__, request=request) from exc
        return _Connection(origin, reader, writer)

    async def _send(
        self, connection: _Connection, request: httpx.Request, timeout: float | None
    ) -> None:
        body = await request.aread()
        data = _framed(connection.h11, request, body)
        if data is None:
            # h11's message quotes the offending header, which may hold a credential: neither
            # it nor its exception (not even as context) travels on.
            raise httpx.LocalProtocolError(
                "the request cannot be sent as HTTP/1.1 (an invalid header name or value)",
                request=request,
            )
        writer = connection.writer
        try:
            writer.write(data)
            if writer.transport.get_write_buffer_size():
                async with asyncio.timeout(timeout):
                    await writer.drain()
            else:  # all sent at once: drain only reports a lost connection, without waiting
                await writer.drain()
        except TimeoutError as exc:
            raise httpx.WriteTimeout(f"sending {_took(timeout)}", request=request) from exc
        except OSError as exc:
            # The server may have answered (and closed) before reading the whole body, as a
            # server refusing a large upload does: its answer is still worth reading. The reader
            # now raises the write's error on every read, so what it holds goes to h11 directly,
            # followed by the end of the stream (nothing more can arrive).
            answer = _take_input(connection.reader)
            if not answer:
                raise httpx.WriteError(str(exc) or type(exc).__name__, request=request) from exc
            connection.h11.receive_data(answer)
            connection.h11.receive_data(b"")

    async def _head(
        self, connection: _Connection, request: httpx.Request, timeout: float | None
    ) -> h11.Response:
        while True:
            event = await _next_event(connection, request, timeout)
            if isinstance(event, h11.Response):
                return event
            if not isinstance(event, h11.InformationalResponse):  # 1xx: keep reading
                raise httpx.RemoteProtocolError(
                    f"unexpected {type(event).__name__} before the response", request=request
                )


async def _next_event(
    connection: _Connection, request: httpx.Request, timeout: float | None
) -> object:
    """The next h11 event of the connection (never NEED_DATA), reading the socket as needed."""
    protocol = connection.h11
    while True:
        try:
            event = protocol.next_event()
        except h11.RemoteProtocolError as exc:
            raise httpx.RemoteProtocolError(str(exc), request=request) from exc
        if event is not h11.NEED_DATA:
            return event
        reader = connection.reader
        try:
            if _holds_input(reader):  # answered at once: no wait to bound (nor a timer to set)
                data = await reader.read(_READ_BYTES)
            else:
                async with asyncio.timeout(timeout):
                    data = await reader.read(_READ_BYTES)
        except TimeoutError as exc:
            raise httpx.ReadTimeout(f"waiting for data {_took(timeout)}", request=request) from exc
        except OSError as exc:
            raise httpx.ReadError(str(exc) or type(exc).__name__, request=request) from exc
        if not data and protocol.their_state is h11.SEND_RESPONSE:
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a response.", request=request
            )
        try:
            protocol.receive_data(data)
        except h11.RemoteProtocolError as exc:
            raise httpx.RemoteProtocolError(str(exc), request=request) from exc


class _Body(httpx.AsyncByteStream):
    """A response body read from its connection; the connection goes back to the pool (or is
    dropped) exactly once, when the body ends or is closed early."""

    def __init__(
        self,
        transport: LeanTransport,
        connection: _Connection,
        request: httpx.Request,
        timeout: float | None,
    ) -> None:
        self._transport = transport
        self._connection: _Connection | None = connection
        self._request = request
        self._timeout = timeout

    async def __aiter__(self) -> AsyncIterator[bytes]:
        connection = self._connection
        if connection is None:
            return
        complete = False
        try:
            while True:
                event = await _next_event(connection, self._request, self._timeout)
                if isinstance(event, h11.Data):
                    data = event.data
                    if len(data) <= _CHUNK_BYTES:
                        yield bytes(data)
                        continue
                    # A compressed body inflates chunk by chunk before the client's cap sees
                    # it: one 256 KiB read of a gzip bomb would be ~256 MiB at once.
                    view = memoryview(data)
                    for start in range(0, len(view), _CHUNK_BYTES):
                        yield bytes(view[start : start + _CHUNK_BYTES])
                elif isinstance(event, h11.EndOfMessage):
                    complete = True
                    return
                else:
                    raise httpx.RemoteProtocolError(
                        f"unexpected {type(event).__name__} in a response body",
                        request=self._request,
                    )
        finally:
            self._done(reusable=complete)

    async def aclose(self) -> None:
        self._done(reusable=False)

    def _done(self, *, reusable: bool) -> None:
        if self._connection is not None:
            connection, self._connection = self._connection, None
            self._transport._release(connection, reusable)


@functools.cache
def _ssl_context(verify: str | bool) -> ssl.SSLContext:
    """One verifying TLS context per CA choice for the whole process: building one loads the
    CA file (~25 ms of CPU), and a run opens several clients. `verify` is a CA file or True."""
    if isinstance(verify, str):
        return ssl.create_default_context(cafile=verify)
    return ssl.create_default_context(cafile=certifi.where())


def pooled_transport(verify: str | bool, max_connections: int) -> httpx.AsyncBaseTransport:
    """The transport for a real server: `LeanTransport`, verifying TLS with `verify`."""
    return LeanTransport(verify, max_connections)


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

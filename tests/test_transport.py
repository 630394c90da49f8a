"""`migrate.transport.LeanTransport`, the HTTP/1.1 connection pool under `client`: it serves
real servers, bounds and reuses its connections, and fails with httpx's own exception types
(which `client` translates) when a server misbehaves."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest
import trustme

from migrate.sandbox import SandboxConfig, running_server
from migrate.transport import LeanTransport, pooled_transport

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
OK = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            await reader.readexactly(int(line.split(b":", 1)[1]))
    return head


async def _serve(handler: Handler, check: Callable[[str], Awaitable[None]]) -> list[int]:
    """Run `check(url)` against a raw asyncio server; return how many connections it accepted."""
    accepted: list[int] = []

    async def counted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        try:
            await handler(reader, writer)
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(counted, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        await check(f"http://127.0.0.1:{port}")
    return accepted


def _client(url: str, max_connections: int = 4, read: float = 5.0) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=url,
        transport=pooled_transport(True, max_connections),
        timeout=httpx.Timeout(read, connect=5.0, pool=None),
    )


def test_requests_through_a_real_server_reuse_one_connection(tmp_path: Path) -> None:
    """Through the sandbox over loopback, sequential requests (a GET and a POST with a body)
    succeed and share one pooled connection."""
    config = SandboxConfig(db_path=tmp_path / "t.db", seed="demo", token="tk-transport")

    async def check(url: str) -> None:
        transport = pooled_transport(True, 4)
        assert isinstance(transport, LeanTransport)
        headers = {"Authorization": "Bearer tk-transport"}
        async with httpx.AsyncClient(transport=transport, base_url=url, headers=headers) as client:
            for _ in range(3):
                assert (await client.get("/api/v2/workspace")).status_code == 200
            answer = await client.post("/api/v2/workspace/dashboards", json={"workspaceName": "x"})
            assert answer.status_code in (200, 400)
            assert len(transport._idle) == 1

    with running_server(config) as url:
        asyncio.run(check(url))


def test_concurrent_requests_never_open_more_connections_than_allowed() -> None:
    """Twelve concurrent requests over a pool of three all succeed on at most three
    connections."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await _read_request(reader)
            await asyncio.sleep(0.01)
            writer.write(OK)
            await writer.drain()

    async def check(url: str) -> None:
        async with _client(url, max_connections=3) as client:
            answers = await asyncio.gather(*(client.get("/") for _ in range(12)))
            assert [a.status_code for a in answers] == [200] * 12

    assert len(asyncio.run(_serve(handler, check))) <= 3


def test_a_connection_the_server_closed_while_idle_is_not_reused() -> None:
    """A server that answers once and then closes its end: the next request opens a new
    connection instead of failing on the dead one."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(OK)
        await writer.drain()

    async def check(url: str) -> None:
        async with _client(url) as client:
            assert (await client.get("/")).status_code == 200
            await asyncio.sleep(0.05)  # let the server's FIN arrive (no timing is asserted)
            assert (await client.get("/")).status_code == 200

    assert len(asyncio.run(_serve(handler, check))) == 2


def test_connection_close_is_honoured() -> None:
    """An answer with `Connection: close` is read whole and its connection is not pooled."""
    answer = OK.replace(b"content-length: 2", b"connection: close\r\ncontent-length: 2")

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(answer)
        await writer.drain()

    async def check(url: str) -> None:
        transport = pooled_transport(True, 2)
        async with httpx.AsyncClient(base_url=url, transport=transport) as client:
            for _ in range(2):
                assert (await client.get("/")).json() == {}
            assert isinstance(transport, LeanTransport)
            assert transport._idle == []

    assert len(asyncio.run(_serve(handler, check))) == 2


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789",  # body cut short
        b"SSH-2.0-OpenSSH_9.6\r\n\r\n",  # not HTTP at all
    ],
)
def test_a_broken_answer_is_a_protocol_error(answer: bytes) -> None:
    """A server that promises 100 bytes and sends 10, or answers with something that is not
    HTTP/1.1, then closes: httpx.RemoteProtocolError, which the client reads as a lost
    connection."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(answer)
        await writer.drain()

    async def check(url: str) -> None:
        async with _client(url) as client:
            with pytest.raises(httpx.RemoteProtocolError):
                await client.get("/")

    asyncio.run(_serve(handler, check))


def test_a_server_that_closes_without_answering_is_a_protocol_error() -> None:
    """Reading the request and closing without a byte of answer is RemoteProtocolError."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)

    async def check(url: str) -> None:
        async with _client(url) as client:
            with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
                await client.post("/", content=b"x" * 1000)

    asyncio.run(_serve(handler, check))


def test_a_silent_server_is_a_read_timeout_and_frees_its_slot() -> None:
    """A server that never answers: httpx.ReadTimeout after the read timeout, and the pool
    slot is released (a later request on a pool of one still gets through)."""
    calls: list[int] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await _read_request(reader)
            calls.append(1)
            if len(calls) == 1:
                await asyncio.sleep(3600)
            writer.write(OK)
            await writer.drain()

    async def check(url: str) -> None:
        async with _client(url, max_connections=1, read=0.2) as client:
            with pytest.raises(httpx.ReadTimeout):
                await client.get("/")
            assert (await client.get("/")).status_code == 200

    asyncio.run(_serve(handler, check))


def test_a_server_that_stalls_mid_body_is_a_read_timeout() -> None:
    """Reads that find data waiting skip the timer, but the read that must wait is still
    bounded: a body cut off midway is httpx.ReadTimeout after the read timeout."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n" + b"x" * 10)
        await writer.drain()
        await asyncio.sleep(3600)

    async def check(url: str) -> None:
        async with _client(url, read=0.2) as client, client.stream("GET", "/") as response:
            with pytest.raises(httpx.ReadTimeout):
                await response.aread()

    asyncio.run(_serve(handler, check))


def test_a_server_that_does_not_read_the_body_is_a_write_timeout() -> None:
    """A body the kernel cannot take at once is waited on under the write timeout: a server
    that never reads it is httpx.WriteTimeout, not a hang."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(3600)

    async def check(url: str) -> None:
        async with _client(url, read=0.3) as client:
            with pytest.raises(httpx.WriteTimeout):
                await client.post("/", content=b"x" * (64 * 1024 * 1024))

    asyncio.run(_serve(handler, check))


def test_a_refused_connection_is_a_connect_error() -> None:
    """Nothing listening on the port: httpx.ConnectError (the request was never sent)."""

    async def check() -> None:
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        async with _client(f"http://127.0.0.1:{port}") as client:
            with pytest.raises(httpx.ConnectError):
                await client.get("/")

    asyncio.run(check())


def test_chunked_answers_and_interim_responses_are_read() -> None:
    """A `100 Continue` before the answer and a chunked body are both handled."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await _read_request(reader)
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
            writer.write(b'5\r\n{"a":\r\n2\r\n1}\r\n0\r\n\r\n')
            await writer.drain()

    async def check(url: str) -> None:
        async with _client(url) as client:
            for _ in range(2):
                assert (await client.get("/")).json() == {"a": 1}

    assert len(asyncio.run(_serve(handler, check))) == 1


def test_tls_is_verified_against_the_configured_ca(tmp_path: Path) -> None:
    """Over TLS: a server whose certificate chains to the configured CA file is served; the
    same server checked against the default CA bundle is a ConnectError (nothing sent)."""
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await _read_request(reader)
            writer.write(OK)
            await writer.drain()

    async def check() -> None:
        server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=server_context)
        port = server.sockets[0].getsockname()[1]
        url = f"https://localhost:{port}"
        async with server:
            transport = pooled_transport(str(ca_file), 2)
            async with httpx.AsyncClient(base_url=url, transport=transport) as client:
                for _ in range(2):
                    assert (await client.get("/")).json() == {}
            async with httpx.AsyncClient(
                base_url=url, transport=pooled_transport(True, 2)
            ) as client:
                with pytest.raises(httpx.ConnectError, match="certificate verify failed"):
                    await client.get("/")

    asyncio.run(check())


def test_an_unsendable_header_is_refused_without_quoting_it() -> None:
    """A header value h11 cannot frame (a line break): httpx.LocalProtocolError, nothing sent,
    and neither its message nor a chained exception quotes the value."""
    secret = "tok-CANARY-1234"
    received: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.append(await reader.read(1024))

    async def check(url: str) -> None:
        transport = pooled_transport(True, 1)
        request = httpx.Request("GET", url, headers={"X-Key": f"{secret}\r\nX: 1"})
        with pytest.raises(httpx.LocalProtocolError) as caught:
            await transport.handle_async_request(request)
        seen: BaseException | None = caught.value
        while seen is not None:
            assert secret not in str(seen) and secret not in repr(seen)
            seen = seen.__cause__ or seen.__context__
        await transport.aclose()

    asyncio.run(_serve(handler, check))
    assert received in ([], [b""])

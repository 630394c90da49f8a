"""Hostile servers against `DatabrainClient` over `migrate.transport.LeanTransport`: every
failure lands in the error tree with the right `uncertain` (a write that may have taken effect
is never called certain), no pool slot or connection in a bad state survives a failure, and
the token shows in no error."""

from __future__ import annotations

import asyncio
import gzip
import ssl
import zlib
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest
import trustme
from hypothesis import given, settings
from hypothesis import strategies as st

from migrate.client import ClientOptions, DatabrainClient
from migrate.errors import BadResponseError, EndpointError, TransportError
from migrate.retry import RetryPolicy
from migrate.transport import LeanTransport

TOKEN = "tk-adversary-S3CRET"
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def _ok(body: bytes = b"{}", extra: bytes = b"") -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
        + extra
        + b"content-length: %d\r\n\r\n" % len(body)
        + body
    )


async def _request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One request off the wire: its head and its (Content-Length framed) body."""
    head = await reader.readuntil(b"\r\n\r\n")
    size = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            size = int(line.split(b":", 1)[1])
    return head, await reader.readexactly(size)


async def _serve(
    handler: Handler,
    check: Callable[[str], Awaitable[None]],
    *,
    host: str = "127.0.0.1",
    scheme: str = "http",
    tls: ssl.SSLContext | None = None,
) -> int:
    """Run `check(url)` against a raw asyncio server; return how many connections it took."""
    accepted = 0
    tasks: set[asyncio.Task[None]] = set()

    async def counted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await handler(reader, writer)
        except (OSError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        except asyncio.CancelledError:
            pass  # the test is over; asyncio would log a cancelled connection task as an error
        finally:
            writer.close()

    server = await asyncio.start_server(counted, host, 0, ssl=tls)
    port = server.sockets[0].getsockname()[1]
    name = f"[{host}]" if ":" in host else host
    try:
        async with server:
            await check(f"{scheme}://{name}:{port}")
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return accepted


def _client(
    url: str,
    *,
    max_connections: int = 2,
    deadline: float = 5.0,
    read: float = 5.0,
    max_body: int = 1 << 20,
    verify: str | bool = True,
) -> DatabrainClient:
    async def no_sleep(seconds: float) -> None:
        return None

    return DatabrainClient(
        url,
        TOKEN,
        options=ClientOptions(
            timeout_s=read,
            connect_timeout_s=5.0,
            request_deadline_s=deadline,
            max_connections=max_connections,
            max_body_bytes=max_body,
            retry=RetryPolicy(attempts=1),
            verify=verify,
        ),
        sleep=no_sleep,
    )


def _pool(client: DatabrainClient) -> LeanTransport:
    transport = client._transport
    assert isinstance(transport, LeanTransport)
    return transport


async def _import(client: DatabrainClient, body: bytes | None = None) -> None:
    # `body` (bytes) is spliced into the request as the dashboard's data text, whatever it is.
    await client.import_dashboard("ws", "d1", {} if body is None else body)


def _no_token(exc: BaseException) -> None:
    """The token is in no message or repr of `exc` or of any exception it chains to."""
    seen: BaseException | None = exc
    while seen is not None:
        assert TOKEN not in str(seen)
        assert TOKEN not in repr(seen)
        assert TOKEN not in repr(seen.args)
        seen = seen.__cause__ or seen.__context__


# ---- reuse of a connection in a bad state ---------------------------------------------------


@pytest.mark.parametrize(
    "first",
    [
        _ok() + _ok(b'{"stale":1}'),  # a second answer nobody asked for, in the same segment
        b"HTTP/1.1 204 No Content\r\ncontent-length: 2\r\n\r\n{}",  # a 204 "with a body"
        _ok(b"{}", b"connection: keep-alive\r\n") + b"garbage",
    ],
    ids=["unasked-answer", "204-with-body", "trailing-garbage"],
)
def test_bytes_past_an_answer_never_answer_the_next_request(first: bytes) -> None:
    """Bytes a server sent past the end of an answer are not read as the next request's answer:
    the connection that holds them is dropped."""
    count = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal count
        while True:
            await _request(reader)
            count += 1
            writer.write(first if count == 1 else _ok(b'{"fresh":1}'))
            await writer.drain()

    async def check(url: str) -> None:
        async with _client(url) as client:
            await client._call("GET", "/a", None, op="list_workspaces")
            answer = await client._call("GET", "/b", None, op="list_workspaces")
            assert answer.body == {"fresh": 1}

    assert asyncio.run(_serve(handler, check)) == 2


# ---- exactly-once: what may have reached the server is never called certain ----------------


async def _read_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await _request(reader)


async def _read_then_half_a_head(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    await _request(reader)
    writer.write(b"HTTP/1.1 200 OK\r\ncontent-le")
    await writer.drain()


async def _read_then_reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await _request(reader)
    writer.transport.abort()


async def _read_then_cut_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await _request(reader)
    writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{")
    await writer.drain()


def _import_is_uncertain(
    error: type[EndpointError],
) -> Callable[[str], Awaitable[None]]:
    """A check for `_serve`: an import to the server at its URL raises `error`, marked
    uncertain (it may have been stored), and the error names no token."""

    async def check(url: str) -> None:
        async with _client(url) as client:
            with pytest.raises(error) as caught:
                await _import(client)
            assert caught.value.uncertain
            _no_token(caught.value)

    return check


@pytest.mark.parametrize(
    "handler", [_read_then_close, _read_then_half_a_head, _read_then_reset, _read_then_cut_body]
)
def test_an_import_the_server_received_is_uncertain_when_its_answer_is_lost(
    handler: Handler,
) -> None:
    """Whatever way the answer to a received import is lost, the error says it may have been
    stored (so it is confirmed, never blindly re-sent), and names no token."""

    asyncio.run(_serve(handler, _import_is_uncertain(TransportError)))


@pytest.mark.parametrize(
    "answer",
    [
        _ok(b"[" + b"1," * 600 + b"1]"),  # declared over the cap
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",  # chunks without end
    ],
    ids=["declared", "chunked"],
)
def test_an_import_answered_over_the_body_cap_may_have_been_stored(answer: bytes) -> None:
    """An import answered with a body over the cap was received and perhaps stored: the
    refusal to read it is uncertain, like any other answer to a write that cannot be read; the
    connection, its body unread, is dropped and its slot freed."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _request(reader)
        writer.write(answer)
        if b"chunked" in answer:
            while True:  # endless chunks: only the cap ends it
                writer.write(b"100\r\n" + b"x" * 256 + b"\r\n")
                await writer.drain()

    async def check(url: str) -> None:
        async with _client(url, max_body=1000) as client:
            with pytest.raises(BadResponseError, match="cap") as caught:
                await _import(client)
            assert caught.value.uncertain
            assert _pool(client)._slots._value == 2  # its slot is free,
            assert _pool(client)._idle == []  # its connection, mid-body, dropped

    asyncio.run(_serve(handler, check))


def test_an_undecodable_gzip_answer_is_a_bad_response_not_a_crash() -> None:
    """An answer that says gzip but is not: an error of the tree (uncertain for a write), not
    httpx's DecodingError escaping the client."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _request(reader)
        writer.write(_ok(b"not gzip at all", b"content-encoding: gzip\r\n"))
        await writer.drain()

    asyncio.run(_serve(handler, _import_is_uncertain(EndpointError)))


# ---- no pool slot leaks, whatever await a request is cancelled at ---------------------------


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, str]:
    """A server TLS context for `localhost` and the CA file that verifies it."""
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1", "::1").configure_cert(context)
    ca_file = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return context, str(ca_file)


STAGES = ["acquire", "connect", "send", "head", "body"]


@pytest.mark.parametrize("stage", STAGES)
def test_a_request_cancelled_at_any_await_leaves_every_slot_usable(
    stage: str, tls: tuple[ssl.SSLContext, str]
) -> None:
    """Cancelled while waiting for a slot, in the TLS handshake, while sending or while waiting
    for the head, or stopped by its deadline in the body: afterwards the pool still carries
    `max_connections` requests at once (the server answers only when both are in), and the
    stalled connections are gone."""
    context, ca_file = tls
    reached = asyncio.Event()
    both_in = asyncio.Event()
    waiting = 0
    stalls = {"acquire": ["head", "head"]}.get(stage, [stage])

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal waiting
        mode = stalls.pop(0) if stalls else "ok"
        if mode == "connect":
            reached.set()
            await asyncio.Event().wait()  # never answers the TLS handshake
        await writer.start_tls(context)
        if mode == "send":
            await reader.readexactly(1)
            reached.set()
            await asyncio.Event().wait()  # reads no more: the client's send stalls
        while True:
            await _request(reader)
            if mode == "head":
                if not stalls:
                    reached.set()
                await asyncio.Event().wait()
            if mode == "body":
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n")
                while True:  # trickles the body until the request's deadline ends it
                    writer.write(b" ")
                    await writer.drain()
                    await asyncio.sleep(0.01)
            waiting += 1
            if waiting >= 2:
                both_in.set()
            await both_in.wait()
            writer.write(_ok())
            await writer.drain()

    async def check(url: str) -> None:
        url = url.replace("127.0.0.1", "localhost")
        deadline = 0.3 if stage == "body" else 5.0
        async with _client(url, verify=ca_file, deadline=deadline) as client:
            pool = _pool(client)
            big = b"x" * (32 << 20) if stage == "send" else None
            stalled = [asyncio.create_task(_import(client, big))]
            if stage == "acquire":
                stalled.append(asyncio.create_task(_import(client)))
                await reached.wait()
                stalled.append(asyncio.create_task(_import(client)))
                while not pool._slots._waiters:
                    await asyncio.sleep(0)
            elif stage != "body":
                await reached.wait()
            if stage != "body":
                for task in stalled:
                    task.cancel()
            await asyncio.gather(*stalled, return_exceptions=True)
            assert pool._slots._value == 2
            assert pool._idle == []
            await asyncio.gather(*(_import(client) for _ in range(2)))

    asyncio.run(_serve(handler, check, scheme="https"))


def test_an_early_refusal_of_an_unread_upload_is_read_as_the_answer() -> None:
    """A server that answers 413 and closes without reading the request body (its close then
    resets the upload): the client reports the server's refusal, not a lost connection."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 413 Payload Too Large\r\nconnection: close\r\n"
            b"content-type: application/json\r\ncontent-length: 2\r\n\r\n{}"
        )
        await writer.drain()

    async def check(url: str) -> None:
        async with _client(url) as client:
            with pytest.raises(EndpointError) as caught:
                await _import(client, b"x" * (32 << 20))
            assert caught.value.status == 413
            assert _pool(client)._slots._value == 2

    asyncio.run(_serve(handler, check))


# ---- TLS failures: nothing was sent, so a write is certainly not done --------------------------


@pytest.mark.parametrize("case", ["untrusted-ca", "wrong-host", "tls-to-plain", "plain-to-tls"])
def test_tls_failures_are_clean_and_certain_only_before_sending(
    case: str, tls: tuple[ssl.SSLContext, str], tmp_path: Path
) -> None:
    """A certificate from an unknown CA or for another host, or TLS spoken to a plain server:
    a TransportError that says nothing was sent (the handshake failed first). Plain HTTP spoken
    to a TLS server did send the request: uncertain. No message names the token."""
    context, ca_file = tls
    other = trustme.CA()
    elsewhere = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    other.issue_cert("elsewhere.example").configure_cert(elsewhere)
    other_ca = str(tmp_path / "other.pem")
    other.cert_pem.write_to_path(other_ca)

    async def plain(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)  # a ClientHello, answered as plain HTTP servers do
        writer.write(b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n")
        await writer.drain()

    async def answering(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _request(reader)
        writer.write(_ok())
        await writer.drain()

    server_tls, handler, verify, scheme = {
        "untrusted-ca": (context, answering, True, "https"),
        "wrong-host": (elsewhere, answering, other_ca, "https"),
        "tls-to-plain": (None, plain, ca_file, "https"),
        "plain-to-tls": (context, answering, ca_file, "http"),
    }[case]

    async def check(url: str) -> None:
        async with _client(url, verify=verify) as client:
            with pytest.raises(TransportError) as caught:
                await _import(client)
            assert caught.value.uncertain is (case == "plain-to-tls")
            _no_token(caught.value)

    asyncio.run(_serve(handler, check, scheme=scheme, tls=server_tls))


# ---- what reaches the server: the same request line as httpx.AsyncClient sent ---------------

NAMES = ["my workspace", "ünïcode ✓", "a&b=c", "x#y", "50%", "a+b", "sl/ash", "?q", "é%20"]
PREFIXES = ["", "/", "/db", "/db/v1", "/pre fix", "/ü"]
_NOWHERE = httpx.MockTransport(lambda request: httpx.Response(500))
_BUILDERS = {
    prefix: (
        DatabrainClient(f"http://127.0.0.1:8080{prefix}", TOKEN, transport=_NOWHERE),
        httpx.AsyncClient(
            base_url=f"http://127.0.0.1:8080{prefix}".rstrip("/"), transport=_NOWHERE
        ),
    )
    for prefix in PREFIXES
}


@settings(max_examples=60, deadline=None)
@given(
    prefix=st.sampled_from(PREFIXES),
    value=st.one_of(st.sampled_from(NAMES), st.text(max_size=12)),
)
def test_urls_are_built_as_httpx_asyncclient_built_them(prefix: str, value: str) -> None:
    """Under a base URL with a path prefix, a query value of any text gives the same URL as the
    httpx.AsyncClient (base_url, params) this client used to send through."""
    client, former = _BUILDERS[prefix]
    path = "/api/v2/data-app/embeds/export"
    params = {"embedId": value, "isPagination": "true"}
    ours = client._request("GET", path, content=None, params=params)
    theirs = former.build_request("GET", path, params=params)
    assert (ours.url, ours.url.raw_path) == (theirs.url, theirs.url.raw_path)


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE"])
@pytest.mark.parametrize("content", [None, b"", b'{"a": 1}'])
def test_requests_are_built_as_httpx_built_them(method: str, content: bytes | None) -> None:
    """The request built from the path's cached URL and byte headers is the one httpx built
    from the URL text and header dicts: same URL, headers in the same order, same body."""
    client = DatabrainClient("http://127.0.0.1:8080/prefix/", TOKEN, transport=_NOWHERE)
    path = "/api/v2/data-app/embeds"
    params = {"embedId": "e 1"} if method == "DELETE" else None
    for _ in range(2):  # the second time from the cached URL
        ours = client._request(method, path, content=content, params=params)
        theirs = httpx.Request(
            method,
            client._url(path),
            params=params,
            content=content,
            headers={
                "Authorization": f"Bearer {TOKEN}",
                "Accept": "application/json",
                "Accept-Encoding": "gzip, deflate",
                "User-Agent": client.options.user_agent,
                **({"Content-Type": "application/json"} if content is not None else {}),
            },
        )
        assert (ours.method, ours.url, ours.url.raw_path) == (
            method,
            theirs.url,
            theirs.url.raw_path,
        )
        assert ours.headers.raw == theirs.headers.raw
        assert ours.content == theirs.content


def test_ipv6_loopback_with_prefix_and_query_reaches_the_server_verbatim() -> None:
    """Over [::1] under a path prefix: the request line and Host header are exactly what httpx
    builds for that URL (percent-encoding kept), and the answer comes back."""
    seen: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head, _ = await _request(reader)
            seen.append(head)
            writer.write(_ok(b'{"data":{"x":1},"_meta":{}}'))
            await writer.drain()

    async def check(url: str) -> None:
        async with _client(url + "/pre fix") as client:
            params = {"embedId": "a&b #ü"}
            await client._call("GET", "/api/v2/q", None, op="export_embed", params=params)
            expected = httpx.Request("GET", f"{url}/pre fix/api/v2/q", params=params).url
        request_line, *lines = seen[0].split(b"\r\n")
        assert request_line == b"GET " + expected.raw_path + b" HTTP/1.1"
        assert b"host: " + expected.netloc in [line.lower() for line in lines]

    asyncio.run(_serve(handler, check, host="::1"))


def test_compressed_answers_are_decoded() -> None:
    """gzip and deflate answers (the client asks for both) are decoded before parsing."""
    answers = [
        _ok(gzip.compress(b'{"data":[]}'), b"content-encoding: gzip\r\n"),
        _ok(zlib.compress(b'{"data":[]}'), b"content-encoding: deflate\r\n"),
    ]

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for answer in answers:
            head, _ = await _request(reader)
            assert b"accept-encoding: gzip, deflate" in head.lower()
            writer.write(answer)
            await writer.drain()

    async def check(url: str) -> None:
        async with _client(url) as client:
            for _ in answers:
                assert await client.list_workspaces() == []

    asyncio.run(_serve(handler, check))


def test_a_gzip_bomb_is_capped_and_inflates_from_small_chunks() -> None:
    """A 16 KiB gzip answer that inflates to 16 MiB: refused at the body cap, uncertain for an
    import. And a body reaches the decoder in chunks of at most 64 KiB, so one chunk of a bomb
    inflates to at most ~64 MiB before the cap is checked (as with httpcore), not 256 MiB."""
    packer = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    zeros = bytes(1 << 20)
    bomb = b"".join(packer.compress(zeros) for _ in range(16)) + packer.flush()
    plain = bytes(range(256)) * 4096  # 1 MiB, sent at once

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head, _ = await _request(reader)
            if head.startswith(b"POST"):
                writer.write(_ok(bomb, b"content-encoding: gzip\r\n"))
            else:
                writer.write(_ok(plain))
            await writer.drain()

    async def check(url: str) -> None:
        async with _client(url, max_body=1 << 20) as client:
            with pytest.raises(BadResponseError, match="cap") as caught:
                await _import(client)
            assert caught.value.uncertain
        raw = httpx.AsyncClient(transport=LeanTransport(True, 1))
        async with raw, raw.stream("GET", url) as response:
            chunks = [len(chunk) async for chunk in response.aiter_raw()]
        assert sum(chunks) == len(plain)
        assert max(chunks) <= 64 * 1024

    asyncio.run(_serve(handler, check))

"""The gateway's upstream HTTP client against real servers on loopback.

The servers are asyncio TCP servers that speak HTTP/1.1 by script, so each test can make the upstream do
exactly what it is about: close an idle connection, stall, send a body without a length, or pour out more
than a slow reader takes.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest
import trustme

from claudegate.upstream.http import HttpClient, UpstreamConnectionError


@dataclass
class Request:
    head: bytes
    body: bytes
    connection: int  # which connection, in order of acceptance, carried it

    @property
    def request_line(self) -> bytes:
        return self.head.split(b"\r\n", 1)[0]

    def header(self, name: bytes) -> bytes | None:
        for line in self.head.split(b"\r\n")[1:]:
            key, _, value = line.partition(b":")
            if key.strip().lower() == name:
                return value.strip()
        return None


Handler = Callable[[Request, asyncio.StreamWriter], Awaitable[bool]]  # False: close the connection


@dataclass
class Server:
    url: str
    requests: list[Request] = field(default_factory=list)
    connections: int = 0
    ended: int = 0  # connections the client closed, or the script ended


async def _read_request(reader: asyncio.StreamReader, connection: int) -> Request | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    request = Request(head, b"", connection)
    length = request.header(b"content-length")
    if length:
        request.body = await reader.readexactly(int(length))
    return request


@contextlib.asynccontextmanager
async def scripted_server(handle: Handler, tls: ssl.SSLContext | None = None) -> AsyncIterator[Server]:
    server = Server(url="")
    tasks: set[asyncio.Task[None]] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        server.connections += 1
        number = server.connections
        try:
            while (request := await _read_request(reader, number)) is not None:
                server.requests.append(request)
                if not await handle(request, writer):
                    break
        except (ConnectionError, asyncio.CancelledError):
            pass  # a cancelled handler ends quietly: the test is over (a cancelled task here would be logged)
        finally:
            server.ended += 1
            writer.close()

    listener = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=tls)
    port = listener.sockets[0].getsockname()[1]
    server.url = f"{'https' if tls else 'http'}://{'localhost' if tls else '127.0.0.1'}:{port}"
    try:
        yield server
    finally:
        listener.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@contextlib.asynccontextmanager
async def client_and_server(
    handle: Handler, *, read_timeout: float = 600.0, keepalive_s: float = 15.0
) -> AsyncIterator[tuple[HttpClient, Server]]:
    """A client and a scripted server for it; the client is closed before the server stops."""
    client = HttpClient(read_timeout=read_timeout, keepalive_s=keepalive_s)
    async with scripted_server(handle) as server:
        try:
            yield client, server
        finally:
            await client.close()


def reply(body: bytes, *, status: str = "200 OK", extra: bytes = b"") -> bytes:
    return (
        f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n".encode()
        + extra
        + b"\r\n"
        + body
    )


async def echo_path(request: Request, writer: asyncio.StreamWriter) -> bool:
    writer.write(reply(b'{"path": "' + request.request_line.split()[1] + b'"}'))
    await writer.drain()
    return True


async def test_calls_in_sequence_share_one_connection_and_send_headers_as_given() -> None:
    async with client_and_server(echo_path) as (client, server):
        for number in range(3):
            status, headers, body = await client.fetch(
                "POST",
                f"{server.url}/v1/messages?beta=true&n={number}",
                [(b"x-api-key", b"sk-upstream"), (b"anthropic-version", b"2023-06-01")],
                b'{"model": "m"}',
            )
            assert status == 200
            assert headers["content-type"] == "application/json"
            assert body == b'{"path": "/v1/messages?beta=true&n=' + str(number).encode() + b'"}'
    assert server.connections == 1
    first = server.requests[0]
    assert first.request_line == b"POST /v1/messages?beta=true&n=0 HTTP/1.1"
    assert first.header(b"host") == server.url.removeprefix("http://").encode()
    assert first.header(b"x-api-key") == b"sk-upstream"
    assert first.header(b"anthropic-version") == b"2023-06-01"
    assert first.body == b'{"model": "m"}'


async def test_a_chunked_stream_reaches_the_reader_piece_by_piece() -> None:
    next_event = asyncio.Event()

    async def stream(request: Request, writer: asyncio.StreamWriter) -> bool:
        if b"/after" in request.request_line:
            return await echo_path(request, writer)
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
        )
        for event in (b"event: message_start\n\n", b"event: message_stop\n\n"):
            writer.write(f"{len(event):x}\r\n".encode() + event + b"\r\n")
            await writer.drain()
            await next_event.wait()  # the next event only once the reader has the previous one
            next_event.clear()
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True

    async with client_and_server(stream) as (client, server):
        response = await client.request("GET", f"{server.url}/stream")
        received = []
        async for chunk in response.iter_chunks():
            received.append(chunk)
            next_event.set()
        response.release()
        assert received == [b"event: message_start\n\n", b"event: message_stop\n\n"]
        assert response.complete
        await client.fetch("GET", f"{server.url}/after")
    assert server.connections == 1  # a stream read to its end leaves a reusable connection


async def test_a_body_without_a_length_ends_when_the_upstream_closes() -> None:
    async def until_close(request: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nall of it")
        await writer.drain()
        return False

    async with client_and_server(until_close) as (client, server):
        assert await client.fetch("GET", f"{server.url}/a") == (
            200,
            {"content-type": "text/plain"},
            b"all of it",
        )
        assert (await client.fetch("GET", f"{server.url}/b"))[2] == b"all of it"
    assert server.connections == 2


async def test_replies_to_head_and_204_have_no_body_and_keep_the_connection() -> None:
    async def bodiless(request: Request, writer: asyncio.StreamWriter) -> bool:
        if request.request_line.startswith(b"HEAD"):
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 123\r\n\r\n")
        elif b"/empty" in request.request_line:
            writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        else:
            writer.write(reply(b"ok"))
        await writer.drain()
        return True

    async with client_and_server(bodiless) as (client, server):
        status, headers, body = await asyncio.wait_for(client.fetch("HEAD", f"{server.url}/api/hello"), 5)
        assert (status, headers["content-length"], body) == (200, "123", b"")
        status, _, body = await asyncio.wait_for(client.fetch("DELETE", f"{server.url}/empty"), 5)
        assert (status, body) == (204, b"")
        assert (await client.fetch("GET", f"{server.url}/x"))[2] == b"ok"
    assert server.connections == 1


async def test_a_reused_connection_the_upstream_closed_as_the_request_went_out_is_replaced() -> None:
    async def once_per_connection(request: Request, writer: asyncio.StreamWriter) -> bool:
        if sum(1 for seen in server.requests if seen.connection == request.connection) > 1:
            return False  # the race of an idle timeout: the request arrives and the connection closes
        writer.write(reply(b"ok"))
        await writer.drain()
        return True

    async with client_and_server(once_per_connection) as (client, server):
        assert (await client.fetch("POST", f"{server.url}/v1/messages", body=b"1"))[2] == b"ok"
        assert (await client.fetch("POST", f"{server.url}/v1/messages", body=b"2"))[2] == b"ok"
    sent = [(request.connection, request.body) for request in server.requests]
    assert sent == [(1, b"1"), (1, b"2"), (2, b"2")]  # the second call, sent again on a new connection


async def test_a_new_connection_closed_before_the_reply_is_an_error_and_not_resent() -> None:
    async def hang_up(request: Request, writer: asyncio.StreamWriter) -> bool:
        return False

    async with client_and_server(hang_up) as (client, server):
        with pytest.raises(UpstreamConnectionError, match="closed the connection"):
            await client.request("POST", f"{server.url}/v1/messages", body=b"{}")
    assert len(server.requests) == 1


async def test_an_upstream_that_is_not_listening_is_a_connection_error() -> None:
    listener = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    listener.close()
    await listener.wait_closed()
    client = HttpClient()
    try:
        with pytest.raises(UpstreamConnectionError, match=f"cannot connect to 127.0.0.1:{port}"):
            await client.request("GET", f"http://127.0.0.1:{port}/v1/models")
    finally:
        await client.close()


async def test_an_upstream_that_stalls_times_out_before_and_during_the_reply() -> None:
    async def stall(request: Request, writer: asyncio.StreamWriter) -> bool:
        if b"/half" in request.request_line:
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhalf")
            await writer.drain()
        await asyncio.sleep(30)
        return False

    async with client_and_server(stall, read_timeout=0.2) as (client, server):
        with pytest.raises(TimeoutError, match=r"sent nothing for 0\.2 s"):
            await asyncio.wait_for(client.request("GET", f"{server.url}/none"), 5)
        response = await client.request("GET", f"{server.url}/half")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(response.read(), 5)
        response.release()


async def test_a_slow_reader_holds_the_upstream_back_instead_of_buffering_its_reply() -> None:
    piece = b"x" * 65536
    pieces = 512  # 32 MiB, far more than the socket buffers on both sides hold
    written = 0

    async def pour(request: Request, writer: asyncio.StreamWriter) -> bool:
        nonlocal written
        writer.write(f"HTTP/1.1 200 OK\r\ncontent-length: {len(piece) * pieces}\r\n\r\n".encode())
        for _ in range(pieces):
            writer.write(piece)
            await writer.drain()
            written += 1
        return True

    async with client_and_server(pour) as (client, server):
        response = await client.request("GET", f"{server.url}/big")
        chunks = response.iter_chunks()
        received = len(await anext(chunks))
        await asyncio.sleep(0.5)  # a reader that does not keep up
        assert written < pieces // 2, "the upstream was not held back"
        async for chunk in chunks:
            received += len(chunk)
        response.release()
    assert received == len(piece) * pieces


async def test_releasing_a_reply_before_its_end_drops_its_connection() -> None:
    async def long_reply(request: Request, writer: asyncio.StreamWriter) -> bool:
        if b"/long" in request.request_line:
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\nthe beginning")
        else:
            writer.write(reply(b"ok"))
        await writer.drain()
        return True

    async with client_and_server(long_reply) as (client, server):
        response = await client.request("GET", f"{server.url}/long")
        response.release()
        assert (await client.fetch("GET", f"{server.url}/next"))[2] == b"ok"
    assert server.connections == 2


async def test_closing_a_reply_wakes_its_reader_with_an_error() -> None:
    async def trickle(request: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(30)
        return False

    async with client_and_server(trickle) as (client, server):
        response = await client.request("GET", f"{server.url}/stream")
        reader = asyncio.ensure_future(response.read())
        await asyncio.sleep(0.05)
        response.close()  # what the relay does when the client hangs up
        with pytest.raises(UpstreamConnectionError, match="abandoned"):
            await asyncio.wait_for(reader, 1)


async def test_a_malformed_reply_is_a_connection_error() -> None:
    async def garbage(request: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"this is not HTTP\r\n\r\n")
        await writer.drain()
        return True

    async with client_and_server(garbage) as (client, server):
        with pytest.raises(UpstreamConnectionError, match="malformed"):
            await asyncio.wait_for(client.request("GET", f"{server.url}/"), 5)


async def test_headers_that_would_forge_another_header_are_refused_before_sending() -> None:
    async with client_and_server(echo_path) as (client, server):
        with pytest.raises(ValueError, match="CR, LF or NUL"):
            await client.request("GET", f"{server.url}/", [(b"x-note", b"a\r\nx-api-key: sk-stolen")])
        with pytest.raises(ValueError, match="CR, LF or NUL"):
            await client.request("GET", f"{server.url}/a b HTTP/1.1\r\nx: y")
    assert server.requests == []


async def test_an_idle_connection_past_its_keep_alive_is_not_reused() -> None:
    async with client_and_server(echo_path, keepalive_s=0.05) as (client, server):
        await client.fetch("GET", f"{server.url}/a")
        await asyncio.sleep(0.1)
        await client.fetch("GET", f"{server.url}/b")
    assert server.connections == 2


async def test_cookies_an_upstream_sets_for_one_caller_are_not_sent_with_the_next_call() -> None:
    async def set_cookie(request: Request, writer: asyncio.StreamWriter) -> bool:
        writer.write(reply(b"{}", extra=b"set-cookie: __cf_bm=session-of-the-first-caller; Path=/\r\n"))
        await writer.drain()
        return True

    async with client_and_server(set_cookie) as (client, server):
        for _ in range(2):
            _, headers, _ = await client.fetch("POST", f"{server.url}/v1/messages", body=b"{}")
            assert "set-cookie" in headers  # the upstream did set one
    assert [request.header(b"cookie") for request in server.requests] == [None, None]


@pytest.fixture(scope="module")
def certificate_authority() -> trustme.CA:
    return trustme.CA()


async def test_tls_upstreams_are_verified(certificate_authority: trustme.CA) -> None:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate_authority.issue_cert("localhost").configure_cert(server_context)
    trusting = ssl.create_default_context()
    certificate_authority.configure_trust(trusting)

    async with scripted_server(echo_path, tls=server_context) as server:
        client = HttpClient(ssl_context=trusting)
        try:
            for _ in range(2):
                assert (await client.fetch("GET", f"{server.url}/v1/models"))[:1] == (200,)
        finally:
            await client.close()
        assert server.connections == 1

        stranger = HttpClient()  # the system's CAs: they never signed this certificate
        try:
            with pytest.raises(UpstreamConnectionError, match="cannot connect"):
                await stranger.request("GET", f"{server.url}/v1/models")
        finally:
            await stranger.close()


async def test_a_reply_still_in_use_when_the_client_closes_does_not_keep_its_connection() -> None:
    client = HttpClient()
    async with scripted_server(echo_path) as server:
        response = await client.request("GET", f"{server.url}/a")
        await client.close()  # shutdown, while a call still holds its reply
        assert await response.read() == b'{"path": "/a"}'
        response.release()
        for _ in range(100):  # the server sees the connection end
            if server.ended:
                break
            await asyncio.sleep(0.01)
        assert server.ended == 1
        with pytest.raises(UpstreamConnectionError, match="client is closed"):
            await client.request("GET", f"{server.url}/b")
    assert len(server.requests) == 1

"""The gateway's HTTP/1.1 client for the upstream hop: keep-alive connections, TLS, streamed replies.

Why not a library: this hop runs once per call and the gateway's budget is half a millisecond of CPU per
call. aiohttp's client, the cheapest of the libraries (httpx costs several times more), spent a fifth of
that budget on what the gateway never uses: cookie jars, redirects, proxies, tracing hooks, a stream reader
built for arbitrary protocols, and header objects rebuilt at each step. What is left is small: a request is
one ``writelines`` of bytes the caller already holds, and the reply is parsed by ``httptools`` (llhttp, the
parser of Node.js and of uvicorn's server side), whose callbacks fill the reply object directly.

What it does, and its limits:

- Connections are kept per origin and reused last-in first-out, so a busy gateway needs few. One closed by
  the upstream while idle is dropped when noticed; one idle longer than ``keepalive_s`` is closed rather
  than reused (servers drop idle connections on their own schedule). A reused connection that fails before
  any byte of the reply arrives was most likely closed by the upstream as the request went out: the request
  is sent once more, on a new connection.
- ``connect_timeout`` bounds connecting (and the TLS handshake); ``read_timeout`` bounds a stall: the time
  without a byte from the upstream while a reply is awaited or read, not a reply's whole length, because a
  stream may last many minutes.
- A reply's body is buffered up to ``_HIGH_WATER`` bytes; beyond that the connection stops reading until
  the consumer catches up, so a slow client slows the upstream instead of filling the gateway's memory.
- Bodies are passed as they come: no decompression (the gateway asks for identity), no redirects, no
  cookies, no proxies. Replies to ``HEAD``, 204 and 304 have no body; a reply with neither a length nor
  chunked encoding ends when the connection closes. Informational (1xx) replies are skipped.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

import httptools

__all__ = ["HttpClient", "HttpResponse", "UpstreamConnectionError"]

Header = tuple[bytes, bytes]

_HIGH_WATER = 256 * 1024  # buffered reply bytes at which the connection stops reading
_NO_BODY_STATUS = frozenset({204, 304})


class UpstreamConnectionError(ConnectionError):
    """The upstream could not be reached, or the connection broke before the reply was complete."""


@dataclass(frozen=True, slots=True)
class _Origin:
    scheme: str
    host: str
    port: int
    host_header: bytes

    @property
    def tls(self) -> bool:
        return self.scheme == "https"


def _origin_of(prefix: str) -> _Origin:
    parts = urlsplit(prefix)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {prefix!r}")
    default_port = 443 if parts.scheme == "https" else 80
    port = parts.port or default_port
    host = parts.hostname
    shown = f"[{host}]" if ":" in host else host  # an IPv6 literal keeps its brackets in Host
    host_header = shown if port == default_port else f"{shown}:{port}"
    return _Origin(parts.scheme, host, port, host_header.encode("idna"))


class HttpResponse:
    """A reply whose status and headers have arrived; its body arrives as it is read.

    Call :meth:`release` when done with it (the connection goes back to the pool if the reply was read to
    its end) or :meth:`close` to drop the connection at once (a reply no longer wanted).
    """

    __slots__ = (
        "_buffered",
        "_chunks",
        "_connection",
        "_error",
        "_head_only",
        "_headers",
        "_informational",
        "_keep_alive",
        "_parser",
        "_ready",
        "_until_close",
        "_waiter",
        "complete",
        "raw_headers",
        "received",
        "status",
    )

    def __init__(self, connection: _Connection, *, head_only: bool) -> None:
        self._connection: _Connection | None = connection
        self._parser = httptools.HttpResponseParser(self)
        self._head_only = head_only
        self._ready: asyncio.Future[None] = connection.loop.create_future()
        self._waiter: asyncio.Future[None] | None = None
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._error: BaseException | None = None
        self._headers: dict[str, str] | None = None
        self._informational = False
        self._keep_alive = False
        self._until_close = False
        self.status = 0
        self.raw_headers: list[Header] = []
        self.complete = False  # the whole body has arrived
        self.received = False  # some byte of the reply has arrived

    @property
    def headers(self) -> Mapping[str, str]:
        """The headers by lower-case name (the last one of a repeated name); ``raw_headers`` has them all."""
        headers = self._headers
        if headers is None:
            headers = {
                name.decode("latin-1").lower(): value.decode("latin-1") for name, value in self.raw_headers
            }
            self._headers = headers
        return headers

    async def read(self) -> bytes:
        """The whole body."""
        if not self.complete:
            parts = [chunk async for chunk in self.iter_chunks()]
            return b"".join(parts)
        self._raise_if_failed()
        body = b"".join(self._chunks)
        self._chunks.clear()
        self._buffered = 0
        return body

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives: everything buffered so far, joined, each time."""
        while True:
            if self._chunks:
                chunk = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
                self._chunks.clear()
                self._buffered = 0
                connection = self._connection
                if connection is not None and connection.paused:
                    connection.resume()
                yield chunk
                continue
            self._raise_if_failed()
            if self.complete:
                return
            self._waiter = waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._waiter = None

    def release(self) -> None:
        """Done with the reply: its connection is reused if the reply was read to its end, else closed."""
        connection = self._connection
        if connection is None:
            return
        self._connection = None
        if self.complete and self._keep_alive and self._error is None:
            connection.finished()
        else:
            connection.abort()

    def close(self) -> None:
        """Drop the connection now; a reader waiting for the body is told the reply broke off."""
        self._fail(UpstreamConnectionError("the reply was abandoned"))
        connection = self._connection
        self._connection = None
        if connection is not None:
            connection.abort()

    # --- fed by the connection -------------------------------------------------------------------------

    def _feed(self, data: bytes) -> None:
        self.received = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as error:
            self._fail(UpstreamConnectionError(f"the upstream's reply was malformed: {error}"))
            if self._connection is not None:
                self._connection.abort()

    def _connection_lost(self, error: BaseException | None) -> None:
        if self.complete:
            return
        if self._until_close and self._ready.done() and error is None:
            self._finish()  # a body without a length ends with the connection
            return
        reason = f": {error}" if error is not None else ""
        self._fail(UpstreamConnectionError(f"the upstream closed the connection{reason}"))

    def _fail(self, error: BaseException) -> None:
        if self._error is not None or self.complete:
            return
        self._error = error
        if not self._ready.done():
            self._ready.set_exception(error)
            self._ready.exception()  # retrieved here, so an abandoned request logs nothing
        self._wake()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _finish(self) -> None:
        self.complete = True
        connection = self._connection
        if connection is not None:
            connection.reply_complete()
        self._wake()

    # --- httptools callbacks ---------------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes | None) -> None:
        self.raw_headers.append((name, value or b""))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200:  # an informational reply: the real one follows on the same parser
            self._informational = True
            self.raw_headers = []
            return
        self.status = status
        self._keep_alive = self._parser.should_keep_alive()
        no_body = self._head_only or status in _NO_BODY_STATUS
        if not no_body:
            has_length = False
            for name, value in self.raw_headers:
                lowered = name.lower()
                if lowered == b"content-length" or (
                    lowered == b"transfer-encoding" and b"chunked" in value.lower()
                ):
                    has_length = True
                    break
            self._until_close = not has_length
        if not self._ready.done():  # done: the request was abandoned while this reply arrived
            self._ready.set_result(None)
        if no_body:
            self._finish()  # the parser, made for this reply only, is dropped with it

    def on_body(self, body: bytes) -> None:
        if self.complete:
            return
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > _HIGH_WATER and self._connection is not None:
            self._connection.pause()
        self._wake()

    def on_message_complete(self) -> None:
        if self._informational:
            self._informational = False
            return
        if not self.complete:
            self._finish()


class _Pool:
    """The idle connections to one origin, the most recently used last."""

    __slots__ = ("closed", "idle")

    def __init__(self) -> None:
        self.idle: list[_Connection] = []
        self.closed = False  # the client is closed: connections still in use are dropped when done


class _Connection(asyncio.Protocol):
    """One connection to one origin; carries one exchange at a time."""

    __slots__ = (
        "_idle_since",
        "_last_activity",
        "_pool",
        "_timer",
        "exchange",
        "loop",
        "lost",
        "paused",
        "read_timeout",
        "reused",
        "transport",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, pool: _Pool, read_timeout: float) -> None:
        self.loop = loop
        self._pool = pool
        self.read_timeout = read_timeout
        self.transport: asyncio.Transport | None = None
        self.exchange: HttpResponse | None = None
        self.lost = False
        self.paused = False
        self.reused = False
        self._idle_since = 0.0
        self._last_activity = 0.0
        self._timer: asyncio.TimerHandle | None = None

    # --- asyncio.Protocol -------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's

    def data_received(self, data: bytes) -> None:
        exchange = self.exchange
        if exchange is None:
            self.abort()  # bytes nobody asked for: the connection cannot be trusted with the next request
            return
        self._last_activity = self.loop.time()
        exchange._feed(data)

    def eof_received(self) -> bool:
        return False  # close: a half-closed upstream connection is of no use

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._cancel_timer()
        exchange = self.exchange
        self.exchange = None
        if exchange is not None:
            exchange._connection_lost(exc)

    # --- used by the client and the response ------------------------------------------------------------

    def send(self, head: bytes, body: bytes | None, *, head_only: bool) -> HttpResponse:
        assert self.transport is not None
        response = HttpResponse(self, head_only=head_only)
        self.exchange = response
        self._last_activity = self.loop.time()
        self._timer = self.loop.call_later(self.read_timeout, self._check_stall)
        if body:
            # Why not await drain: the body is already in memory, so the transport's buffer costs nothing
            # more, and a call's body is bounded by the gateway's request size limit.
            self.transport.writelines((head, body))
        else:
            self.transport.write(head)
        return response

    def reply_complete(self) -> None:
        self._cancel_timer()

    def finished(self) -> None:
        """The exchange ended cleanly: back to the pool for the next request."""
        self.exchange = None
        if self._pool.closed:
            self.abort()
            return
        if self.lost or self.transport is None or self.transport.is_closing():
            return
        if self.paused:
            self.resume()
        self.reused = True
        self._idle_since = self.loop.time()
        self._pool.idle.append(self)

    def idle_for(self, now: float) -> float:
        return now - self._idle_since

    def pause(self) -> None:
        if not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.paused and self.transport is not None:
            self.paused = False
            self._last_activity = self.loop.time()  # waiting on our own consumer is not the upstream stalling
            self.transport.resume_reading()

    def abort(self) -> None:
        self._cancel_timer()
        self.lost = True
        if self.transport is not None:
            self.transport.abort()

    def _check_stall(self) -> None:
        self._timer = None
        exchange = self.exchange
        if exchange is None or exchange.complete:
            return
        if self.paused:  # waiting on our own consumer is not the upstream stalling
            self._timer = self.loop.call_later(self.read_timeout, self._check_stall)
            return
        quiet = self.loop.time() - self._last_activity
        if quiet < self.read_timeout:
            self._timer = self.loop.call_later(self.read_timeout - quiet, self._check_stall)
            return
        exchange._fail(TimeoutError(f"the upstream sent nothing for {self.read_timeout:g} s"))
        self.abort()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class HttpClient:
    """Requests to any number of origins over pooled keep-alive connections. One per gateway process."""

    def __init__(
        self,
        *,
        connect_timeout: float = 10.0,
        read_timeout: float = 600.0,
        keepalive_s: float = 15.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._keepalive_s = keepalive_s
        self._ssl_context = ssl_context
        self._origins: dict[str, _Origin] = {}
        self._pools: dict[_Origin, _Pool] = {}
        self._closed = False

    async def request(
        self, method: str, url: str, headers: Sequence[Header] = (), body: bytes | None = None
    ) -> HttpResponse:
        """Send a request and wait for the reply's status and headers.

        ``headers`` are sent as given, after ``Host`` (and before ``Content-Length`` when there is a body):
        the caller leaves out hop-by-hop headers. Raises UpstreamConnectionError when the upstream cannot
        be reached or breaks the connection before the reply's head, and TimeoutError when connecting or
        the reply's head takes too long.
        """
        if self._closed:
            raise UpstreamConnectionError("the HTTP client is closed")
        origin, target = self._split(url)
        head = _request_head(method, target, origin.host_header, headers, body)
        head_only = method == "HEAD"
        pool = self._pools.get(origin)
        if pool is None:
            pool = self._pools[origin] = _Pool()
        connection = self._idle_connection(pool)
        while True:
            if connection is None:
                connection = await self._connect(origin, pool)
            response = connection.send(head, body, head_only=head_only)
            try:
                await response._ready
            except UpstreamConnectionError:
                if connection.reused and not response.received:
                    connection.abort()
                    connection = None  # the upstream closed it as the request went out: a new one
                    continue
                raise
            except BaseException:
                response.close()  # cancelled, or stalled: the connection is mid-exchange and cannot be reused
                raise
            return response

    async def fetch(
        self, method: str, url: str, headers: Sequence[Header] = (), body: bytes | None = None
    ) -> tuple[int, Mapping[str, str], bytes]:
        """A whole exchange: status, headers and body."""
        response = await self.request(method, url, headers, body)
        try:
            return response.status, response.headers, await response.read()
        finally:
            response.release()

    async def close(self) -> None:
        self._closed = True
        for pool in self._pools.values():
            pool.closed = True
            for connection in pool.idle:
                connection.abort()
            pool.idle.clear()

    def _split(self, url: str) -> tuple[_Origin, str]:
        path_at = url.find("/", url.find("//") + 2)
        prefix, target = (url, "/") if path_at < 0 else (url[:path_at], url[path_at:])
        origin = self._origins.get(prefix)
        if origin is None:
            origin = self._origins[prefix] = _origin_of(prefix)
        return origin, target

    def _idle_connection(self, pool: _Pool) -> _Connection | None:
        idle = pool.idle
        if not idle:
            return None
        now = asyncio.get_running_loop().time()
        while idle:
            connection = idle.pop()
            if not connection.lost and connection.idle_for(now) < self._keepalive_s:
                self._sweep(idle, now)
                return connection
            connection.abort()
        return None

    def _sweep(self, idle: list[_Connection], now: float) -> None:
        """Close connections at the bottom of the pool that idled too long (last in, first out leaves
        them there once traffic falls)."""
        while idle and (idle[0].lost or idle[0].idle_for(now) >= self._keepalive_s):
            idle.pop(0).abort()

    async def _connect(self, origin: _Origin, pool: _Pool) -> _Connection:
        loop = asyncio.get_running_loop()
        tls = self._tls_context() if origin.tls else None
        try:
            async with asyncio.timeout(self._connect_timeout):
                _, connection = await loop.create_connection(
                    lambda: _Connection(loop, pool, self._read_timeout),
                    origin.host,
                    origin.port,
                    ssl=tls,
                    server_hostname=origin.host if tls is not None else None,
                )
        except TimeoutError:
            raise TimeoutError(
                f"connecting to {origin.host}:{origin.port} took over {self._connect_timeout:g} s"
            ) from None
        except OSError as error:  # refused, unreachable, name not found, TLS handshake or certificate
            reason = error.strerror or str(error) or type(error).__name__
            where = f"{origin.host}:{origin.port}"
            raise UpstreamConnectionError(f"cannot connect to {where}: {reason}") from None
        return connection

    def _tls_context(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            self._ssl_context = ssl.create_default_context()
        return self._ssl_context


def _request_head(
    method: str, target: str, host_header: bytes, headers: Sequence[Header], body: bytes | None
) -> bytes:
    lines = [f"{method} {target} HTTP/1.1\r\nhost: ".encode("latin-1"), host_header, b"\r\n"]
    for name, value in headers:
        lines += (name, b": ", value, b"\r\n")
    if body is not None:
        lines += (b"content-length: ", str(len(body)).encode(), b"\r\n")
    lines.append(b"\r\n")
    head = b"".join(lines)
    # A CR, LF or NUL inside a method, target or header would let a caller forge headers or a second
    # request. Counting line ends over the whole head checks every part in three passes in C.
    line_ends = len(headers) + (3 if body is not None else 2) + 1
    if head.count(b"\n") != line_ends or head.count(b"\r") != line_ends or b"\0" in head:
        raise ValueError("a request's method, target and headers cannot hold CR, LF or NUL characters")
    return head

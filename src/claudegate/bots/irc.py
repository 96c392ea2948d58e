"""Twitch chat over IRC: TLS, IRCv3 tags, PING/PONG, Twitch's RECONNECT, and reconnecting with backoff.

Why the line protocol is written here rather than taken from pydle, irc3 or jaraco's ``irc``: the bot needs a
small part of IRC (about ten commands, and tag parsing that is forty lines in ``ircline.py``), while each of
those libraries brings its own send queue and flood control, which would sit between the bot's pacing
(``outbox.py``, which must hold Twitch's limits exactly, since exceeding them locks the account out for 30
minutes) and the socket; none knows Twitch's RECONNECT or USERSTATE (which gives the bot's standing, hence
its limit), so that code would be ours anyway; and their reconnection policies are their own. Owning the
loop keeps pacing, reconnection and the tests (a real IRC server on loopback) simple to reason about.

Registration follows Twitch's documentation and works with any IRCv3 server: each capability is requested
on its own (a server that refuses one keeps the others), then ``PASS oauth:…``, ``NICK``, ``USER`` and ``CAP
END``, then ``JOIN`` once the server says welcome (001). The transport counts as connected from the moment
the server confirms the join.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pydantic import SecretStr

from claudegate.bots.ircline import IrcLine, format_line, parse_line
from claudegate.bots.standing import standing_of
from claudegate.bots.transport import ChatHandler, ChatMessage, ChatNotice, TransportUnavailable

__all__ = ["IrcConfig", "IrcError", "IrcTransport", "backoff_delay"]

logger = logging.getLogger(__name__)

_READ_LIMIT = 1 << 16


class IrcError(Exception):
    """The server refused the bot (bad token, nick in use) or closed the link with ERROR."""


@dataclass(frozen=True, slots=True)
class IrcConfig:
    host: str
    port: int
    nick: str
    channel: str  # without '#'
    tls: bool = True
    token: SecretStr | None = field(default=None, repr=False)
    capabilities: tuple[str, ...] = ("twitch.tv/tags", "twitch.tv/commands")
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 60.0
    ping_interval_s: float = 240.0
    ping_timeout_s: float = 30.0
    connect_timeout_s: float = 15.0


def backoff_delay(attempt: int, *, first: float, longest: float, draw: float) -> float:
    """Delay before reconnection attempt ``attempt`` (0-based): doubling from ``first`` up to ``longest``,
    with "equal jitter" (half fixed, half drawn from ``draw`` in [0, 1)) so that many bots cut off together
    do not come back together."""
    ceiling = min(longest, first * 2.0**attempt)
    return ceiling / 2 + ceiling / 2 * draw


class IrcTransport:
    """One channel's chat over one IRC connection, reconnected for as long as :meth:`run` runs."""

    def __init__(
        self,
        config: IrcConfig,
        *,
        rng: random.Random | None = None,
        on_reconnect: Callable[[], None] | None = None,
    ) -> None:
        self.config = config
        self._rng = rng or random.Random()
        self._on_reconnect = on_reconnect
        self._writer: asyncio.StreamWriter | None = None
        self._ready = asyncio.Event()
        self._closing = asyncio.Event()
        self.connections = 0  # successful joins, for metrics and tests

    @property
    def connected(self) -> bool:
        return self._ready.is_set()

    async def wait_connected(self) -> None:
        await self._ready.wait()

    # -- sending ------------------------------------------------------------------------------------------

    async def send(self, text: str) -> None:
        writer = self._writer
        if not self._ready.is_set() or writer is None or writer.is_closing():
            raise TransportUnavailable("not connected to chat")
        try:
            await self._write(writer, format_line("PRIVMSG", f"#{self.config.channel}", text))
        except (ConnectionError, OSError) as error:
            raise TransportUnavailable(f"chat connection lost: {error}") from error

    @staticmethod
    async def _write(writer: asyncio.StreamWriter, line: str) -> None:
        writer.write(line.encode("utf-8", errors="replace") + b"\r\n")
        await writer.drain()

    # -- the connection loop ------------------------------------------------------------------------------

    async def run(self, handler: ChatHandler) -> None:
        attempt = 0
        while not self._closing.is_set():
            planned = False
            joined_before = self.connections
            try:
                planned = await self._session(handler)
            except (OSError, EOFError, TimeoutError, IrcError, ssl.SSLError) as error:
                if self._closing.is_set():
                    return
                logger.warning(
                    "chat connection to %s:%d failed: %s",
                    self.config.host,
                    self.config.port,
                    error or type(error),
                )
            finally:
                self._ready.clear()
                await self._drop_writer()
            if self._closing.is_set():
                return
            if self.connections > joined_before:
                attempt = 0  # it worked for a while: start the backoff afresh
            delay = 0.0 if planned else self._delay(attempt)
            attempt += 0 if planned else 1
            if self._on_reconnect is not None:
                self._on_reconnect()
            logger.info("reconnecting to chat in %.1f s", delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), timeout=delay)

    def _delay(self, attempt: int) -> float:
        config = self.config
        draw: float = self._rng.random()
        return backoff_delay(attempt, first=config.reconnect_min_s, longest=config.reconnect_max_s, draw=draw)

    async def _session(self, handler: ChatHandler) -> bool:
        """One connection, from connecting to its end. Returns True when the server asked for the
        reconnection (RECONNECT), so it happens at once; raises on failures."""
        config = self.config
        context = ssl.create_default_context() if config.tls else None
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                config.host,
                config.port,
                ssl=context,
                server_hostname=config.host if context else None,
                limit=_READ_LIMIT,
            ),
            timeout=config.connect_timeout_s,
        )
        self._writer = writer
        for capability in config.capabilities:
            await self._write(writer, format_line("CAP", "REQ", capability))
        if config.token is not None:
            token = config.token.get_secret_value()
            await self._write(writer, "PASS " + (token if token.startswith("oauth:") else f"oauth:{token}"))
        await self._write(writer, format_line("NICK", config.nick))
        await self._write(writer, format_line("USER", config.nick, "0", "*", config.nick))
        await self._write(writer, "CAP END")
        join_by = time.monotonic() + config.connect_timeout_s
        while True:
            within = None if self._ready.is_set() else join_by - time.monotonic()
            line = await self._read_line(reader, writer, within)
            if line is None:
                raise EOFError("the server closed the connection")
            try:
                message = parse_line(line)
            except ValueError:
                continue
            try:
                if self._handle(message, writer, handler):
                    return True
            except IrcError:
                raise
            except Exception:  # a fault in the handler must not cut the chat off; it is logged in full
                logger.exception("handling a chat line failed: %s", line)
            if message.command in ("PING", "001", "JOIN"):
                await writer.drain()

    async def _read_line(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, within: float | None
    ) -> str | None:
        """The next line. Before joining, ``within`` bounds the wait; after, silence for ping_interval_s
        gets a PING, and silence for ping_timeout_s more means the link is dead."""
        if within is not None:
            if within <= 0:
                raise TimeoutError("the server did not let the bot join in time")
            data = await asyncio.wait_for(reader.readline(), timeout=within)
        else:
            try:
                data = await asyncio.wait_for(reader.readline(), timeout=self.config.ping_interval_s)
            except TimeoutError:
                await self._write(writer, format_line("PING", "claudegate"))
                try:
                    data = await asyncio.wait_for(reader.readline(), timeout=self.config.ping_timeout_s)
                except TimeoutError:
                    raise TimeoutError("no reply to PING: the connection is dead") from None
        if not data:
            return None
        return data.decode("utf-8", errors="replace").rstrip("\r\n")

    def _handle(self, message: IrcLine, writer: asyncio.StreamWriter, handler: ChatHandler) -> bool:
        """React to one line; True means "reconnect now". Writes are buffered here, drained by the caller."""
        config = self.config
        command = message.command
        channel = f"#{config.channel}"
        if command == "PING":
            writer.write(format_line("PONG", message.trailing or config.host).encode() + b"\r\n")
        elif command == "001":
            writer.write(format_line("JOIN", channel).encode() + b"\r\n")
        elif (
            command == "JOIN"
            and (message.nick or "").lower() == config.nick
            and message.trailing.lower() == channel
        ):
            self.connections += 1
            self._ready.set()
            logger.info("joined %s on %s:%d", channel, config.host, config.port)
        elif command == "PRIVMSG" and len(message.params) >= 2:
            login = (message.nick or "").lower()
            if login and login != config.nick and message.params[0].lower() == channel:
                tags = message.tags
                handler.on_message(
                    ChatMessage(
                        channel=config.channel,
                        login=login,
                        text=message.params[1],
                        user_id=tags.get("user-id") or None,
                        display_name=tags.get("display-name") or None,
                        tags=dict(tags),
                    )
                )
        elif command == "NOTICE":
            self._notice(message, handler)
        elif (
            command == "USERSTATE"
            and message.tags
            and message.params
            and message.params[0].lower() == channel
        ):
            handler.on_standing(standing_of(dict(message.tags)))
        elif command == "RECONNECT":
            logger.info("the chat server asked the bot to reconnect")
            return True
        elif command == "ERROR":
            raise IrcError(f"the server closed the link: {message.trailing}")
        elif command in ("433", "432", "464", "465"):
            raise IrcError(f"the server refused the bot ({command}): {message.trailing}")
        elif command == "CAP" and len(message.params) >= 3 and message.params[1] == "NAK":
            logger.info("the chat server does not offer capability %s", message.trailing)
        return False

    def _notice(self, message: IrcLine, handler: ChatHandler) -> None:
        text = message.trailing
        if not self._ready.is_set() and "authentication failed" in text.lower():
            raise IrcError(f"the chat server refused the bot's token: {text}")
        target = message.params[0] if message.params else ""
        handler.on_notice(
            ChatNotice(
                channel=target[1:] if target.startswith("#") else None,
                kind=message.tags.get("msg-id", ""),
                text=text,
            )
        )

    # -- closing ------------------------------------------------------------------------------------------

    async def close(self) -> None:
        """Leave with QUIT and stop reconnecting."""
        self._closing.set()
        writer = self._writer
        if writer is not None and not writer.is_closing():
            with contextlib.suppress(ConnectionError, OSError, TimeoutError):
                await asyncio.wait_for(self._write(writer, format_line("QUIT", "bye")), timeout=1.0)
        self._ready.clear()
        await self._drop_writer()

    async def _drop_writer(self) -> None:
        writer, self._writer = self._writer, None
        if writer is None:
            return
        writer.close()
        with contextlib.suppress(ConnectionError, OSError, TimeoutError, ssl.SSLError):
            await asyncio.wait_for(writer.wait_closed(), timeout=1.0)

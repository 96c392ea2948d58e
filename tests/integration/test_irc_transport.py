"""The IRC transport against a scripted server on loopback: Twitch's registration, tags, PING/PONG,
RECONNECT, keep-alive, and reconnection with backoff. (tests/e2e/test_twitch_bot.py runs it against a real
IRC server; this one plays the parts a real server will not: Twitch's RECONNECT, USERSTATE and tags.)"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from pydantic import SecretStr

from claudegate.bots.irc import IrcConfig, IrcTransport, backoff_delay
from claudegate.bots.standing import Standing
from claudegate.bots.transport import ChatMessage, ChatNotice


class Script:
    """A server whose connections the test drives by hand."""

    def __init__(self) -> None:
        self.connections: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = (
            asyncio.Queue()
        )
        self.port = 0

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self.connections.put((reader, writer, time.monotonic()))

    async def next(self, within: float = 5.0) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, float]:
        return await asyncio.wait_for(self.connections.get(), timeout=within)


class Handler:
    def __init__(self) -> None:
        self.messages: list[ChatMessage] = []
        self.notices: list[ChatNotice] = []
        self.standings: list[Standing] = []

    def on_message(self, message: ChatMessage) -> None:
        self.messages.append(message)

    def on_notice(self, notice: ChatNotice) -> None:
        self.notices.append(notice)

    def on_standing(self, standing: Standing) -> None:
        self.standings.append(standing)


@asynccontextmanager
async def scripted() -> AsyncIterator[Script]:
    script = Script()
    server = await asyncio.start_server(script._accept, "127.0.0.1", 0)
    script.port = server.sockets[0].getsockname()[1]
    try:
        yield script
    finally:
        server.close()


def config(port: int, **overrides: object) -> IrcConfig:
    values: dict[str, object] = {
        "host": "127.0.0.1",
        "port": port,
        "nick": "bot",
        "channel": "chan",
        "tls": False,
        "token": SecretStr("secret"),
        "reconnect_min_s": 5.0,
    }
    values.update(overrides)
    return IrcConfig(**values)  # type: ignore[arg-type]


async def read(reader: asyncio.StreamReader) -> str:
    return (await asyncio.wait_for(reader.readline(), timeout=5)).decode().rstrip("\r\n")


async def register(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> list[str]:
    """Play Twitch's side of a login; returns what the client sent."""
    lines = []
    while (line := await read(reader)) != "CAP END":
        lines.append(line)
    writer.write(b":tmi.twitch.tv 001 bot :Welcome, GLHF!\r\n")
    assert await read(reader) == "JOIN :#chan"
    writer.write(b":bot!bot@bot.tmi.twitch.tv JOIN #chan\r\n")
    await writer.drain()
    return lines


async def test_registration_tags_ping_and_sending() -> None:
    async with scripted() as script:
        transport = IrcTransport(config(script.port))
        handler = Handler()
        task = asyncio.get_running_loop().create_task(transport.run(handler))
        reader, writer, _at = await script.next()
        assert await register(reader, writer) == [
            "CAP REQ :twitch.tv/tags",
            "CAP REQ :twitch.tv/commands",
            "PASS oauth:secret",
            "NICK :bot",
            "USER bot 0 * :bot",
        ]
        await asyncio.wait_for(transport.wait_connected(), timeout=2)

        writer.write(
            b"@badges=;display-name=Alice;user-id=42;id=1 "
            b":alice!alice@alice.tmi.twitch.tv PRIVMSG #chan :!ask hi\r\n"
            b":bot!bot@bot.tmi.twitch.tv PRIVMSG #chan :my own line\r\n"
            b"@badges=moderator/1;mod=1 :tmi.twitch.tv USERSTATE #chan\r\n"
            b"@msg-id=msg_duplicate :tmi.twitch.tv NOTICE #chan :Your message is identical\r\n"
            b"PING :tmi.twitch.tv\r\n"
        )
        await writer.drain()
        assert await read(reader) == "PONG :tmi.twitch.tv"
        (message,) = handler.messages
        assert (message.login, message.user_id, message.text, message.mention) == (
            "alice",
            "42",
            "!ask hi",
            "@Alice",
        )
        assert message.viewer_key == "id:42"
        assert handler.standings == [Standing.moderator]
        assert handler.notices == [
            ChatNotice(channel="chan", kind="msg_duplicate", text="Your message is identical")
        ]

        await transport.send("@Alice hello\r\nQUIT")
        assert await read(reader) == "PRIVMSG #chan :@Alice hello QUIT"

        await transport.close()
        assert await read(reader) == "QUIT :bye"
        await asyncio.wait_for(task, timeout=2)


async def test_reconnect_asked_by_the_server_is_immediate() -> None:
    async with scripted() as script:
        transport = IrcTransport(config(script.port, reconnect_min_s=5.0))
        task = asyncio.get_running_loop().create_task(transport.run(Handler()))
        reader, writer, _at = await script.next()
        await register(reader, writer)
        await asyncio.wait_for(transport.wait_connected(), timeout=2)
        writer.write(b":tmi.twitch.tv RECONNECT\r\n")
        asked = time.monotonic()
        await writer.drain()
        reader2, writer2, at = await script.next()
        assert at - asked < 1.0  # no backoff for a reconnection the server asked for
        assert not transport.connected
        await register(reader2, writer2)
        await asyncio.wait_for(transport.wait_connected(), timeout=2)
        assert transport.connections == 2
        await transport.close()
        await asyncio.wait_for(task, timeout=2)


async def test_failures_back_off_and_a_dead_link_is_noticed_by_ping() -> None:
    async with scripted() as script:
        transport = IrcTransport(
            config(
                script.port, reconnect_min_s=0.2, reconnect_max_s=0.8, ping_interval_s=0.3, ping_timeout_s=0.3
            ),
            rng=random.Random(1),
        )
        task = asyncio.get_running_loop().create_task(transport.run(Handler()))
        times = []
        for _ in range(4):  # refused at once, four times: the gaps grow
            _reader, writer, at = await script.next()
            times.append(at)
            writer.close()
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert 0.1 <= gaps[0] < 0.3
        assert 0.2 <= gaps[1] < 0.5
        assert 0.4 <= gaps[2] < 0.9

        # A connection that works, then goes silent: the client pings, hears nothing, reconnects.
        reader, writer, _at = await script.next()
        await register(reader, writer)
        await asyncio.wait_for(transport.wait_connected(), timeout=2)
        assert await read(reader) == "PING :claudegate"
        _reader2, writer2, _at2 = await script.next(within=3)
        assert transport.connections == 1
        writer2.close()
        await transport.close()
        await asyncio.wait_for(task, timeout=2)


async def test_a_refused_token_is_retried_with_backoff() -> None:
    async with scripted() as script:
        transport = IrcTransport(config(script.port, reconnect_min_s=0.4))
        task = asyncio.get_running_loop().create_task(transport.run(Handler()))
        reader, writer, _at = await script.next()
        while await read(reader) != "CAP END":
            pass
        writer.write(b":tmi.twitch.tv NOTICE * :Login authentication failed\r\n")
        refused = time.monotonic()
        await writer.drain()
        _reader, _writer, at = await script.next()
        assert at - refused >= 0.2  # backed off, not hammering the server
        assert not transport.connected
        await transport.close()
        await asyncio.wait_for(task, timeout=2)


@pytest.mark.parametrize(
    ("attempt", "low", "high"), [(0, 0.5, 1.0), (1, 1.0, 2.0), (3, 4.0, 8.0), (10, 30, 60)]
)
def test_backoff_doubles_up_to_a_ceiling_with_jitter(attempt: int, low: float, high: float) -> None:
    assert backoff_delay(attempt, first=1, longest=60, draw=0.0) == low
    assert backoff_delay(attempt, first=1, longest=60, draw=0.999999) == pytest.approx(high, rel=1e-5)

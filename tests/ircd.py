"""A real IRC server on loopback (Debian's InspIRCd) and IRC clients that play viewers, for the Twitch bot's
end-to-end tests and its benchmark.

The server's configuration is the one shared/reference/twitch-chat.md gives: no connection throttling, no
fake lag, 4 KB lines, IRCv3 tags. InspIRCd relays client tags but not Twitch's server tags (``user-id``,
``display-name``), so viewers are known by their nick.

InspIRCd has no notion of a Twitch standing: it never sends ``USERSTATE``. :class:`TwitchStanding` sits
between the bot and the server, relays every line both ways untouched, and adds the ``USERSTATE`` lines
Twitch would send: one when the bot's join is confirmed and one after each of the bot's messages, with the
badges the test gives (and may change mid-stream, as a broadcaster's /mod or /unmod would). Everything else
the bot sees (registration, joins, the viewers' messages, its own lines reaching them) is the real server's.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from claudegate.bots.ircline import format_line, parse_line

__all__ = ["Heard", "TwitchStanding", "Viewer", "inspircd_binary", "running_inspircd"]

_CONFIG = """\
<server name="irc.test" description="test" network="TestNet">
<admin name="t" nick="t" email="t@example.invalid">
<bind address="127.0.0.1" port="@PORT@" type="clients">
<connect name="main" allow="127.0.0.1" timeout="30" pingfreq="120" hardsendq="4M" softsendq="1M"
         recvq="64K" threshold="100000" commandrate="100000000" fakelag="no" localmax="1000"
         globalmax="1000" maxconnwarn="off" resolvehostnames="no" limit="5000">
<files motd="@DIR@/motd.txt">
<pid file="@DIR@/inspircd.pid">
<dns server="127.0.0.1" timeout="1">
<performance somaxconn="512" netbuffersize="65534" clonesonconnect="no">
<limits maxline="4096">
<log method="file" type="* -USERINPUT -USEROUTPUT" level="default" target="@DIR@/ircd.log">
<module name="cap"> <module name="ircv3"> <module name="ircv3_ctctags"> <module name="ircv3_msgid">
<module name="ircv3_servertime"> <module name="ircv3_echomessage">
"""


def inspircd_binary() -> str | None:
    """The server's executable (Debian puts it in /usr/sbin, which is not on every PATH)."""
    return shutil.which("inspircd") or shutil.which("inspircd", path="/usr/sbin:/usr/local/sbin")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def running_inspircd(folder: Path) -> Iterator[int]:
    """Start InspIRCd on a free loopback port with its files in ``folder``; yield the port; stop it."""
    binary = inspircd_binary()
    if binary is None:
        raise RuntimeError("inspircd is not installed")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "motd.txt").write_text("")
    port = _free_port()
    config = folder / "inspircd.conf"
    config.write_text(_CONFIG.replace("@DIR@", str(folder)).replace("@PORT@", str(port)))
    command = [binary, "--config", str(config), "--nofork"]
    if os.geteuid() == 0:
        command.append("--runasroot")
    with open(folder / "stdout.log", "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        while True:
            if process.poll() is not None:
                output = (folder / "stdout.log").read_text(errors="replace")
                raise RuntimeError(f"inspircd exited with {process.returncode}: {output[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("inspircd did not start listening within 15 s") from None
                time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass(frozen=True, slots=True)
class Heard:
    at: float  # time.perf_counter() when the line arrived
    sender: str
    text: str


class Viewer:
    """A chat user: joins the channel, says things, and keeps every channel line it hears."""

    def __init__(self, nick: str, port: int, channel: str) -> None:
        self.nick = nick
        self.port = port
        self.channel = "#" + channel.lstrip("#")
        self.heard: list[Heard] = []
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self._joined = asyncio.Event()
        self._news = asyncio.Event()

    async def connect(self, *, within: float = 10.0) -> None:
        self._reader, self._writer = await asyncio.open_connection("127.0.0.1", self.port)
        self._send(format_line("NICK", self.nick))
        self._send(format_line("USER", self.nick, "0", "*", self.nick))
        self._task = asyncio.get_running_loop().create_task(self._read())
        await asyncio.wait_for(self._joined.wait(), timeout=within)

    def _send(self, line: str) -> None:
        assert self._writer is not None
        self._writer.write(line.encode() + b"\r\n")

    async def say(self, text: str) -> float:
        """Say ``text`` in the channel; returns when it was written (time.perf_counter())."""
        self._send(format_line("PRIVMSG", self.channel, text))
        assert self._writer is not None
        await self._writer.drain()
        return time.perf_counter()

    async def _read(self) -> None:
        assert self._reader is not None
        while line := await self._reader.readline():
            message = parse_line(line.decode("utf-8", errors="replace"))
            if message.command == "PING":
                self._send(format_line("PONG", message.trailing))
            elif message.command == "001":
                self._send(format_line("JOIN", self.channel))
            elif message.command == "JOIN" and message.nick == self.nick:
                self._joined.set()
            elif message.command == "PRIVMSG" and message.params[0] == self.channel:
                self.heard.append(Heard(time.perf_counter(), message.nick or "", message.params[1]))
                self._news.set()

    def lines_for_me(self, sender: str | None = None) -> list[Heard]:
        """Lines that mention this viewer (``@nick`` as a word), optionally from ``sender`` only."""
        mention = "@" + self.nick
        return [
            heard
            for heard in self.heard
            if (sender is None or heard.sender == sender) and mention in heard.text.split()
        ]

    async def wait_for(self, predicate: Callable[[list[Heard]], bool], *, within: float) -> list[Heard]:
        """Wait until ``predicate(lines for me)`` holds; returns those lines."""
        deadline = time.monotonic() + within
        while not predicate(self.lines_for_me()):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{self.nick} heard only {[h.text for h in self.lines_for_me()]}")
            self._news.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._news.wait(), timeout=left)
        return self.lines_for_me()

    async def close(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(ConnectionError, OSError):
                self._send("QUIT :bye")
                await self._writer.drain()
            self._writer.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError, OSError):
                await self._task


class TwitchStanding:
    """A relay in front of the IRC server that tells the bot its standing as Twitch does (see the module's
    docstring). ``badges`` is the ``badges`` tag, e.g. ``"moderator/1"``, or ``""`` for a plain account."""

    def __init__(self, server_port: int, *, nick: str, badges: str = "") -> None:
        self.server_port = server_port
        self.nick = nick
        self.badges = badges
        self.port = 0
        self._server: asyncio.Server | None = None
        self._clients: list[tuple[asyncio.StreamWriter, set[str]]] = []  # the bot's side, its channels
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    def userstate(self, channel: str) -> bytes:
        tags = f"badge-info=;badges={self.badges};mod={1 if 'moderator/' in self.badges else 0}"
        return f"@{tags} :tmi.twitch.tv USERSTATE {channel}\r\n".encode()

    async def set_badges(self, badges: str) -> None:
        """Change the bot's standing and tell it at once, as Twitch does after a /mod or /unmod."""
        self.badges = badges
        for writer, channels in self._clients:
            for channel in channels:
                writer.write(self.userstate(channel))
            await writer.drain()

    async def _relay(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        server_reader, server_writer = await asyncio.open_connection("127.0.0.1", self.server_port)
        channels: set[str] = set()
        entry = (client_writer, channels)
        self._clients.append(entry)

        async def downstream() -> None:
            while line := await server_reader.readline():
                client_writer.write(line)
                message = parse_line(line.decode("utf-8", errors="replace"))
                if message.command == "JOIN" and message.nick == self.nick:
                    channels.add(message.trailing)
                    client_writer.write(self.userstate(message.trailing))
                await client_writer.drain()

        async def upstream() -> None:
            while line := await client_reader.readline():
                server_writer.write(line)
                await server_writer.drain()
                message = parse_line(line.decode("utf-8", errors="replace"))
                if message.command == "PRIVMSG" and message.params and message.params[0] in channels:
                    client_writer.write(self.userstate(message.params[0]))
                    await client_writer.drain()

        tasks = [asyncio.ensure_future(downstream()), asyncio.ensure_future(upstream())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        except (ConnectionError, OSError):
            pass
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._clients.remove(entry)
            for writer in (client_writer, server_writer):
                writer.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer, _channels in list(self._clients):
                writer.close()
            await self._server.wait_closed()

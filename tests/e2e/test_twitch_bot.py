"""The Twitch question bot end to end: a real IRC server on loopback (InspIRCd), viewers as IRC clients,
and the bot in this process, asking the simulator through the in-process client and the whole pipeline.

Each test has a channel, a simulator and a bot of its own, so no test hears another's lines or inherits
its buckets; the IRC server is shared by the module.

InspIRCd never tells a client its Twitch standing. Tests that need one put the relay of ``tests/ircd.py``
between the bot and the server: it passes every line through and adds the USERSTATE lines Twitch sends (on
joining, after each of the bot's messages, and when the test changes the badges). What these tests prove
about standing is that the bot reads it off a real connection and paces by it; that Twitch sends exactly
these lines is taken from its documentation.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from claudegate.bots.answerer import QueuedCallback
from claudegate.bots.answers import ELLIPSIS, tidy
from claudegate.bots.bot import ChatBot
from claudegate.bots.claude import ClaudeAnswerer
from claudegate.bots.irc import IrcTransport
from claudegate.bots.standing import Standing
from claudegate.bots.twitch import irc_config
from claudegate.client import AsyncClient
from claudegate.config import BotSettings, Settings, UpstreamSettings
from claudegate.simulator.server import SimulatorServer
from claudegate.simulator.settings import FaultRate, LatencyModel, SimulatorSettings
from tests.conftest import need_service
from tests.ircd import Heard, TwitchStanding, Viewer, inspircd_binary, running_inspircd
from tests.servers import running_in_thread

BOT = "claudebot"
_names = itertools.count()


@pytest.fixture(scope="module")
def ircd_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    need_service(inspircd_binary() is not None, "inspircd (apt-get install inspircd)")
    with running_inspircd(tmp_path_factory.mktemp("inspircd")) as port:
        yield port


class RecordingAnswerer:
    """The real answerer, keeping each reply as Claude (here, the simulator) wrote it."""

    def __init__(self, inner: ClaudeAnswerer) -> None:
        self.inner = inner
        self.replies: list[str] = []

    async def answer(
        self, question: str, *, max_chars: int, deadline_s: float, on_queued: QueuedCallback | None = None
    ) -> str:
        text = await self.inner.answer(
            question, max_chars=max_chars, deadline_s=deadline_s, on_queued=on_queued
        )
        self.replies.append(text)
        return text


@dataclass
class Stack:
    bot: ChatBot
    answerer: RecordingAnswerer
    simulator_url: str
    port: int
    channel: str
    relay: TwitchStanding | None = None

    async def viewers(self, *names: str) -> list[Viewer]:
        """Viewers joined to the channel, once the bot has joined it too (both take a second: InspIRCd
        completes registrations on its one-second tick, so they are done together)."""
        viewers = [Viewer(name, self.port, self.channel) for name in names]
        await asyncio.gather(
            *(viewer.connect() for viewer in viewers),
            asyncio.wait_for(self.bot.transport.wait_connected(), timeout=10),
        )
        return viewers

    async def ledger(self) -> list[dict[str, Any]]:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{self.simulator_url}/_simulator/ledger") as r,
        ):
            entries: list[dict[str, Any]] = await r.json()
            return entries


@asynccontextmanager
async def bot_stack(
    port: int,
    tmp: Path,
    *,
    simulator: SimulatorSettings | None = None,
    bot: dict[str, Any] | None = None,
    upstream: dict[str, Any] | None = None,
    badges: str | None = None,
    **settings: Any,
) -> AsyncIterator[Stack]:
    """A simulator, an in-process client in front of it and a bot on a channel of its own; with ``badges``,
    the bot reaches the server through the relay that tells it its standing as Twitch would."""
    channel = f"stream{next(_names)}"
    relay = None
    if badges is not None:
        relay = TwitchStanding(port, nick=BOT, badges=badges)
        await relay.start()
    bot_settings = BotSettings(
        **{
            "nick": BOT,
            "irc_host": "127.0.0.1",
            "irc_port": port if relay is None else relay.port,
            "irc_tls": False,
            "moderator": True,
            "metrics_port": 0,
            "notice_batch_s": 0.05,
            **(bot or {}),
        }
    )
    with running_in_thread(lambda: SimulatorServer(simulator or SimulatorSettings())) as server:
        assert isinstance(server, SimulatorServer)
        values: dict[str, Any] = {
            "anthropic_api_key": "sk-test",
            "database_url": f"sqlite+aiosqlite:///{tmp / 'claudegate.db'}",
            "usage_spill_file": tmp / "spill.jsonl",
            "usage_flush_interval_s": 0.05,
            "retry_max_attempts": 1,
            "bot": bot_settings,
        }
        if upstream is not None:
            values["upstreams"] = [
                UpstreamSettings(name="sim", url=server.url, api_key="sk-test", **upstream)
            ]
        else:
            values["upstream_url"] = server.url
        values.update(settings)
        async with AsyncClient(settings=Settings(**values), org="twitch", user=channel) as client:
            answerer = RecordingAnswerer(
                ClaudeAnswerer(
                    client,
                    model=bot_settings.model,
                    system_prompt=bot_settings.system_prompt,
                    chars_per_token=bot_settings.chars_per_token,
                )
            )
            chat_bot = ChatBot(bot_settings, IrcTransport(irc_config(bot_settings, channel, None)), answerer)
            await chat_bot.start()
            try:
                yield Stack(chat_bot, answerer, server.url, port, channel, relay)
            finally:
                await chat_bot.stop(grace_s=2)
                if relay is not None:
                    await relay.close()


def one(lines: list[Heard]) -> bool:
    return len(lines) >= 1


def body(line: str) -> str:
    """The line without its leading @mentions."""
    return re.sub(r"^(@\S+ )+", "", line)


async def test_an_answer_starts_with_the_mention_and_is_cut_at_a_boundary(
    ircd_port: int, tmp_path: Path
) -> None:
    async with bot_stack(ircd_port, tmp_path) as stack:
        (viewer,) = await stack.viewers("alice_1")
        # A long question: the simulator's reply grows with it, past the budget, so it must be cut.
        asked = await viewer.say("!ask " + "¿y sí? 🦀 " * 50)
        (line,) = await viewer.wait_for(one, within=10)
        assert line.sender == BOT
        assert line.text.startswith("@alice_1 ")
        assert len(line.text) <= 450
        reply = tidy(stack.answerer.replies[0])  # one line: paragraph breaks become spaces
        assert len(reply) > 450 - len("@alice_1 ")  # it had to be cut
        text = body(line.text)
        kept = text.removesuffix(ELLIPSIS)
        assert reply.startswith(kept)
        # Cut after a sentence, or after a whole word with an ellipsis: never inside a word.
        assert (text.endswith(".") and reply[len(kept)] == " ") or (
            text.endswith(ELLIPSIS) and reply[len(kept)] == " "
        )
        assert line.at - asked < 5

        # The answer time is in the bot's metrics, with its quantiles; the bot is healthy.
        assert stack.bot.health_server is not None
        base = f"http://127.0.0.1:{stack.bot.health_server.port}"
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{base}/health") as response:
                assert response.status == 200
                assert (await response.json())["status"] == "healthy"
            async with session.get(f"{base}/metrics") as response:
                metrics = await response.text()
        assert 'claudegate_bot_recent_answer_seconds{quantile="0.9"}' in metrics
        assert 'claudegate_bot_questions_total{outcome="answered"} 1.0' in metrics
        await viewer.close()


async def test_a_viewer_asks_once_per_cooldown(ircd_port: int, tmp_path: Path) -> None:
    async with bot_stack(ircd_port, tmp_path) as stack:
        (viewer,) = await stack.viewers("bob_2")
        await viewer.say("!ask what is a borrow checker?")
        await viewer.wait_for(one, within=10)
        await viewer.say("!ask and what is a lifetime?")
        lines = await viewer.wait_for(lambda lines: len(lines) >= 2, within=10)
        match = re.fullmatch(r"@bob_2 you can ask again in (\d+) s\.", lines[1].text)
        assert match is not None, lines[1].text
        assert 55 <= int(match.group(1)) <= 60
        assert len(await stack.ledger()) == 1
        await viewer.close()


async def test_identical_questions_in_flight_are_answered_once_to_everyone(
    ircd_port: int, tmp_path: Path
) -> None:
    slow = SimulatorSettings(latency=LatencyModel(ttft_s=0.8))
    async with bot_stack(ircd_port, tmp_path, simulator=slow) as stack:
        viewers = await stack.viewers("carol_3", "dave_3", "erin_3")
        for viewer, text in zip(viewers, ("What is Rust?", "what is rust", "WHAT IS RUST ?!"), strict=True):
            await viewer.say(f"!ask {text}")
        answers = [(await viewer.wait_for(one, within=10))[0] for viewer in viewers]
        assert len({heard.text for heard in answers}) == 1
        assert answers[0].text.startswith("@carol_3 @dave_3 @erin_3 ")
        assert len(await stack.ledger()) == 1
        for viewer in viewers:
            await viewer.close()


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (FaultRate("overloaded", 1.0), "sorry, I'm too busy to answer within 10 s"),
        (FaultRate("server_error", 1.0), "sorry, I can't reach Claude right now"),
        (FaultRate("timeout", 1.0), "sorry, the answer took too long"),
        (FaultRate("slow", 1.0, "1.5"), "sorry, the answer took too long"),
    ],
)
async def test_simulator_faults_get_the_fallback_of_their_kind(
    ircd_port: int, tmp_path: Path, fault: FaultRate, expected: str
) -> None:
    simulator = SimulatorSettings(faults=(fault,))
    async with bot_stack(ircd_port, tmp_path, simulator=simulator, bot={"answer_timeout_s": 0.5}) as stack:
        (viewer,) = await stack.viewers(f"frank_{fault.kind}")
        await viewer.say("!ask will this one work?")
        (line,) = await viewer.wait_for(one, within=10)
        assert line.text.startswith(f"@frank_{fault.kind} {expected}"), line.text
        await viewer.close()


async def test_waiting_viewers_hear_their_own_wait_and_the_hopeless_are_told_at_once(
    ircd_port: int, tmp_path: Path
) -> None:
    """A tier-1 account (50 requests a minute) that may spend one request at once: after the first
    question, each must wait about 1.2 s more for the bucket. With a 3 s deadline, the second is queued:
    it hears its answer, or first its own wait and then the answer; the fourth could not start in time and
    hears so straight away, with when to ask again. (The third is on the edge: queued or refused,
    depending on the buckets' exact levels.) How soon and how exactly waits are told is timed on a fake
    clock in tests/unit/test_bot_waits.py and measured by benchmarks/twitch_burst.py."""
    tier_1 = SimulatorSettings(tier="1", burst=0.02)
    async with bot_stack(
        ircd_port,
        tmp_path,
        simulator=tier_1,
        bot={"deadline_s": 3.0, "notice_after_s": 1.0},
        upstream_tier="1",
        flow_burst=0.02,
    ) as stack:
        viewers = await stack.viewers("gina_5", "hugo_5", "iris_5", "ivan_5")
        first, second, _third, fourth = viewers
        await first.say("!ask the first question")
        await first.wait_for(one, within=10)
        asked = {}
        for viewer in viewers[1:]:
            asked[viewer.nick] = await viewer.say(f"!ask the question of {viewer.nick}")
        (refusal,) = await fourth.wait_for(one, within=3)
        assert refusal.at - asked["ivan_5"] < 0.5
        busy = r"sorry, I'm too busy to answer within 3 s right now\. Please ask again in about (\d+) s\."
        match = re.fullmatch(r"(@\S+ )*@ivan_5 " + busy, refusal.text)  # maybe told with the third
        assert match is not None, refusal.text
        # After the second and the third (queued, or refused with its turn kept ahead of the fourth's).
        assert 2 <= int(match.group(2)) <= 6
        (heard, *_rest) = await second.wait_for(one, within=3)
        told = re.fullmatch(r"answers coming in about: (?:.*, )?@hugo_5 (\d+) s(?:, .*)?", heard.text)
        if told is not None:
            assert 1 <= int(told.group(1)) <= 4  # its turn at the bucket, then the answer
            answer = (await second.wait_for(lambda lines: len(lines) >= 2, within=10))[1]
        else:
            answer = heard
        assert not body(answer.text).startswith(("sorry", "answers coming")), answer.text
        for viewer in viewers:
            await viewer.close()


async def test_the_bot_reads_its_standing_and_paces_by_it(ircd_port: int, tmp_path: Path) -> None:
    async with bot_stack(ircd_port, tmp_path, badges="", bot={"moderator": None}) as stack:
        (viewer,) = await stack.viewers("mona_8")
        bot = stack.bot
        assert stack.relay is not None
        await viewer.say("!ask what does the bot know about itself?")
        await viewer.wait_for(one, within=10)
        assert bot.service.standing == Standing.viewer
        assert bot.outbox.window.limit == 19
        assert bot.health_server is not None
        health_url = f"http://127.0.0.1:{bot.health_server.port}/health"
        async with aiohttp.ClientSession() as session, session.get(health_url) as response:
            health = await response.json()
        assert (health["standing"], health["lines_per_window"]) == ("viewer", 19)
        assert "not a moderator" in health["note"]

        await stack.relay.set_badges("moderator/1")  # the broadcaster made the bot a moderator
        await wait_until(lambda: bot.service.standing == Standing.moderator)
        assert bot.outbox.window.limit == 95
        async with aiohttp.ClientSession() as session, session.get(health_url) as response:
            health = await response.json()
        assert (health["standing"], health["lines_per_window"], health["note"]) == ("moderator", 95, None)
        await stack.relay.set_badges("")  # and took it back: the lower limit at once
        await wait_until(lambda: bot.outbox.window.limit == 19)
        await viewer.close()


async def test_a_burst_on_a_plain_account_packs_whole_answers_into_few_lines(
    ircd_port: int, tmp_path: Path
) -> None:
    """30 questions at once for a bot that may send 19 lines per 30 s: answers are asked for shorter and
    packed several to a line, each whole and each viewer mentioned once, so all go out in this window."""
    quick = SimulatorSettings(latency=LatencyModel(ttft_s=0.3))
    async with bot_stack(ircd_port, tmp_path, simulator=quick, badges="", bot={"moderator": None}) as stack:
        viewers = await stack.viewers(*(f"pack_{i:02d}" for i in range(30)))
        await wait_until(lambda: stack.bot.service.standing == Standing.viewer)
        questions = {viewer.nick: f"question {i} about packing lines" for i, viewer in enumerate(viewers)}
        await asyncio.gather(*(viewer.say(f"!ask {questions[viewer.nick]}") for viewer in viewers))
        answers = [(await viewer.wait_for(one, within=15))[0] for viewer in viewers]
        lines = {heard.text for heard in answers}
        assert len(lines) < 19  # a line each would have taken more than the window allows
        assert any(line.count(" | ") >= 2 for line in lines)
        assert all(len(line) <= 500 for line in lines)
        mentions = [word for line in lines for word in line.split() if word.startswith("@")]
        assert sorted(mentions) == sorted(f"@{viewer.nick}" for viewer in viewers)
        replies = [tidy(reply).removesuffix(ELLIPSIS) for reply in stack.answerer.replies]
        for viewer, heard in zip(viewers, answers, strict=True):
            part = next(p for p in heard.text.split(" | ") if p.startswith(f"@{viewer.nick} "))
            text = body(part).removesuffix(ELLIPSIS)
            assert any(reply.startswith(text) for reply in replies), part  # whole, never cut by packing
        for viewer in viewers:
            await viewer.close()


async def test_viewers_beyond_the_window_hear_their_own_wait_and_it_comes_true(
    ircd_port: int, tmp_path: Path
) -> None:
    """Two lines per 6 s: the first answer takes one, so eight more answers cannot all go now. Each of their
    viewers hears their own wait first, on the window's other line (the limit holds their answers until
    the first line leaves the window, so the wait is most of it), then the answer. How soon and how exactly
    is timed on a fake clock in tests/unit/test_bot_waits.py and measured by benchmarks/twitch_burst.py."""
    window = {"moderator": None, "messages_per_window": 2, "message_safety": 1.0, "message_window_s": 6.0}
    async with bot_stack(ircd_port, tmp_path, badges="", bot=window) as stack:
        names = ["nora_9", *(f"wait_{i}" for i in range(8))]
        first, *rest = await stack.viewers(*names)
        await first.say("!ask the first question of the stream")
        await first.wait_for(one, within=10)
        for viewer in rest:
            await viewer.say(f"!ask a question from {viewer.nick} about waiting")
        for viewer in rest:
            notice, answer = await viewer.wait_for(lambda lines: len(lines) >= 2, within=20)
            told = re.search(rf"@{viewer.nick} (\d+) s", notice.text)
            assert notice.text.startswith("answers coming in about: "), notice.text
            assert told is not None
            assert 1 <= int(told.group(1)) <= 6  # within the 6 s window
            assert body(part_of(answer.text, viewer.nick)).startswith(tuple("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
        for viewer in (first, *rest):
            await viewer.close()


async def wait_until(condition: Callable[[], bool], within: float = 5.0) -> None:
    """Until ``condition`` holds, checking as lines arrive (the bot reacts to the server, not to a timer)."""
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        await asyncio.sleep(0.02)


def part_of(line: str, nick: str) -> str:
    """A viewer's answer in a line that may carry several."""
    return next(part for part in line.split(" | ") if part.startswith(f"@{nick} "))


async def test_shutdown_stops_taking_questions_and_answers_the_accepted_ones(
    ircd_port: int, tmp_path: Path
) -> None:
    slow = SimulatorSettings(latency=LatencyModel(ttft_s=1.0))
    async with bot_stack(ircd_port, tmp_path, simulator=slow) as stack:
        alice, bob, late = await stack.viewers("jack_6", "kate_6", "late_6")
        await alice.say("!ask first accepted question")
        await bob.say("!ask second accepted question")
        await asyncio.sleep(0.2)
        stopping = asyncio.get_running_loop().create_task(stack.bot.stop(grace_s=5))
        await asyncio.sleep(0.1)
        await late.say("!ask a question during shutdown")
        (closing,) = await late.wait_for(one, within=3)
        assert closing.text == "@late_6 sorry, I'm going offline and not taking questions now."
        began = time.monotonic()
        await stopping
        assert time.monotonic() - began < 5
        for viewer in (alice, bob):
            (answer,) = await viewer.wait_for(one, within=1)
            assert not body(answer.text).startswith("sorry")
        for viewer in (alice, bob, late):
            await viewer.close()


async def test_shutdown_apologises_for_what_cannot_be_answered_within_the_grace_period(
    ircd_port: int, tmp_path: Path
) -> None:
    very_slow = SimulatorSettings(latency=LatencyModel(ttft_s=2.5))
    async with bot_stack(ircd_port, tmp_path, simulator=very_slow) as stack:
        (viewer,) = await stack.viewers("liam_7")
        await viewer.say("!ask something that takes ages")
        await asyncio.sleep(0.2)
        began = time.monotonic()
        await stack.bot.stop(grace_s=1.0)
        assert time.monotonic() - began < 1.5
        (line,) = await viewer.wait_for(one, within=1)
        assert line.text == (
            "@liam_7 sorry, I'm going offline before your answer was ready. Please ask again when I'm back."
        )
        await viewer.close()

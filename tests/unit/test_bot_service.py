"""The question service with a fake answerer and an in-memory chat: de-duplication, budgets, packing, waits,
fallbacks and draining, without a network (tests/e2e/test_twitch_bot.py runs the real thing).

The event loop's clock is fake (looptime): the bot's timers and the answerer's delays run on it, and the
tests move it by sleeping on it, so nothing here waits in real time."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from claudegate.bots.answerer import AnswerFailed, QueuedCallback
from claudegate.bots.bot import ChatBot
from claudegate.bots.standing import Standing
from claudegate.bots.transport import ChatHandler, ChatMessage
from claudegate.config import BotSettings

# A loop of each test's own: on the session's loop, other modules' servers and threads would move its clock.
pytestmark = [pytest.mark.looptime, pytest.mark.asyncio(loop_scope="function")]


class MemoryChat:
    """A ChatTransport whose chat is a list."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.sent_at: list[float] = []  # since the bot started
        self.started = 0.0
        self.connected = True
        self.handler: ChatHandler | None = None
        self._closed = asyncio.Event()

    async def run(self, handler: ChatHandler) -> None:
        self.handler = handler
        self.started = asyncio.get_running_loop().time()
        await self._closed.wait()

    async def wait_connected(self) -> None:
        return None

    async def send(self, text: str) -> None:
        self.lines.append(text)
        self.sent_at.append(asyncio.get_running_loop().time() - self.started)

    async def close(self) -> None:
        self._closed.set()

    def say(self, login: str, text: str) -> None:
        assert self.handler is not None
        self.handler.on_message(ChatMessage(channel="chan", login=login, text=text))

    def to(self, login: str) -> list[str]:
        return [line for line in self.lines if f"@{login} " in line + " "]

    def times(self) -> list[float]:
        return self.sent_at


@dataclass
class FakeAnswerer:
    """Answers after ``delay`` with a text longer than any budget (the bot fits it), made of sentences."""

    delay: float = 0.0
    queued: tuple[int, float] | None = None
    failure: AnswerFailed | None = None
    delays: Callable[[str], float] | None = None  # per question, instead of ``delay``
    queued_for: Callable[[str], tuple[int, float] | None] | None = None  # per question, instead of ``queued``
    calls: list[dict[str, Any]] = field(default_factory=list)

    async def answer(
        self, question: str, *, max_chars: int, deadline_s: float, on_queued: QueuedCallback | None = None
    ) -> str:
        now = asyncio.get_running_loop().time()
        self.calls.append({"question": question, "max_chars": max_chars, "deadline_s": deadline_s, "at": now})
        queued = self.queued if self.queued_for is None else self.queued_for(question)
        if queued is not None and on_queued is not None:
            on_queued(*queued)
        await asyncio.sleep(self.delay if self.delays is None else self.delays(question))
        if self.failure is not None:
            raise self.failure
        return f"The answer to {question} is simple. " * 30


def settings(**overrides: Any) -> BotSettings:
    values: dict[str, Any] = {
        "notice_batch_s": 0.01,
        "moderator": True,
        "metrics_port": None,
    }
    values.update(overrides)
    return BotSettings(**values)


@pytest.fixture
def chat() -> MemoryChat:
    return MemoryChat()


async def started(chat: MemoryChat, answerer: FakeAnswerer, **overrides: Any) -> ChatBot:
    bot = ChatBot(settings(**overrides), chat, answerer)
    await bot.start()
    await asyncio.sleep(0)
    return bot


async def settle(seconds: float = 0.05) -> None:
    await asyncio.sleep(seconds)


async def test_an_answer_starts_with_the_mention_and_fits(chat: MemoryChat) -> None:
    answerer = FakeAnswerer()
    bot = await started(chat, answerer)
    chat.say("alice", "!ask why is the sky blue?")
    await settle()
    (line,) = chat.to("alice")
    assert line.startswith("@alice The answer")
    assert len(line) <= 450
    assert answerer.calls[0]["max_chars"] == 450 - len("@alice ")
    assert answerer.calls[0]["deadline_s"] == pytest.approx(10.0, abs=0.1)
    await bot.stop(1)


async def test_identical_questions_in_flight_are_answered_once_to_everyone(chat: MemoryChat) -> None:
    answerer = FakeAnswerer(delay=0.1)
    bot = await started(chat, answerer)
    chat.say("alice", "!ask What is Rust?")
    chat.say("bob", "!ask what is rust")
    chat.say("carol", "!ask WHAT IS RUST?!")
    await settle(0.2)
    assert len(answerer.calls) == 1
    (line,) = [line for line in chat.lines if "answer" in line]
    assert line.startswith("@alice @bob @carol The answer")
    await bot.stop(1)


async def test_the_cooldown_runs_from_the_answer(chat: MemoryChat) -> None:
    bot = await started(chat, FakeAnswerer(delay=5.0, queued=(1, 3.0)))
    chat.say("alice", "!ask first question")
    await settle(1.0)
    chat.say("alice", "!ask second question")  # before the answer: no invitation to ask again
    await settle(4.5)
    assert chat.to("alice") == [
        "@alice your question is still being answered; you can ask again 60 s after its answer.",
        "answers coming in about: @alice 4 s",
        chat.to("alice")[2],
    ]
    assert chat.to("alice")[2].startswith("@alice The answer to first question")  # sent at 5 s
    await settle(25.0)  # 30.5 s after the question, 25.5 s after the answer
    chat.say("alice", "!ask third question")
    await settle(0.1)
    assert chat.to("alice")[3] == "@alice you can ask again in 35 s."
    await bot.stop(1)


async def test_refused_questions_get_a_short_reason(chat: MemoryChat) -> None:
    answerer = FakeAnswerer()
    bot = await started(chat, answerer, blocked_phrases=["spoiler"])
    chat.say("alice", "!ask hi")
    chat.say("bob", "!ask any spoiler for the ending?")
    chat.say("carol", "!ask " + "x" * 501)
    await settle()
    assert chat.to("alice") == ["@alice please ask a question of at least 5 characters."]
    assert chat.to("bob") == ["@bob sorry, I can't take that question."]
    assert chat.to("carol") == ["@carol please keep your question under 500 characters."]
    assert answerer.calls == []
    await bot.stop(1)


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        (
            AnswerFailed("busy", retry_after=41.2),
            "too busy to answer within 10 s right now. Please ask again in about 42 s.",
        ),
        (AnswerFailed("slow"), "the answer took too long"),
        (AnswerFailed("trouble"), "I can't reach Claude right now"),
    ],
)
async def test_failures_get_the_message_of_their_kind(
    chat: MemoryChat, failure: AnswerFailed, expected: str
) -> None:
    bot = await started(chat, FakeAnswerer(failure=failure))
    chat.say("alice", "!ask will this work?")
    chat.say("bob", "!ask will this work")
    await settle()
    (line,) = chat.lines
    assert line.startswith("@alice @bob sorry")
    assert expected in line
    await bot.stop(1)


async def test_an_answer_that_takes_too_long_is_given_up(chat: MemoryChat) -> None:
    bot = await started(chat, FakeAnswerer(delay=5), answer_timeout_s=0.1)
    chat.say("alice", "!ask slow one please")
    await settle(0.3)
    assert chat.to("alice") == [
        "@alice sorry, the answer took too long to come. Please ask again in a minute."
    ]
    await bot.stop(1)


async def test_a_queued_viewer_hears_their_own_wait_once_within_two_seconds(chat: MemoryChat) -> None:
    bot = await started(chat, FakeAnswerer(delay=9.0, queued=(4, 7.0)))
    chat.say("alice", "!ask queued question")
    await settle(2.0)
    assert chat.to("alice") == ["answers coming in about: @alice 8 s"]
    assert chat.times()[0] <= 2.0
    await settle(8.0)
    assert len(chat.to("alice")) == 2  # then the answer, and nothing between
    assert chat.to("alice")[1].startswith("@alice The answer")
    await bot.stop(1)


async def test_a_queue_that_moves_as_the_bots_own_calls_end_is_not_waited_on_as_predicted(
    chat: MemoryChat,
) -> None:
    # Two calls run; the third waits first in the pipeline's queue, which guesses 7 s before it starts
    # (it has timed no call yet). It starts when a running call ends (2 s, the time an answer is expected
    # to take) and is answered about 2 s later: at 1.5 s its viewer is told 3 s, not the 8 s of the guess.
    def queued(question: str) -> tuple[int, float] | None:
        return (1, 7.0) if question.endswith("2") else None

    def delay(question: str) -> float:
        return 4.0 if question.endswith("2") else 2.0

    bot = await started(chat, FakeAnswerer(delays=delay, queued_for=queued))
    for i in range(3):
        chat.say(f"viewer{i}", f"!ask question number {i}")
    await settle(1.75)
    assert chat.to("viewer2") == ["answers coming in about: @viewer2 3 s"]
    await settle(2.5)
    assert chat.to("viewer2")[1].startswith("@viewer2 The answer")  # at 4 s: as told, within the margin
    await bot.stop(5)


async def test_an_answer_due_within_a_couple_of_seconds_gets_no_notice(chat: MemoryChat) -> None:
    bot = await started(chat, FakeAnswerer(delay=1.6))
    for i in range(20):
        chat.say(f"viewer{i}", f"!ask question number {i}")
    await settle(5.0)
    assert all(" The answer to question number" in line for line in chat.lines)
    mentions = [word for line in chat.lines for word in line.split() if word.startswith("@")]
    assert sorted(mentions) == sorted(f"@viewer{i}" for i in range(20))
    await bot.stop(1)


async def test_when_lines_are_scarce_answers_are_shorter_and_share_lines(chat: MemoryChat) -> None:
    # A plain account's 19 lines per 30 s, and 60 questions at once: one line each would leave 41 viewers
    # waiting 30 s for the next window.
    answerer = FakeAnswerer(delay=1.0)
    bot = await started(chat, answerer, moderator=False)
    for i in range(60):
        chat.say(f"viewer{i:02d}", f"!ask question number {i}")
    await settle(5.0)
    budgets = [call["max_chars"] for call in answerer.calls]
    assert budgets[0] == 450 - len("@viewer00 ")  # the first question alone gets a full line
    assert max(budgets[10:]) < 100  # a burst later: a share of one
    assert len(chat.lines) <= 19
    assert all(len(line) <= 500 for line in chat.lines)
    mentions = [word for line in chat.lines for word in line.split() if word.startswith("@")]
    assert sorted(mentions) == sorted(f"@viewer{i:02d}" for i in range(60))  # everyone once, within 5 s
    for line in chat.lines:
        for part in line.split(" | "):
            mention, _, text = part.partition(" ")
            number = int(mention.removeprefix("@viewer"))
            call = next(c for c in answerer.calls if c["question"] == f"question number {number}")
            assert len(text) <= call["max_chars"]  # fitted to its own budget, whole
            assert text.startswith(f"The answer to question number {number} is simple.")
    await bot.stop(1)


async def test_nobody_waits_in_silence_past_two_seconds(chat: MemoryChat) -> None:
    # Questions keep coming for three seconds on a plain account: lines are held for packing, answers
    # arrive over time, and some miss the window; everyone hears something (their answer or their own
    # wait) within two seconds of asking.
    bot = await started(chat, FakeAnswerer(delay=1.2), moderator=False)
    asked: dict[str, float] = {}
    for i in range(90):
        asked[f"@viewer{i:02d}"] = i / 30
        chat.say(f"viewer{i:02d}", f"!ask question number {i}")
        await settle(1 / 30)
    await settle(40.0)
    first: dict[str, float] = {}
    for at, line in zip(chat.times(), chat.lines, strict=True):
        for word in line.replace(",", " ").split():
            if word.startswith("@"):
                first.setdefault(word, at)
    assert set(first) == set(asked)
    late = {
        mention: round(first[mention] - asked[mention], 2)
        for mention in asked
        if first[mention] - asked[mention] > 2
    }
    assert late == {}
    assert len(chat.lines) <= 19 + 19  # two windows
    await bot.stop(1)


async def test_answers_trickling_in_to_viewers_already_told_all_go_out(chat: MemoryChat) -> None:
    # A plain account, and queued calls whose answers come one every 0.2 s (a rate-limited account): every
    # viewer hears their wait first, then lines are held for packing while answers are still coming.
    answerer = FakeAnswerer(queued=(5, 8.0), delays=lambda question: 2.0 + 0.2 * int(question.split()[-1]))
    bot = await started(chat, answerer, moderator=False)
    for i in range(60):
        chat.say(f"viewer{i:02d}", f"!ask question number {i}")
    await settle(75.0)
    answered = [
        part.split()[0] for line in chat.lines if "answers coming" not in line for part in line.split(" | ")
    ]
    assert sorted(answered) == sorted(f"@viewer{i:02d}" for i in range(60))
    await bot.stop(1)


async def test_answers_that_miss_the_window_hear_when_the_next_one_opens(chat: MemoryChat) -> None:
    # Two lines per 30 s: the first answer takes one; ten more answers cannot share the other (six to a
    # line at most), so it tells their viewers how long the limit holds them, and they go 30 s later.
    bot = await started(chat, FakeAnswerer(delay=0.5), messages_per_window=2, message_safety=1.0)
    chat.say("first", "!ask the first question")
    await settle(1.0)
    assert chat.to("first")[0].startswith("@first The answer")
    for i in range(10):
        chat.say(f"late{i}", f"!ask late question {i}")
    await settle(2.0)
    assert len(chat.lines) == 2
    told = re.fullmatch(r"answers coming in about: (.*)", chat.lines[1])
    assert told is not None, chat.lines[1]
    waits = {
        mention: int(seconds.removesuffix(" s"))
        for mention, seconds in (e.split(" ", 1) for e in told.group(1).split(", "))
    }
    assert set(waits) == {f"@late{i}" for i in range(10)}
    assert chat.times()[1] == pytest.approx(2.5)  # 1.5 s after asking
    await settle(31.0)
    assert len(chat.lines) == 4  # when the first line, then the notice, left the window
    assert chat.times()[2:] == [pytest.approx(30.5), pytest.approx(32.5)]
    for at, line in zip(chat.times()[2:], chat.lines[2:], strict=True):
        for part in line.split(" | "):
            mention = part.split()[0]
            assert abs(at - 2.5 - waits.pop(mention)) <= 3  # as told, within the margin
    assert waits == {}
    await bot.stop(1)


async def test_no_answer_comes_later_than_its_viewer_was_last_told(chat: MemoryChat) -> None:
    # Four lines per 30 s; thirty quick answers need five lines, and one slow answer keeps lines kept from
    # answers while it is outstanding. Whoever is told a wait gets the answer by then (within the margin),
    # or sooner when a line frees up, never later without being told again.
    answerer = FakeAnswerer(delays=lambda question: 12.0 if question.endswith("slow") else 0.5)
    bot = await started(chat, answerer, messages_per_window=4, message_safety=1.0)
    for i in range(30):
        chat.say(f"quick{i:02d}", f"!ask quick question {i}")
    chat.say("slowpoke", "!ask a question that is slow")
    await settle(70.0)
    told: dict[str, tuple[float, int]] = {}
    answered: dict[str, float] = {}
    for at, line in zip(chat.times(), chat.lines, strict=True):
        if line.startswith("answers coming in about: "):
            for entry in line.removeprefix("answers coming in about: ").split(", "):
                mention, seconds = entry.split(" ", 1)
                told[mention] = (at, int(seconds.removesuffix(" s")))
        else:
            answered.update((part.split()[0], at) for part in line.split(" | "))
    assert len(answered) == 31
    assert "@slowpoke" in told
    for mention, (at, seconds) in told.items():
        assert answered[mention] <= at + seconds + max(3.0, 0.2 * seconds), mention
    await bot.stop(1)


async def test_the_bot_paces_by_the_standing_twitch_reports(chat: MemoryChat) -> None:
    bot = await started(chat, FakeAnswerer(), moderator=None)
    assert bot.outbox.window.limit == 19  # a plain account's until Twitch says otherwise
    assert bot.health().note is not None
    assert chat.handler is not None
    chat.handler.on_standing(Standing.moderator)
    assert bot.outbox.window.limit == 95
    health = bot.health()
    assert (health.standing, health.lines_per_window, health.note) == (Standing.moderator, 95, None)
    chat.handler.on_standing(Standing.vip)  # no documented higher limit for a VIP
    assert bot.outbox.window.limit == 19
    assert "not a moderator" in (bot.health().note or "")
    await bot.stop(1)

    overridden = await started(MemoryChat(), FakeAnswerer(), moderator=False)
    overridden.service.on_standing(Standing.broadcaster)
    assert overridden.outbox.window.limit == 19  # the setting overrides what Twitch says
    await overridden.stop(1)


async def test_shutdown_answers_what_it_can_and_apologises_for_the_rest(chat: MemoryChat) -> None:
    answerer = FakeAnswerer(delay=0.2)
    bot = await started(chat, answerer)
    chat.say("alice", "!ask quick one here")
    stopping = asyncio.get_running_loop().create_task(bot.stop(grace_s=1.0))
    await asyncio.sleep(0.01)
    chat.say("bob", "!ask too late now")
    await stopping
    assert chat.to("alice")[0].startswith("@alice The answer")
    assert chat.to("bob") == ["@bob sorry, I'm going offline and not taking questions now."]

    chat2 = MemoryChat()
    bot2 = await started(chat2, FakeAnswerer(delay=10))
    chat2.say("carol", "!ask a very slow one")
    await bot2.stop(grace_s=0.3)
    assert chat2.to("carol") == [
        "@carol sorry, I'm going offline before your answer was ready. Please ask again when I'm back."
    ]


async def test_health_reflects_queue_use(chat: MemoryChat) -> None:
    bot = await started(chat, FakeAnswerer(delay=0.3), max_pending=4)
    assert bot.health().status.value == "healthy"
    for i in range(4):
        chat.say(f"v{i}", f"!ask question {i} here")
    assert bot.service.queue_use == 1.0
    assert bot.health().status.value == "unhealthy"
    chat.say("late", "!ask one more question")  # over max_pending: busy at once
    await settle(0.05)
    assert any(line.startswith("@late sorry, I'm too busy") for line in chat.lines)
    await bot.stop(1)

"""The question service with a fake answerer and an in-memory chat: de-duplication, notices, fallbacks and
draining, without a network (tests/e2e/test_twitch_bot.py runs the real thing)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest

from claudegate.bots.answerer import AnswerFailed, QueuedCallback
from claudegate.bots.bot import ChatBot
from claudegate.bots.transport import ChatHandler, ChatMessage
from claudegate.config import BotSettings


class MemoryChat:
    """A ChatTransport whose chat is a list."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.connected = True
        self.handler: ChatHandler | None = None
        self._closed = asyncio.Event()

    async def run(self, handler: ChatHandler) -> None:
        self.handler = handler
        await self._closed.wait()

    async def wait_connected(self) -> None:
        return None

    async def send(self, text: str) -> None:
        self.lines.append(text)

    async def close(self) -> None:
        self._closed.set()

    def say(self, login: str, text: str) -> None:
        assert self.handler is not None
        self.handler.on_message(ChatMessage(channel="chan", login=login, text=text))

    def to(self, login: str) -> list[str]:
        return [line for line in self.lines if f"@{login} " in line + " "]


@dataclass
class FakeAnswerer:
    delay: float = 0.0
    queued: tuple[int, float] | None = None
    failure: AnswerFailed | None = None
    calls: list[dict[str, Any]] = field(default_factory=list)

    async def answer(
        self, question: str, *, max_chars: int, deadline_s: float, on_queued: QueuedCallback | None = None
    ) -> str:
        self.calls.append({"question": question, "max_chars": max_chars, "deadline_s": deadline_s})
        if self.queued is not None and on_queued is not None:
            on_queued(*self.queued)
        await asyncio.sleep(self.delay)
        if self.failure is not None:
            raise self.failure
        return f"The answer to {question} is simple. " * 30


def settings(**overrides: Any) -> BotSettings:
    values: dict[str, Any] = {
        "notice_batch_s": 0.01,
        "ack_after_s": 0.1,
        "notice_after_s": 3.0,
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


async def test_cooldown_tells_when_to_ask_again(chat: MemoryChat) -> None:
    bot = await started(chat, FakeAnswerer())
    chat.say("alice", "!ask first question")
    await settle()
    chat.say("alice", "!ask second question")
    chat.say("alice", "!ask third question")  # told once per 10 s at most
    await settle()
    assert chat.to("alice")[1:] == ["@alice you can ask again in 60 s."]
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


async def test_a_queued_viewer_is_told_position_and_wait(chat: MemoryChat) -> None:
    bot = await started(chat, FakeAnswerer(delay=0.2, queued=(4, 7.0)))
    chat.say("alice", "!ask queued question")
    await settle(0.1)
    assert chat.to("alice") == ["@alice you're #4 in the queue; answer in about 9 s."]
    await settle(0.2)
    assert len(chat.to("alice")) == 2
    await bot.stop(1)


async def test_when_busy_nobody_is_left_in_silence(chat: MemoryChat) -> None:
    bot = await started(chat, FakeAnswerer(delay=0.3), busy_questions=3)
    for i in range(5):
        chat.say(f"viewer{i}", f"!ask question number {i}")
    await settle(0.2)
    (ack,) = chat.lines
    assert ack.startswith("@viewer0 @viewer1 @viewer2 @viewer3 @viewer4 got your questions, answers in about")
    await settle(0.3)
    assert len(chat.lines) == 6
    await bot.stop(1)


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


async def test_answers_come_before_notices_and_the_last_send_says_what_the_limit_holds(
    chat: MemoryChat,
) -> None:
    # Four sends per half second: eight questions answered at once cannot all go in one window.
    bot = await started(
        chat,
        FakeAnswerer(delay=0.15),
        messages_per_window=4,
        message_safety=1.0,
        message_window_s=0.5,
        busy_questions=1,
    )
    for i in range(8):
        chat.say(f"v{i}", f"!ask question number {i}")
    await settle(0.3)
    # No "coming" notes (the window has no room for them beside eight answers); three answers, then the
    # window's last send tells the other five how long the limit holds theirs.
    assert [line.split()[0] for line in chat.lines[:3]] == ["@v0", "@v1", "@v2"]
    held = "your answers are on the way, but Twitch's chat limit holds them for about 1 s."
    assert chat.lines[3] == "@v3 @v4 @v5 @v6 @v7 " + held
    await settle(1.0)  # two more windows: four answers, then the last (each told once only)
    assert len(chat.lines) == 9
    assert all(" is simple." in line for line in chat.lines[4:])
    await bot.stop(1)

"""The question/answer service: what happens between ``!ask …`` in chat and the line that answers it.

A question is checked (cooldown, length, blocked phrases), then joins the call already answering the same
question (after normalisation) or starts one. Each call runs through the pipeline with a deadline, so the
pipeline either starts it in time or refuses it at once; a refused call's viewers hear so at once, with
when to try again. A call that must wait reports its place and predicted wait, and viewers whose answer is
predicted to take noticeably long (``notice_after_s``) are told both. When the bot is busy, nobody is left
in silence for more than ``ack_after_s``: a viewer who has heard nothing by then is told the answer is
coming. Notices go through the :class:`NoticeBoard`, which tells many viewers per line.

Answers come first in the chat's message budget: a position, wait or "coming" notice is only sent while
the current window still has room for every answer in progress. When there are more answers than the
window has sends, its last send tells the viewers still waiting how long Twitch's limit will hold their
answers, instead of carrying one more answer and leaving the rest in silence.

Every accepted question ends in exactly one of: an answer, or an apology that says which kind of failure
(busy, too slow, service trouble, shutting down). At shutdown the service stops taking questions, gives
the calls in progress the grace period to finish, and apologises to the viewers of those that do not.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from claudegate.bots.answerer import Answerer, AnswerFailed
from claudegate.bots.answers import cut as cut_text
from claudegate.bots.answers import pack_mentions, text_budget, tidy
from claudegate.bots.cooldown import Cooldowns
from claudegate.bots.metrics import BotMetrics
from claudegate.bots.notices import NOTICE_MAX_CHARS, Notice, NoticeBoard
from claudegate.bots.outbox import PRIORITY_ANSWER, PRIORITY_CHATTER, PRIORITY_NOTICE, Line, Outbox
from claudegate.bots.questions import QuestionCheck, normalise, parse_command
from claudegate.bots.transport import ChatMessage, ChatNotice
from claudegate.config import BotSettings

__all__ = ["QuestionService"]

logger = logging.getLogger(__name__)

_TOLD_QUIET_S = 10.0  # one cooldown or refusal notice per viewer per this long: spamming !ask is not answered
_INITIAL_ANSWER_S = 2.0  # expected time from a call's start to its answer, until answers have been timed
_SMOOTHING = 0.2
_SHUTDOWN_SEND_RESERVE_S = 2.0  # of the grace period, kept for sending the last answers and apologies


@dataclass(eq=False, slots=True)
class _Asker:
    message: ChatMessage
    asked_at: float
    told: bool = False  # a line to them is on its way (a notice or the answer)
    held: bool = False  # told that the chat's message limit holds their answer
    replied_at: float | None = None  # when the first line to them went out
    ack: asyncio.TimerHandle | None = field(default=None, repr=False)


@dataclass(eq=False, slots=True)
class _Job:
    """One call, answering one question to everyone who asked it while it was in progress."""

    key: str
    question: str
    created: float
    askers: list[_Asker]
    task: asyncio.Task[None] | None = None
    position: int | None = None
    answer_due: float | None = None  # predicted time of the answer, once the call was queued
    done: bool = False


class QuestionService:
    """Implements :class:`~claudegate.bots.transport.ChatHandler` for one channel."""

    def __init__(
        self,
        settings: BotSettings,
        answerer: Answerer,
        outbox: Outbox,
        *,
        metrics: BotMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._answerer = answerer
        self._outbox = outbox
        self._metrics = metrics or BotMetrics(clock=clock, window_s=settings.health_window_s)
        self._clock = clock
        self._check = QuestionCheck.of(
            min_chars=settings.min_question_chars,
            max_chars=settings.max_question_chars,
            blocked=settings.blocked_phrases,
        )
        self._cooldowns = Cooldowns(settings.cooldown_s, clock=clock)
        self._told = Cooldowns(_TOLD_QUIET_S, clock=clock)
        self.board = NoticeBoard(
            outbox, batch_s=settings.notice_batch_s, deadline_s=settings.deadline_s, clock=clock
        )
        self._jobs: dict[str, _Job] = {}
        self._pending = 0  # askers whose question is accepted and not yet finished
        self._answer_s = _INITIAL_ANSWER_S
        self._unsent: dict[Line, list[_Asker]] = {}  # answer lines in the outbox, and whom they answer
        self.closing = False
        outbox.last_slot = self._last_slot

    # -- state for health and metrics ---------------------------------------------------------------------

    @property
    def pending(self) -> int:
        return self._pending

    @property
    def calls_in_progress(self) -> int:
        return len(self._jobs)

    @property
    def queue_use(self) -> float:
        """How full the bot is: accepted questions against ``max_pending``, or the outbox against a
        window's allowance, whichever is fuller."""
        outbox = self._outbox
        return max(self._pending / self._settings.max_pending, outbox.backlog / outbox.window.limit)

    # -- the chat's side ----------------------------------------------------------------------------------

    def on_message(self, message: ChatMessage) -> None:
        question = parse_command(message.text, self._settings.command_prefix)
        if question is None:
            return
        now = self._clock()
        if self.closing:
            self._metrics.outcome("closing")
            self.board.add(Notice("closing", message.mention))
            return
        remaining = self._cooldowns.remaining(message.viewer_key)
        if remaining > 0:
            self._metrics.outcome("cooldown")
            self._tell_one(message, f"you can ask again in {math.ceil(remaining)} s.", "cooldown")
            return
        reason = self._check.refusal(question)
        if reason is not None:
            self._metrics.outcome("invalid")
            self._tell_one(message, reason + ".", "invalid")
            return
        asker = _Asker(message, now)
        if self._pending >= self._settings.max_pending:
            self._metrics.outcome("busy")
            self.board.add(Notice("busy", message.mention, on_sent=self._replied(asker)))
            return
        self._cooldowns.start(message.viewer_key)
        self._pending += 1
        key = normalise(question)
        job = self._jobs.get(key)
        if job is None:
            job = _Job(key=key, question=question, created=now, askers=[asker])
            self._jobs[key] = job
            job.task = asyncio.get_running_loop().create_task(self._run(job), name=f"bot-question-{key[:30]}")
        else:
            self._metrics.outcome("deduplicated", count=False)
            job.askers.append(asker)
            if job.answer_due is not None and job.answer_due - now > self._settings.notice_after_s:
                self._notice_queued(job, asker, now)
        asker.ack = asyncio.get_running_loop().call_later(
            self._settings.ack_after_s, self._maybe_ack, job, asker
        )

    def on_notice(self, notice: ChatNotice) -> None:
        if notice.kind == "msg_ratelimit":
            logger.warning(
                "the chat server says the bot sends too fast; pausing its messages: %s", notice.text
            )
            self._outbox.pause(self._settings.message_window_s)
        elif notice.kind:
            logger.info("chat notice %s: %s", notice.kind, notice.text)

    def on_role(self, moderator: bool) -> None:
        settings = self._settings
        if settings.messages_per_window is not None:
            return  # set explicitly: the operator knows better
        limit = max(1, int((100 if moderator else 20) * settings.message_safety))
        if limit != self._outbox.window.limit:
            logger.warning(
                "the bot is %sa moderator in the channel: it now allows itself %d messages per %g s",
                "" if moderator else "not ",
                limit,
                settings.message_window_s,
            )
            self._outbox.window.limit = limit

    def _tell_one(self, message: ChatMessage, text: str, kind: str) -> None:
        """A line to one viewer about their own question, at most once per _TOLD_QUIET_S."""
        if self._told.remaining(message.viewer_key) > 0:
            return
        self._told.start(message.viewer_key)
        self._outbox.put(
            Line(
                text=f"{message.mention} {text}",
                kind=kind,
                priority=PRIORITY_CHATTER,
                expires_at=self._clock() + _TOLD_QUIET_S,
            )
        )

    # -- one call -----------------------------------------------------------------------------------------

    async def _run(self, job: _Job) -> None:
        settings = self._settings
        started = self._clock()
        first = job.askers[0].message.mention
        budget = text_budget([first], settings.answer_max_chars)
        try:
            async with asyncio.timeout(settings.answer_timeout_s):
                text = await self._answerer.answer(
                    job.question,
                    max_chars=budget,
                    deadline_s=max(0.1, settings.deadline_s - (started - job.created)),
                    on_queued=lambda position, wait: self._queued(job, position, wait),
                )
            if not tidy(text):
                raise AnswerFailed("trouble", "the reply held no text")
        except AnswerFailed as failure:
            self._finish(job)
            self._fail(job, failure.kind, failure.retry_after)
        except TimeoutError:
            self._finish(job)
            self._fail(job, "slow", None)
        except asyncio.CancelledError:
            self._finish(job)
            self._fail(job, "shutdown", None)
            raise
        except Exception:  # a bug must not leave viewers in silence: they hear of trouble, the log has it all
            logger.exception("answering %r failed", job.question)
            self._finish(job)
            self._fail(job, "trouble", None)
        else:
            self._finish(job)
            if job.answer_due is None:  # not queued: its duration is what an answer takes
                self._answer_s = (1 - _SMOOTHING) * self._answer_s + _SMOOTHING * (self._clock() - started)
            self._deliver(job, text)

    def _finish(self, job: _Job) -> None:
        job.done = True
        if self._jobs.get(job.key) is job:
            del self._jobs[job.key]
        self._pending -= len(job.askers)
        for asker in job.askers:
            if asker.ack is not None:
                asker.ack.cancel()

    def _queued(self, job: _Job, position: int, wait: float) -> None:
        """The pipeline put the call in a queue: tell whoever would otherwise wait noticeably long."""
        now = self._clock()
        job.position = position
        job.answer_due = now + wait + self._answer_s
        for asker in job.askers:
            if not asker.told and job.answer_due - asker.asked_at > self._settings.notice_after_s:
                self._notice_queued(job, asker, now)

    def _room_for_notices(self, now: float) -> bool:
        """Whether this window of the message limit has room for a notice beside every answer in progress."""
        outbox = self._outbox
        return outbox.window.used(now) + outbox.backlog + len(self._jobs) < outbox.window.limit

    def _notice_queued(self, job: _Job, asker: _Asker, now: float) -> None:
        assert job.answer_due is not None
        if not self._room_for_notices(now):
            return
        asker.told = True
        self.board.add(
            Notice(
                "queued",
                asker.message.mention,
                seconds=job.answer_due - now,
                position=job.position,
                on_sent=self._replied(asker),
            )
        )

    def _maybe_ack(self, job: _Job, asker: _Asker) -> None:
        """``ack_after_s`` after a question: when the bot is busy and the viewer has heard nothing, tell
        them the answer is coming, and roughly when."""
        if job.done or asker.told:
            return
        if self._pending < self._settings.busy_questions and job.answer_due is None:
            return
        now = self._clock()
        if not self._room_for_notices(now):
            return
        due = job.answer_due if job.answer_due is not None else job.created + self._answer_s
        asker.told = True
        self.board.add(
            Notice("ack", asker.message.mention, seconds=max(1.0, due - now), on_sent=self._replied(asker))
        )

    def _deliver(self, job: _Job, text: str) -> None:
        by_mention: dict[str, list[_Asker]] = {}
        for asker in job.askers:
            asker.told = True
            by_mention.setdefault(asker.message.mention, []).append(asker)
        mentions = list(by_mention)
        max_chars = self._settings.answer_max_chars
        body = cut_text(tidy(text), text_budget(mentions, max_chars))
        for group, line in pack_mentions(mentions, body, max_chars):
            askers = [asker for mention in group for asker in by_mention[mention]]
            answer_line = Line(text=line, kind="answer", priority=PRIORITY_ANSWER, mentions=tuple(group))
            answer_line.on_sent = self._answered(answer_line, askers)
            self._unsent[answer_line] = askers
            self._outbox.put(answer_line)
            for _asker in askers:
                self._metrics.outcome("answered")

    def _fail(self, job: _Job, kind: str, retry_after: float | None) -> None:
        if kind != "shutdown":
            logger.info("question %r not answered: %s", job.question, kind)
        for asker in job.askers:
            viewer = asker.message.viewer_key
            if kind == "busy" and retry_after is not None:
                self._cooldowns.start(viewer, retry_after)  # "ask again in N s" holds
            elif kind in ("slow", "trouble"):
                self._cooldowns.clear(viewer)  # not their fault: they may ask again at once
            asker.told = True
            self._metrics.outcome(kind)
            self.board.add(
                Notice(kind, asker.message.mention, seconds=retry_after, on_sent=self._replied(asker))
            )

    # -- timing of replies --------------------------------------------------------------------------------

    def _replied(self, asker: _Asker) -> Callable[[float], None]:
        def sent(at: float) -> None:
            if asker.replied_at is None:
                asker.replied_at = at
                self._metrics.first_reply_seconds.observe(at - asker.asked_at)

        return sent

    def _answered(self, line: Line, askers: list[_Asker]) -> Callable[[float], None]:
        def sent(at: float) -> None:
            self._unsent.pop(line, None)
            for asker in askers:
                self._replied(asker)(at)
                self._metrics.observe_answer(at - asker.asked_at)

        return sent

    def _last_slot(self, now: float, wait: float) -> Line | None:
        """The window's last send, when more than one answer still needs one: tell everyone whose answer
        is ready or in progress how long the message limit will hold it."""
        queued = [line for line in self._outbox.queued() if line in self._unsent]
        if len(queued) + len(self._jobs) < 2:
            return None  # the last send carries the last answer
        waiting: dict[str, list[_Asker]] = {}
        askers = [a for line in queued for a in self._unsent[line]]
        askers += [a for job in self._jobs.values() for a in job.askers]
        for asker in askers:
            if not asker.held:
                waiting.setdefault(asker.message.mention, []).append(asker)
        if not waiting:
            return None  # everyone waiting has been told already
        many = len(waiting) > 1
        text = (
            f"{'your answers are' if many else 'your answer is'} on the way, but Twitch's chat limit holds "
            f"{'them' if many else 'it'} for about {max(1, math.ceil(wait))} s."
        )
        mentions: list[str] = []
        for mention in waiting:
            if sum(len(m) + 1 for m in mentions) + len(mention) + 1 + len(text) > NOTICE_MAX_CHARS:
                break
            mentions.append(mention)
        told = [asker for mention in mentions for asker in waiting[mention]]
        for asker in told:
            asker.held = True
        return Line(
            text=" ".join(mentions) + " " + text,
            kind="held",
            priority=PRIORITY_NOTICE,
            on_sent=self._replied_all(told),
            mentions=tuple(mentions),
        )

    def forget(self, line: Line) -> None:
        """``line`` will not be sent (the outbox dropped it)."""
        self._unsent.pop(line, None)

    def _replied_all(self, askers: list[_Asker]) -> Callable[[float], None]:
        def sent(at: float) -> None:
            for asker in askers:
                self._replied(asker)(at)

        return sent

    # -- shutdown -----------------------------------------------------------------------------------------

    async def shutdown(self, grace_s: float) -> None:
        """Stop taking questions; answer or apologise for every accepted one within ``grace_s``, as far as
        the chat's message limit lets the lines out."""
        self.closing = True
        end = self._clock() + grace_s
        tasks = [job.task for job in self._jobs.values() if job.task is not None]
        if tasks:
            reserve = min(_SHUTDOWN_SEND_RESERVE_S, grace_s / 4)
            _done, unfinished = await asyncio.wait(tasks, timeout=max(0.0, grace_s - reserve))
            for task in unfinished:
                task.cancel()
            if unfinished:
                logger.warning("shutting down: %d questions were not answered in time", len(unfinished))
                await asyncio.gather(*unfinished, return_exceptions=True)
        self.board.flush()
        if not await self._outbox.flush(max(0.0, end - self._clock())):
            lost = self._outbox.discard()
            logger.warning(
                "shutting down: %d chat lines could not be sent within the grace period", len(lost)
            )

"""The question/answer service: what happens between ``!ask …`` in chat and the line that answers it.

A question is checked (cooldown, length, blocked phrases), then joins the call already answering the same
question (after normalisation) or starts one. Each call runs through the pipeline with a deadline, so the
pipeline either starts it in time or refuses it at once; a refused call's viewers hear so at once, with
when to try again.

Lines go to answers first. Twitch allows 20 lines per 30 s (100 as moderator or broadcaster), so when more
answers are coming than the window has lines for, each new call asks the model for a shorter answer (a
budget from :class:`~claudegate.bots.pacing.Planner`: the answers expected against the lines free before
the deadline) and the outbox packs several whole answers into one line of at most 500 characters, each
viewer mentioned once, holding a line that is not full for a moment while more answers are about to come.

Each viewer's own wait is predicted from their place in the outgoing queue and the limit, and told once when
the answer will not come within a couple of seconds; told again only if it gets clearly worse
(:mod:`~claudegate.bots.waits`). A viewer's cooldown starts when their answer is sent, so nobody is invited
to ask again before hearing the first answer.

Every accepted question ends in exactly one of: an answer, or an apology that says which kind of failure
(busy, too slow, service trouble, shutting down). At shutdown the service stops taking questions, gives
the calls in progress the grace period to finish, and apologises to the viewers of those that do not.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from claudegate.bots.answerer import Answerer, AnswerFailed
from claudegate.bots.answers import cut as cut_text
from claudegate.bots.answers import pack_mentions, text_budget, tidy
from claudegate.bots.cooldown import Cooldowns
from claudegate.bots.metrics import BotMetrics
from claudegate.bots.notices import Notice, NoticeBoard
from claudegate.bots.outbox import PRIORITY_ANSWER, PRIORITY_CHATTER, PRIORITY_NOTICE, Line, Outbox, Packing
from claudegate.bots.pacing import LINE_MAX_CHARS, PART_SEPARATOR, Planner, Upcoming, part_budget
from claudegate.bots.questions import QuestionCheck, normalise, parse_command
from claudegate.bots.standing import Standing, cost_of
from claudegate.bots.transport import ChatMessage, ChatNotice
from claudegate.bots.waits import Asker, WaitTeller
from claudegate.config import BotSettings

__all__ = ["QuestionService"]

logger = logging.getLogger(__name__)

_TOLD_QUIET_S = 10.0  # one cooldown or refusal notice per viewer per this long: spamming !ask is not answered
_INITIAL_ANSWER_S = 2.0  # expected time from a call's start to its answer, until answers have been timed
_SMOOTHING = 0.2
_SHUTDOWN_SEND_RESERVE_S = 2.0  # of the grace period, kept for sending the last answers and apologies
_REVIEW_S = 0.1  # how often waits are predicted again while answers are outstanding
_HOLD_S = 1.0  # the longest a packed answer line that is not full waits for more answers to join it
_SILENT_S = 1.9  # a line is not held past this long after the question of a viewer who has heard nothing
_RESERVED_LINES = 1  # of each window, kept from answers while viewers who may need telling remain


@dataclass(eq=False, slots=True)
class _Job:
    """One call, answering one question to everyone who asked it while it was in progress."""

    key: str
    question: str
    created: float
    askers: list[Asker]
    budget: int  # characters of answer text asked for
    task: asyncio.Task[None] | None = None
    started: float | None = None
    queued_at: float | None = None  # when the pipeline queued the call ...
    queued_wait: float = 0.0  # ... and the wait it predicted before the call starts ...
    position: int = 0  # ... at this place in the queue
    moves_by: float = math.inf  # when the bot's own calls ahead of it were expected to end, once known
    done: bool = False

    def part_chars(self, fill: float = 1.0) -> int:
        """The characters of a line its answer may take (``fill``: the share of its budget answers use)."""
        return math.ceil(self.budget * fill) + sum(len(a.message.mention) + 1 for a in self.askers)


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
        self._planner = Planner(horizon_s=settings.deadline_s, max_per_line=settings.pack_answers_per_line)
        self._waits = WaitTeller(
            outbox,
            ack_after_s=settings.ack_after_s,
            notice_after_s=settings.notice_after_s,
            on_told=lambda asker, at: self._replied(asker)(at),
        )
        outbox.packing["answer"] = Packing(separator=PART_SEPARATOR)
        outbox.hold = self._hold
        self._jobs: dict[str, _Job] = {}
        self._asking: dict[str, Asker] = {}  # viewer -> their question, until its answer or apology is sent
        self._pending = 0  # askers whose question is accepted and whose call has not finished
        self._answer_s = _INITIAL_ANSWER_S
        self._fill = 1.0  # the share of its character budget an answer uses, smoothed
        self._wait_scale = 1.0  # how long queued calls waited, against the pipeline's prediction, smoothed
        self._unsent: dict[Line, list[Asker]] = {}  # answer lines in the outbox, and whom they answer
        self._ready_at: dict[Line, float] = {}  # when each was put there
        self._review_timer: asyncio.TimerHandle | None = None
        self.standing: Standing | None = None  # as Twitch last reported it
        self.closing = False

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

    @property
    def limit_note(self) -> str | None:
        """What the message limit costs viewers, when the bot paces as a plain account."""
        if self._outbox.window.limit >= self._settings.limit_for(True):
            return None
        return cost_of(self._outbox.window.limit, self._settings.message_window_s)

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
        if message.viewer_key in self._asking:
            self._metrics.outcome("cooldown")
            self._tell_one(
                message,
                f"your question is still being answered; you can ask again {self._settings.cooldown_s:g} s "
                "after its answer.",
                "cooldown",
            )
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
        asker = Asker(message, now)
        if self._pending >= self._settings.max_pending:
            self._metrics.outcome("busy")
            self.board.add(Notice("busy", message.mention, on_sent=self._replied(asker)))
            return
        self._asking[message.viewer_key] = asker
        self._pending += 1
        self._planner.asked(now)
        key = normalise(question)
        job = self._jobs.get(key)
        if job is None:
            job = _Job(key, question, now, [asker], budget=self._budget(message.mention, now))
            self._jobs[key] = job
            job.task = asyncio.get_running_loop().create_task(self._run(job), name=f"bot-question-{key[:30]}")
        else:
            self._metrics.outcome("deduplicated", count=False)
            job.askers.append(asker)
        self._schedule_review()

    def on_notice(self, notice: ChatNotice) -> None:
        if notice.kind == "msg_ratelimit":
            logger.warning(
                "the chat server says the bot sends too fast; pausing its messages: %s", notice.text
            )
            self._outbox.pause(self._settings.message_window_s)
        elif notice.kind:
            logger.info("chat notice %s: %s", notice.kind, notice.text)

    def on_standing(self, standing: Standing) -> None:
        """Twitch reported the bot's standing (on joining, and after each of its lines): pace by it."""
        if standing == self.standing:
            return
        self.standing = standing
        settings = self._settings
        limit = settings.limit_for(standing.elevated)
        overridden = settings.moderator is not None or settings.messages_per_window is not None
        logger.info(
            "Twitch says the bot is %s in the channel; it sends at most %d lines per %g s%s",
            "a plain viewer" if standing is Standing.viewer else f"a {standing.value}",
            limit,
            settings.message_window_s,
            " (as its settings say)" if overridden else "",
        )
        self._outbox.window.limit = limit
        if self.limit_note is not None:
            logger.warning("%s", self.limit_note)

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

    # -- lines for answers first --------------------------------------------------------------------------

    def _budget(self, mention: str, now: float) -> int:
        """Characters of answer for a new call: a line of its own when lines are plentiful, a share of one
        when more answers are coming than the window has lines for."""
        per_line = self._planner.answers_per_line(
            self._outbox.window,
            now,
            outstanding=len(self._jobs) + len(self._unsent) + 1,
            lookahead_s=self._answer_s,
        )
        longest = text_budget([mention], self._settings.answer_max_chars)
        return part_budget(per_line, len(mention), longest=longest)

    def _hold_s(self, now: float) -> float:
        """How long a line that is not full waits for more answers now: ``_HOLD_S`` while lines are scarce."""
        per_line = self._planner.answers_per_line(
            self._outbox.window, now, outstanding=len(self._jobs) + len(self._unsent), lookahead_s=0.0
        )
        return _HOLD_S if per_line > 1 else 0.0

    def _reserved(self, now: float) -> int:
        """Lines of the window kept from answers while viewers may need telling (answers still coming, or
        viewers who have heard nothing): two while lines are scarce (a burst may need a wait told, then
        told again when answers come slower than predicted), else one."""
        return _RESERVED_LINES + (1 if self._hold_s(now) > 0 else 0)

    def _untold_after(self, parts: int) -> bool:
        """Whether a viewer who has heard nothing yet waits for an answer beyond the next ``parts``."""
        later = [line for line in self._outbox.queued() if line in self._unsent][parts:]
        askers = [a for line in later for a in self._unsent[line]]
        askers += [a for job in self._jobs.values() for a in job.askers]
        return any(a.replied_at is None and a.notice is None for a in askers)

    def _hold(self, now: float, parts: int, chars: int) -> float:
        """Seconds to keep back a packed answer line: while it is not full, lines are scarce and answers
        about to come could share it; and while it would take the window's last line when more answers
        are still to go (that line is kept for telling their viewers how long the limit holds them)."""
        window = self._outbox.window
        if window.limit - window.used(now) <= self._reserved(now) and (
            self._jobs or self._untold_after(parts)
        ):
            return window.next_free(now)
        if not self._jobs or chars + _smallest_part(self._jobs.values()) > LINE_MAX_CHARS:
            return 0.0
        per_line = self._planner.answers_per_line(
            window, now, outstanding=len(self._jobs) + len(self._unsent), lookahead_s=0.0
        )
        if per_line <= parts:
            return 0.0
        oldest = min(self._ready_at.values(), default=now)
        # Never past the moment a viewer who has heard nothing yet would have waited _SILENT_S.
        silent = [
            asker.asked_at + _SILENT_S
            for askers in self._unsent.values()
            for asker in askers
            if asker.replied_at is None and asker.notice is None
        ]
        return max(0.0, min([oldest + _HOLD_S, *silent]) - now)

    # -- one call -----------------------------------------------------------------------------------------

    async def _run(self, job: _Job) -> None:
        settings = self._settings
        started = job.started = self._clock()
        try:
            async with asyncio.timeout(settings.answer_timeout_s):
                text = await self._answerer.answer(
                    job.question,
                    max_chars=job.budget,
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
            self._learn(job, started)
            self._deliver(job, text)

    def _learn(self, job: _Job, started: float) -> None:
        """Time an answered call: how long an answer takes, and how the pipeline's predicted waits compare
        with the waits its calls had (the answer time taken off), so predictions follow experience."""
        took = self._clock() - started
        if job.queued_at is None:
            self._answer_s = (1 - _SMOOTHING) * self._answer_s + _SMOOTHING * took
        elif job.queued_wait > 0:
            waited = max(0.0, self._clock() - job.queued_at - self._answer_s)
            ratio = min(2.0, waited / job.queued_wait)
            self._wait_scale = (1 - _SMOOTHING) * self._wait_scale + _SMOOTHING * ratio

    def _answers_due(self, now: float) -> list[tuple[_Job, float]]:
        """When each call in progress is expected to be answered. A call the pipeline queued starts when it
        predicted (scaled by how its predictions have turned out), or, if sooner, when as many of the bot's
        running calls as are ahead of it have finished: a queue held by the pipeline's concurrency moves as
        calls end, which it can only guess at until it has timed some. If that time passes without an
        answer, the queue is held by something else (a bucket), and the pipeline's prediction stands."""
        running = sorted(
            max(now, (job.started or job.created) + self._answer_s)
            for job in self._jobs.values()
            if job.queued_at is None
        )
        due: list[tuple[_Job, float]] = []
        for job in self._jobs.values():
            if job.queued_at is None:
                at = (job.started or job.created) + self._answer_s
            else:
                at = job.queued_at + job.queued_wait * self._wait_scale + self._answer_s
                if 0 < job.position <= len(running):
                    job.moves_by = min(job.moves_by, running[job.position - 1])
                if job.moves_by + self._answer_s >= now:  # once that has passed unanswered, a bucket holds it
                    at = min(at, job.moves_by + self._answer_s)
            due.append((job, max(now, at)))
        return due

    def _finish(self, job: _Job) -> None:
        job.done = True
        if self._jobs.get(job.key) is job:
            del self._jobs[job.key]
        self._pending -= len(job.askers)

    def _queued(self, job: _Job, position: int, wait: float) -> None:
        """The pipeline put the call in a queue at ``position``, predicting ``wait`` before it starts."""
        job.queued_at = self._clock()
        job.queued_wait = wait
        job.position = position

    def _deliver(self, job: _Job, text: str) -> None:
        by_mention: dict[str, list[Asker]] = {}
        for asker in job.askers:
            asker.ready = True
            by_mention.setdefault(asker.message.mention, []).append(asker)
        mentions = list(by_mention)
        body = cut_text(tidy(text), job.budget)
        self._fill = (1 - _SMOOTHING) * self._fill + _SMOOTHING * min(1.0, len(body) / job.budget)
        now = self._clock()
        for group, line in pack_mentions(mentions, body, self._settings.answer_max_chars):
            askers = [asker for mention in group for asker in by_mention[mention]]
            answer_line = Line(
                text=line, kind="answer", priority=PRIORITY_ANSWER, mentions=tuple(group), packable=True
            )
            answer_line.on_sent = self._answered(answer_line, askers)
            self._unsent[answer_line] = askers
            self._ready_at[answer_line] = now
            self._outbox.put(answer_line)
            for _asker in askers:
                self._metrics.outcome("answered")

    def _fail(self, job: _Job, kind: str, retry_after: float | None) -> None:
        if kind != "shutdown":
            logger.info("question %r not answered: %s", job.question, kind)
        for asker in job.askers:
            viewer = asker.message.viewer_key
            self._asking.pop(viewer, None)
            if kind == "busy" and retry_after is not None:
                self._cooldowns.start(viewer, retry_after)  # "ask again in N s" holds
            asker.finished = True
            self._metrics.outcome(kind)
            self.board.add(
                Notice(kind, asker.message.mention, seconds=retry_after, on_sent=self._replied(asker))
            )

    # -- timing of replies --------------------------------------------------------------------------------

    def _replied(self, asker: Asker) -> Callable[[float], None]:
        def sent(at: float) -> None:
            if asker.replied_at is None:
                asker.replied_at = at
                self._metrics.first_reply_seconds.observe(at - asker.asked_at)

        return sent

    def _answered(self, line: Line, askers: list[Asker]) -> Callable[[float], None]:
        def sent(at: float) -> None:
            self._unsent.pop(line, None)
            self._ready_at.pop(line, None)
            for asker in askers:
                asker.finished = True
                self._replied(asker)(at)
                self._metrics.observe_answer(at - asker.asked_at)
                viewer = asker.message.viewer_key
                if self._asking.get(viewer) is asker:
                    del self._asking[viewer]
                self._cooldowns.start(viewer)  # the cooldown runs from the answer, not the question

        return sent

    def forget(self, line: Line) -> None:
        """``line`` will not be sent (the outbox dropped it)."""
        askers = self._unsent.pop(line, None)
        self._ready_at.pop(line, None)
        for asker in askers or ():
            asker.finished = True
            if self._asking.get(asker.message.viewer_key) is asker:
                del self._asking[asker.message.viewer_key]

    # -- each viewer's wait -------------------------------------------------------------------------------

    def _schedule_review(self) -> None:
        if self._review_timer is None:
            self._review_timer = asyncio.get_running_loop().call_later(_REVIEW_S, self._review)

    def _review(self) -> None:
        """Predict when each outstanding answer goes out, and tell whoever should hear their wait."""
        self._review_timer = None
        now = self._clock()
        answers: list[tuple[Upcoming, list[Asker]]] = []
        queued = self._outbox.queued()
        for line in queued:
            askers = self._unsent.get(line)
            if askers is not None:
                answers.append((Upcoming(self._ready_at.get(line, now), len(line.text)), askers))
        for job, due in self._answers_due(now):
            answers.append((Upcoming(due, job.part_chars(self._fill)), job.askers))
        notices = sum(1 for line in queued if line.priority == PRIORITY_NOTICE and line.kind != "wait")
        notices += 1 if any(line.kind == "wait" for line in queued) else 0
        self._waits.review(
            now, answers, notices_first=notices, hold_s=self._hold_s(now), reserved=self._reserved(now)
        )
        if answers:
            self._schedule_review()

    # -- shutdown -----------------------------------------------------------------------------------------

    async def shutdown(self, grace_s: float) -> None:
        """Stop taking questions; answer or apologise for every accepted one within ``grace_s``, as far as
        the chat's message limit lets the lines out."""
        self.closing = True
        if self._review_timer is not None:
            self._review_timer.cancel()
            self._review_timer = None
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


def _smallest_part(jobs: Iterable[_Job]) -> int:
    """The fewest characters an answer still in progress is expected to take."""
    return min((job.part_chars() for job in jobs), default=0)

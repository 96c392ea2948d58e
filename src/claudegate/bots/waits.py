"""Each viewer's own wait: predicted from their place in the outgoing queue and the chat's limit, told once
when their answer will not reach the chat soon, and told again only when it gets clearly worse.

The question service calls :meth:`WaitTeller.review` a few times a second while answers are outstanding, with
every answer still to be sent (ready in the outbox, or in progress with the moment it is expected) and the
viewers each one is for. The review replays the outbox (:func:`~claudegate.bots.pacing.project`) to predict
when each answer will be sent, then:

- a viewer who has waited ``ack_after_s`` and whose answer is predicted later than ``notice_after_s`` after
  the question is told "about N s" (so, with the defaults, within 2 s of asking; an answer due sooner needs
  no notice, and a viewer whose answer is predicted soon but has still not come hears their wait then);
  whoever would be told within the next moment is told on the same line, which goes out anyway;
- no notice, first or again, for an answer predicted to go within half of ``notice_after_s``: it would
  only take a line from the answers; unless the model has not answered yet when ``notice_after_s`` has
  passed: the prediction was wrong, and the viewer hears the best one there is rather than nothing;
- a viewer already told is told again only when the prediction has moved past what they were told by more
  than ``max(3 s, 20%)``: the margin within which a told wait counts as right;
- a notice is written when it is sent, with the wait predicted then, and is dropped if the answer went out
  first. Notices share lines (``@a 12 s, @b 31 s``), each viewer with their own figure.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from claudegate.bots.outbox import PRIORITY_NOTICE, Line, Outbox, Packing
from claudegate.bots.pacing import Upcoming, project
from claudegate.bots.transport import ChatMessage

__all__ = ["WAIT_PACKING", "Asker", "WaitTeller", "worse_by"]

WAIT_PACKING = Packing(separator=", ", lead="answers coming in about: ")
_MARGIN_S = 3.0  # a told wait is right if the answer comes within this, or _MARGIN_SHARE, of it
_MARGIN_SHARE = 0.2
_REVIEW_MARGIN_S = 0.05
_RIDE_S = 0.25  # a viewer who would be told within this long is told with those told now, on their line


def worse_by(told_s: float) -> float:
    """How much later than told an answer may come and still count as told right."""
    return max(_MARGIN_S, _MARGIN_SHARE * told_s)


@dataclass(eq=False, slots=True)
class Asker:
    """One viewer's accepted question, from asking to the answer (or an apology) being sent."""

    message: ChatMessage
    asked_at: float
    finished: bool = False  # the answer, or an apology, has been sent: nothing more to tell
    ready: bool = False  # the model has answered: the answer is waiting for the chat's limit
    replied_at: float | None = None  # when the first line to them went out
    predicted: float | None = None  # when their answer is predicted to be sent
    promised: float | None = None  # when they were told it would come
    told_s: float = 0.0  # the wait they were told, in seconds
    notice: Line | None = field(default=None, repr=False)  # a wait notice on its way to them


class WaitTeller:
    def __init__(
        self,
        outbox: Outbox,
        *,
        ack_after_s: float,
        notice_after_s: float,
        on_told: Callable[[Asker, float], None],
    ) -> None:
        self._outbox = outbox
        self._ack_after_s = ack_after_s
        self._notice_after_s = notice_after_s
        # A viewer whose answer is not back from the model this long after asking is told regardless of
        # the prediction, a review and a send before 2 s.
        self._silent_s = max(ack_after_s, notice_after_s) + _REVIEW_MARGIN_S
        self._on_told = on_told
        outbox.packing["wait"] = WAIT_PACKING

    def review(
        self,
        now: float,
        answers: Sequence[tuple[Upcoming, Sequence[Asker]]],
        *,
        notices_first: int,
        hold_s: float,
        reserved: int,
    ) -> None:
        """Predict every outstanding answer's send time and tell whoever should hear their wait."""
        upcoming = [item for item, _askers in answers]

        def predict(lines_first: int) -> None:
            sends = project(
                self._outbox.window, now, upcoming, lines_first=lines_first, hold_s=hold_s, reserved=reserved
            )
            for (_item, askers), sent_at in zip(answers, sends, strict=True):
                for asker in askers:
                    asker.predicted = sent_at

        predict(notices_first)
        due: list[Asker] = []
        riders: list[Asker] = []
        for _item, askers in answers:
            for asker in askers:
                if asker.finished or asker.notice is not None:
                    continue
                if self._should_tell(asker, now, self._ack_after_s):
                    due.append(asker)
                elif self._should_tell(asker, now, self._ack_after_s - _RIDE_S):
                    riders.append(asker)
        if not due:
            return
        if notices_first == 0:
            predict(1)  # the notice about to go takes a line from the answers too
        for asker in due + riders:  # a line goes out anyway: whoever would need one soon rides on it
            self._tell(asker)

    def _should_tell(self, asker: Asker, now: float, after_s: float) -> bool:
        predicted = asker.predicted
        if predicted is None:
            return False
        if asker.promised is None and not asker.ready and now - asker.asked_at >= self._silent_s:
            return True  # the answer was predicted sooner, but the model has not even replied yet
        if self._imminent(asker, now):
            return False  # the answer is about to go: a notice would only take its line
        if asker.promised is None:
            return now - asker.asked_at >= after_s and predicted - asker.asked_at > self._notice_after_s
        return predicted > asker.promised + worse_by(asker.told_s)

    def _imminent(self, asker: Asker, now: float) -> bool:
        return asker.predicted is not None and asker.predicted - now <= self._notice_after_s / 2

    def _tell(self, asker: Asker) -> None:
        told: list[float] = []

        def render(now: float) -> str | None:
            if asker.finished or asker.predicted is None or (asker.ready and self._imminent(asker, now)):
                return None  # answered, or about to be: the notice would only take its line
            seconds = max(1, math.ceil(asker.predicted - now))
            told[:] = [seconds]
            return f"{asker.message.mention} {seconds} s"

        def sent(at: float) -> None:
            asker.notice = None
            if told:
                asker.told_s = told[0]
                asker.promised = at + told[0]
            self._on_told(asker, at)

        line = Line(
            text=asker.message.mention,
            kind="wait",
            priority=PRIORITY_NOTICE,
            mentions=(asker.message.mention,),
            packable=True,
            render=render,
            on_sent=sent,
        )
        asker.notice = line
        self._outbox.put(line)

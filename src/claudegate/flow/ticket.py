"""One call's place in a lane's admission queue, and what admission predicts for it."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import NamedTuple

__all__ = ["Prediction", "Ticket"]


@dataclass(eq=False, slots=True)
class Ticket:
    """One call's place in a lane's queue."""

    org: str
    user: str
    input_tokens: float
    output_tokens: float
    deadline: float  # on the event loop's clock: by when the reply must have begun
    streamed: bool = False  # a stream begins with its first token; a JSON reply only once complete
    reply_start: float = 0.0  # the lane's estimate of dispatch-to-first-byte when the call was admitted
    priority: int = 0
    org_weight: float = 1.0
    user_weight: float = 1.0
    on_queued: Callable[[int, float], None] | None = None  # hears (position, predicted wait) when queued
    # The output the call is expected to produce (``output_tokens`` is what is reserved for it, a little
    # more); predictions use this. None: the reservation.
    expected_output_tokens: float | None = None
    # Names the call so that it is known again when it comes back after a refusal (its key and body); a
    # refused call with a place keeps its turn for a while. Called only when needed (hashing a body costs).
    place: Callable[[], Hashable] | None = field(default=None, repr=False)
    max_tokens: int | None = None  # the most output the call may produce; None: not known
    position: int = 0  # 1-based place in the predicted order while waiting
    predicted_wait: float = 0.0  # seconds from enqueueing to the predicted start
    started_at: float = field(default=math.inf, repr=False)  # when it took its tokens and a slot
    future: asyncio.Future[None] | None = field(default=None, repr=False)

    @property
    def expected_output(self) -> float:
        return self.output_tokens if self.expected_output_tokens is None else self.expected_output_tokens

    @property
    def cost(self) -> float:
        # Fairness counts requests and tokens: a call that asks for a lot uses more of the lane.
        return 1.0 + (self.input_tokens + self.output_tokens) / 1000.0

    @property
    def surplus(self) -> float:
        """Output reserved beyond what the call is expected to produce: given back when it settles."""
        return self.output_tokens - self.expected_output


class Prediction(NamedTuple):
    """When a waiting call is predicted to start, in seconds from now."""

    wait: float  # in the queue, as expected
    longest: float  # in the queue, if the replies ahead run long (cautious): what admission is judged by
    back: float  # the cautious moment its turn is ready for good: what a refused call is told

"""Token estimates made before a call is dispatched, calibrated per model from what replies report.

Input: the request body's size divided by a bytes-per-token ratio learnt per model. It is measured against
the tokens that count towards Anthropic's input limit (uncached input plus cache writes; cache reads do not
count), so a workload that reads its prefix from the cache is estimated low, as it is charged. The first
estimate is deliberately high (few bytes per token) until replies have taught the ratio.

Output: the average output of each model's recent replies (the last ``_OUTPUT_WINDOW``), capped by
``max_tokens``, instead of reserving ``max_tokens`` outright, which would idle most of the output-token
limit. A plain average of a window, not an exponential one: reply lengths vary several-fold, and an
exponential average quick enough to follow a change of workload swings with every few long replies (by half
its value, in a burst of replies of 20-450 tokens), moving every reservation, every prediction and the
tokens kept for refused callers' turns with it. Estimates are settled with the real counts after the call,
so an error here costs accuracy of admission, not correctness.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

__all__ = ["TokenEstimator"]

_INITIAL_BYTES_PER_TOKEN = 3.0
_INITIAL_OUTPUT_TOKENS = 256.0
_SMOOTHING = 0.2  # weight of each new observation in the running average of bytes per token
_OUTPUT_WINDOW = 50  # replies the output estimate averages
_OUTPUT_HEADROOM = 1.25  # reserve a little above the average: an overrun becomes a debt that delays others


@dataclass(slots=True)
class _ModelStats:
    bytes_per_token: float = _INITIAL_BYTES_PER_TOKEN
    samples: int = 0
    recent_outputs: deque[int] = field(default_factory=lambda: deque(maxlen=_OUTPUT_WINDOW))
    recent_total: int = 0  # the sum of ``recent_outputs``, kept as they come and go

    @property
    def output_tokens(self) -> float:
        if not self.recent_outputs:
            return _INITIAL_OUTPUT_TOKENS
        return self.recent_total / len(self.recent_outputs)

    def add_output(self, tokens: int) -> None:
        if len(self.recent_outputs) == self.recent_outputs.maxlen:
            self.recent_total -= self.recent_outputs[0]
        self.recent_outputs.append(tokens)
        self.recent_total += tokens


class TokenEstimator:
    __slots__ = ("_stats",)

    def __init__(self) -> None:
        self._stats: dict[str, _ModelStats] = {}

    def _for(self, model: str) -> _ModelStats:
        stats = self._stats.get(model)
        if stats is None:
            stats = self._stats[model] = _ModelStats()
        return stats

    def input_tokens(self, model: str, body_bytes: int) -> int:
        return max(1, math.ceil(body_bytes / self._for(model).bytes_per_token))

    def output_tokens(self, model: str, max_tokens: int) -> int:
        """The output to reserve for a call: a little above the average (``_OUTPUT_HEADROOM``)."""
        expected = math.ceil(self._for(model).output_tokens * _OUTPUT_HEADROOM)
        return max(1, min(max_tokens, expected))

    def expected_output_tokens(self, model: str, max_tokens: int) -> float:
        """The output a call is expected to produce: the average, for predictions rather than reservations."""
        return max(1.0, min(float(max_tokens), self._for(model).output_tokens))

    def observe(self, model: str, body_bytes: int, charged_input_tokens: int, output_tokens: int) -> None:
        """Learn from a finished call: its body size, the input tokens it was charged, its output."""
        stats = self._for(model)
        if charged_input_tokens > 0 and body_bytes > 0:
            ratio = body_bytes / charged_input_tokens
            stats.bytes_per_token = ratio if stats.samples == 0 else _blend(stats.bytes_per_token, ratio)
        if output_tokens > 0:
            stats.add_output(output_tokens)
        stats.samples += 1


def _blend(average: float, sample: float) -> float:
    return (1 - _SMOOTHING) * average + _SMOOTHING * sample

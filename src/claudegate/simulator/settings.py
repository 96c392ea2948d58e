"""The simulator's settings: plain values, parsed once from the command line and passed down."""

from __future__ import annotations

from dataclasses import dataclass, field

from claudegate.simulator.stops import REFUSAL_CATEGORIES

__all__ = ["FAULT_KINDS", "FaultRate", "LatencyModel", "SimulatorSettings", "parse_fault_rate"]

FAULT_KINDS = frozenset(
    {
        "overloaded",
        "server_error",
        "rate_limit",
        "timeout",
        "billing",
        "permission",
        "slow",
        "midstream_error",
        "drop_connection",
        # Replies that stop early, with the stop reason of the same name (simulator/stops.py).
        "refusal",
        "pause_turn",
        "model_context_window_exceeded",
    }
)


@dataclass(frozen=True, slots=True)
class LatencyModel:
    """How long replies take. ``none`` answers as fast as the machine allows."""

    ttft_s: float = 0.0
    tokens_per_second: float = 0.0  # 0: no pacing between tokens
    jitter: float = 0.0  # each delay is scaled by a factor drawn from [1 - jitter, 1 + jitter]

    @classmethod
    def none(cls) -> LatencyModel:
        return cls()

    @classmethod
    def realistic(cls) -> LatencyModel:
        # Sonnet-class figures: most first tokens arrive in 0.6-1.0 s and text streams at ~70 tokens/s.
        return cls(ttft_s=0.8, tokens_per_second=70.0, jitter=0.25)

    @property
    def is_instant(self) -> bool:
        return self.ttft_s == 0 and self.tokens_per_second == 0


@dataclass(frozen=True, slots=True)
class FaultRate:
    """A fault injected at random into a share of requests (``--fault overloaded=0.1``)."""

    kind: str
    rate: float
    argument: str | None = None


def parse_fault_rate(text: str) -> FaultRate:
    """Parse ``KIND[:ARG]=RATE``, for example ``overloaded=0.1`` or ``slow:2.5=0.05``."""
    spec, sep, rate_text = text.partition("=")
    if not sep:
        raise ValueError(f"fault {text!r}: expected KIND=RATE, for example overloaded=0.1")
    kind, _, argument = spec.partition(":")
    if kind not in FAULT_KINDS:
        raise ValueError(f"fault {text!r}: unknown kind {kind!r}; known: {', '.join(sorted(FAULT_KINDS))}")
    if kind == "refusal" and argument and argument not in REFUSAL_CATEGORIES:
        known = ", ".join(sorted(REFUSAL_CATEGORIES))
        raise ValueError(f"fault {text!r}: {argument!r} is not a refusal category; known: {known}")
    try:
        rate = float(rate_text)
    except ValueError:
        raise ValueError(f"fault {text!r}: rate {rate_text!r} is not a number") from None
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"fault {text!r}: rate must lie between 0 and 1")
    return FaultRate(kind=kind, rate=rate, argument=argument or None)


@dataclass(frozen=True, slots=True)
class SimulatorSettings:
    tier: str = "unlimited"
    latency: LatencyModel = field(default_factory=LatencyModel.none)
    faults: tuple[FaultRate, ...] = ()
    # Bucket capacity as a share of the per-minute limit. 1.0 lets a full minute's allowance be spent at
    # once; 1/60 enforces 60 RPM as one request per second, as Anthropic says it may.
    burst: float = 1.0
    # When non-empty, only these API keys are accepted; otherwise any non-empty key is.
    api_keys: frozenset[str] = frozenset()
    tokens_per_delta: int = 3
    batch_seconds_per_request: float = 0.01
    max_body_bytes: int = 32 * 1024 * 1024
    max_file_bytes: int = 256 * 1024 * 1024  # all uploaded files together (kept in memory)
    seed: int = 0  # mixes into the random faults and jitter, never into reply content

"""Anthropic's published rate limits per tier and model class, shared by the simulator and flow control."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["COUNT_TOKENS_RPM", "TIERS", "Limits", "limits_for"]


@dataclass(frozen=True, slots=True)
class Limits:
    requests_per_minute: int
    input_tokens_per_minute: int
    output_tokens_per_minute: int


_UNLIMITED = Limits(1_000_000_000, 1_000_000_000_000, 1_000_000_000_000)

# Classes missing from a tier's table (newer models) get that tier's Sonnet row.
TIERS: dict[str, dict[str, Limits]] = {
    "1": {
        "sonnet-4": Limits(50, 30_000, 8_000),
        "opus-4": Limits(50, 30_000, 8_000),
        "haiku-4-5": Limits(50, 50_000, 10_000),
    },
    "2": {
        "sonnet-4": Limits(1_000, 450_000, 90_000),
        "opus-4": Limits(1_000, 450_000, 90_000),
        "haiku-4-5": Limits(1_000, 450_000, 90_000),
    },
    "3": {
        "sonnet-4": Limits(2_000, 800_000, 160_000),
        "opus-4": Limits(2_000, 800_000, 160_000),
        "haiku-4-5": Limits(2_000, 1_000_000, 200_000),
    },
    "4": {
        "sonnet-4": Limits(4_000, 2_000_000, 400_000),
        "opus-4": Limits(4_000, 2_000_000, 400_000),
        "haiku-4-5": Limits(4_000, 4_000_000, 800_000),
    },
    "unlimited": {},
}

COUNT_TOKENS_RPM: dict[str, int] = {"1": 100, "2": 2_000, "3": 4_000, "4": 8_000, "unlimited": 1_000_000_000}


def limits_for(tier: str, rate_class: str) -> Limits:
    table = TIERS[tier]
    if not table:
        return _UNLIMITED
    return table.get(rate_class) or table["sonnet-4"]

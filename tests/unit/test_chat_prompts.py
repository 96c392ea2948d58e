"""Choosing a prompt version for a new conversation: the active one, or a draw by weight that is the same
every time for the same conversation."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import pytest

from claudegate.chat.prompts import choose_version, draw
from claudegate.store.chat_rows import PromptRow

NOW = datetime(2026, 11, 24, tzinfo=UTC)


def prompt(active: int | None = 1, split: dict[int, float] | None = None) -> PromptRow:
    return PromptRow(
        id=7,
        org_id=1,
        name="support",
        active_version=active,
        previous_version=None,
        split=split,
        latest_version=3,
        created_at=NOW,
        updated_at=NOW,
    )


def test_without_a_split_the_active_version() -> None:
    assert choose_version(prompt(active=2), "chat_a") == 2
    assert choose_version(prompt(active=None), "chat_a") is None


def test_a_draw_is_the_same_for_the_same_conversation() -> None:
    split = prompt(split={1: 1.0, 2: 1.0})
    assert {choose_version(split, "chat_same") for _ in range(50)} == {choose_version(split, "chat_same")}


def test_draws_follow_the_weights() -> None:
    weights = {1: 1.0, 2: 3.0}
    counts = Counter(draw(weights, f"chat_{index}") for index in range(8000))
    assert counts[2] / 8000 == pytest.approx(0.75, abs=0.03)


def test_a_zero_share_version_is_never_drawn() -> None:
    assert {draw({3: 5.0}, f"c{index}") for index in range(100)} == {3}


def test_no_versions_to_draw_from() -> None:
    with pytest.raises(ValueError, match="no versions"):
        draw({}, "x")

from __future__ import annotations

import pytest

from claudegate.bots.questions import QuestionCheck, normalise, parse_command


@pytest.mark.parametrize(
    ("text", "question"),
    [
        ("!ask what is rust?", "what is rust?"),
        ("  !ASK   spaced out  ", "spaced out"),
        ("!ask", ""),
        ("!asking something", None),
        ("hello !ask there", None),
        ("\x01ACTION !ask waves\x01", None),
    ],
)
def test_the_command_is_recognised(text: str, question: str | None) -> None:
    assert parse_command(text, "!ask") == question


def test_identical_questions_share_a_normal_form() -> None:
    forms = {normalise(q) for q in ("What is Rust?", "what is rust", "WHAT  IS RUST ?!", "What is Rust…")}
    assert forms == {"what is rust"}
    assert normalise("What is Rust?") != normalise("What is Go?")


def test_normal_form_folds_compatibility_characters_and_keeps_emoji() -> None:
    assert normalise("ｗｈａｔ is 🦀?") == "what is 🦀"


def test_length_limits_are_in_characters() -> None:
    check = QuestionCheck.of(min_chars=5, max_chars=500, blocked=[])
    assert check.refusal("why?") is not None
    assert check.refusal("why 🦀") is None
    assert check.refusal("é" * 500) is None
    refusal = check.refusal("é" * 501)
    assert refusal is not None
    assert "500" in refusal


def test_blocked_phrases_match_whole_words_in_any_case() -> None:
    check = QuestionCheck.of(min_chars=1, max_chars=500, blocked=["Spoiler", "secret code"])
    assert check.refusal("any SPOILERS?") is None  # a different word
    assert check.refusal("no spoiler, please!") is not None
    assert check.refusal("What is the Secret   Code?") is not None
    assert check.refusal("is this a secret?") is None

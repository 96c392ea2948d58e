"""Answers fitted to the chat: counted in characters, cut after a sentence or a word, never inside a word
or a user-perceived character."""

from __future__ import annotations

import pytest

from claudegate.bots.answers import (
    ELLIPSIS,
    answer_lines,
    cut,
    max_tokens_for,
    pack_mentions,
    text_budget,
    tidy,
)


def test_short_text_is_kept_whole() -> None:
    assert cut("  Paris is the capital.  ", 450) == "Paris is the capital."


def test_cut_after_the_last_sentence_that_fits() -> None:
    text = "First sentence here. Second one is longer. Third will not fit at all in the budget."
    assert cut(text, 45) == "First sentence here. Second one is longer."


def test_question_and_exclamation_marks_end_sentences_too() -> None:
    assert cut("Is it? Yes it is! And then some more words follow here.", 20) == "Is it? Yes it is!"


def test_a_sentence_end_too_early_gives_way_to_a_word_cut() -> None:
    text = "Ok. " + "word " * 40
    result = cut(text, 50)
    assert result.endswith(ELLIPSIS)
    assert len(result) <= 50
    assert result[:-1].split()[-1] == "word"  # a whole word before the ellipsis


def test_word_cut_never_splits_a_word() -> None:
    text = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda"
    for limit in range(8, len(text)):
        result = cut(text, limit)
        assert len(result) <= limit
        kept = result.removesuffix(ELLIPSIS).split()
        assert kept == text.split()[: len(kept)], (limit, result)


def test_trailing_comma_is_not_left_before_the_ellipsis() -> None:
    assert cut("one, two, three, four, five, six", 17) == "one, two, three…"


def test_length_counts_characters_not_bytes() -> None:
    text = "Çà et là, les élèves étudient l'été. " * 20  # many two-byte characters
    result = cut(text, 450)
    assert len(result) <= 450
    assert len(result.encode()) > 450  # more bytes than characters: the budget is characters
    assert result.endswith(".")


def test_emoji_and_multibyte_text_is_cut_between_words() -> None:
    text = "Rust 🦀 est génial 🎉 " * 40
    result = cut(text, 100)
    assert len(result) <= 100
    result.encode("utf-8")  # whole code points only
    assert result.removesuffix(ELLIPSIS).split() == text.split()[: len(result.removesuffix(ELLIPSIS).split())]


@pytest.mark.parametrize(
    "cluster",
    [
        "👨\u200d👩\u200d👧\u200d👦",  # a family: joined by zero-width joiners
        "👍🏽",  # with a skin-tone modifier
        "🇫🇷",  # a flag: two regional indicators
        "e\u0301",  # e + combining acute accent
        "❤\ufe0f",  # with a variation selector
    ],
)
def test_a_word_longer_than_the_budget_is_cut_between_user_perceived_characters(cluster: str) -> None:
    word = cluster * 30  # no space anywhere: the only cut possible is inside the "word"
    for limit in range(2, 40):
        result = cut(word, limit)
        assert len(result) <= limit
        body = result.removesuffix(ELLIPSIS)
        assert len(body) % len(cluster) == 0, (limit, result)  # whole clusters only


def test_cjk_sentences_end_at_full_stops() -> None:
    text = "これはテストです。" * 10
    assert cut(text, 40) == "これはテストです。" * 4


def test_tidy_makes_one_line_without_markup() -> None:
    assert tidy("**Yes.**\n\nIt is `fast`.\r\n  Really.") == "Yes. It is fast. Really."


def test_max_tokens_follows_the_character_budget() -> None:
    assert max_tokens_for(440, 4.0) == 110
    assert max_tokens_for(10, 4.0) == 16  # a floor, so a tiny budget still gets a sentence


def test_answer_lines_start_with_the_mention_and_fit() -> None:
    answer = "This is a sentence. " * 40
    lines = answer_lines(["@viewer"], answer, 450)
    assert len(lines) == 1
    assert lines[0].startswith("@viewer ")
    assert len(lines[0]) <= 450


def test_many_mentions_are_spread_over_lines_that_each_fit() -> None:
    mentions = [f"@viewer_number_{i:03d}" for i in range(40)]
    text = "Short answer."
    packed = pack_mentions(mentions, text, 450)
    assert [m for group, _line in packed for m in group] == mentions
    for group, line in packed:
        assert len(line) <= 450
        assert line == " ".join(group) + " " + text


def test_budget_leaves_room_for_the_longest_mention() -> None:
    assert text_budget(["@a", "@abcdefghij"], 450) == 450 - 11 - 1

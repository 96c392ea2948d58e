from __future__ import annotations

import os
from pathlib import Path

import pytest

from claudegate.config import ConfigError, Settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("CLAUDEGATE_") or name == "ANTHROPIC_API_KEY":
            monkeypatch.delenv(name)


def test_the_bot_table_of_the_settings_file(tmp_path: Path) -> None:
    path = tmp_path / "claudegate.toml"
    path.write_text(
        '[bot]\nnick = "MyBot"\nchannel = "#SomeStreamer"\nmoderator = true\ncooldown_s = 30\n'
        'blocked_phrases = ["spoiler"]\nirc_host = "127.0.0.1"\nirc_port = 6667\nirc_tls = false\n'
    )
    bot = Settings.load(path).bot
    assert (bot.nick, bot.channel) == ("mybot", "somestreamer")
    assert (bot.irc_host, bot.irc_port, bot.irc_tls) == ("127.0.0.1", 6667, False)
    assert bot.cooldown_s == 30
    assert bot.blocked_phrases == ["spoiler"]
    assert bot.message_limit == 95  # a moderator's 100 per 30 s, less the safety margin


def test_bot_defaults_follow_twitch() -> None:
    bot = Settings.load().bot
    assert (bot.irc_host, bot.irc_port, bot.irc_tls) == ("irc.chat.twitch.tv", 6697, True)
    assert bot.capabilities == ["twitch.tv/tags", "twitch.tv/commands"]
    assert bot.token_env == "TWITCH_OAUTH_TOKEN"
    assert (bot.command_prefix, bot.cooldown_s, bot.deadline_s) == ("!ask", 60, 10)
    assert (bot.min_question_chars, bot.max_question_chars, bot.answer_max_chars) == (5, 500, 450)
    assert bot.message_limit == 19  # neither moderator nor broadcaster: 20 per 30 s, less the margin


def test_an_unknown_bot_setting_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "claudegate.toml"
    path.write_text("[bot]\ncooldown = 30\n")
    with pytest.raises(ConfigError, match=r"bot\.cooldown: unknown setting"):
        Settings.load(path)


def test_an_answer_longer_than_twitch_allows_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "claudegate.toml"
    path.write_text("[bot]\nanswer_max_chars = 600\n")
    with pytest.raises(ConfigError, match="answer_max_chars"):
        Settings.load(path)

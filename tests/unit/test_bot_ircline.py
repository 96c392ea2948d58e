from __future__ import annotations

import pytest

from claudegate.bots.ircline import escape_tag_value, format_line, parse_line, unescape_tag_value

TWITCH_PRIVMSG = (
    "@badge-info=;badges=moderator/1;color=#1E90FF;display-name=Some_Viewer;emotes=;first-msg=0;flags=;"
    "id=b34ccfc7-4977-403a-8a94-33c6bac34fb8;mod=1;room-id=713936733;subscriber=0;tmi-sent-ts=1642696567751;"
    "turbo=0;user-id=713936733;user-type=mod;reply-parent-msg-body=hi\\sthere\\:\\s\\\\o/ "
    ":some_viewer!some_viewer@some_viewer.tmi.twitch.tv PRIVMSG #channel :!ask what is up? :)"
)


def test_a_twitch_privmsg_with_tags() -> None:
    line = parse_line(TWITCH_PRIVMSG)
    assert line.command == "PRIVMSG"
    assert line.params == ("#channel", "!ask what is up? :)")
    assert line.nick == "some_viewer"
    assert line.tags["display-name"] == "Some_Viewer"
    assert line.tags["user-id"] == "713936733"
    assert line.tags["badge-info"] == ""
    assert line.tags["reply-parent-msg-body"] == "hi there; \\o/"


def test_lines_without_tags_or_prefix() -> None:
    assert parse_line("PING :tmi.twitch.tv").params == ("tmi.twitch.tv",)
    line = parse_line(":tmi.twitch.tv 001 bot :Welcome, GLHF!\r\n")
    assert (line.command, line.params, line.nick) == ("001", ("bot", "Welcome, GLHF!"), "tmi.twitch.tv")
    assert parse_line(":tmi.twitch.tv RECONNECT").command == "RECONNECT"
    assert parse_line(":server CAP * NAK :twitch.tv/tags").params == ("*", "NAK", "twitch.tv/tags")


def test_tag_without_value_and_client_tags() -> None:
    line = parse_line("@+example.com/flag;msgid=abc :n!u@h PRIVMSG #c :hi")
    assert line.tags == {"+example.com/flag": "", "msgid": "abc"}


@pytest.mark.parametrize("value", ["plain", "a b;c\\d", "line\r\nbreak", "", "trailing\\"])
def test_tag_values_round_trip(value: str) -> None:
    assert unescape_tag_value(escape_tag_value(value)) == value


def test_unescaping_follows_the_spec() -> None:
    assert unescape_tag_value("a\\sb\\:c\\\\d\\x") == "a b;c\\dx"
    assert unescape_tag_value("end\\") == "end"


def test_a_line_without_a_command_is_refused() -> None:
    with pytest.raises(ValueError, match="without a command"):
        parse_line("@a=b :prefix")


def test_formatting_puts_the_last_parameter_after_a_colon_and_strips_line_breaks() -> None:
    assert format_line("PRIVMSG", "#chan", "hello\r\nQUIT :x") == "PRIVMSG #chan :hello QUIT :x"
    assert format_line("JOIN", "#chan") == "JOIN :#chan"
    assert format_line("PRIVMSG", "#c", "hi", tags={"+reply": "a b"}) == "@+reply=a\\sb PRIVMSG #c :hi"
    with pytest.raises(ValueError, match="one word"):
        format_line("PRIVMSG", "#a b", "x")


def test_parse_of_a_formatted_line_gives_it_back() -> None:
    text = "@viewer ça va? 🦀 :)"
    line = parse_line(format_line("PRIVMSG", "#chan", text))
    assert line.params == ("#chan", text)

"""The bot's standing from Twitch's USERSTATE tags, and the message limit each standing and setting gives."""

from __future__ import annotations

import pytest

from claudegate.bots.standing import Standing, standing_of
from claudegate.config import BotSettings


@pytest.mark.parametrize(
    ("tags", "standing"),
    [
        ({"badges": "broadcaster/1,subscriber/12"}, Standing.broadcaster),
        ({"badges": "moderator/1", "mod": "1"}, Standing.moderator),
        ({"badges": "", "mod": "1"}, Standing.moderator),
        ({"badges": "vip/1"}, Standing.vip),
        ({"badges": "subscriber/3,premium/1", "mod": "0"}, Standing.viewer),
        ({}, Standing.viewer),
    ],
)
def test_standing_from_badges(tags: dict[str, str], standing: Standing) -> None:
    assert standing_of(tags) == standing


def test_only_the_broadcaster_and_moderators_get_the_higher_limit() -> None:
    assert [s.per_window for s in Standing] == [100, 100, 20, 20]


def test_the_settings_override_what_twitch_says() -> None:
    follow = BotSettings()
    assert (follow.limit_for(True), follow.limit_for(False), follow.message_limit) == (95, 19, 19)
    assert BotSettings(moderator=False).limit_for(True) == 19
    assert BotSettings(moderator=True).limit_for(False) == 95
    assert BotSettings(messages_per_window=50, message_safety=1.0).limit_for(True) == 50

"""What the question service needs from a chat platform, so that EventSub, or another platform, can be
added next to IRC without touching the service."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from claudegate.bots.standing import Standing

__all__ = ["ChatHandler", "ChatMessage", "ChatNotice", "ChatTransport", "TransportUnavailable"]


class TransportUnavailable(Exception):  # noqa: N818 - names a state
    """The transport is not connected (or is closing): the line was not sent."""


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """A message a viewer wrote in a channel."""

    channel: str  # without '#'
    login: str  # the viewer's login name, lower case: how they are mentioned
    text: str
    user_id: str | None = None  # the platform's stable id, when it sends one
    display_name: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def viewer_key(self) -> str:
        """What identifies the viewer for cooldowns: the stable id when known, else the login."""
        return f"id:{self.user_id}" if self.user_id else self.login

    @property
    def mention(self) -> str:
        """``@name``: the display name when it only differs from the login by case, else the login."""
        name = self.display_name if self.display_name and self.display_name.lower() == self.login else None
        return "@" + (name or self.login)


@dataclass(frozen=True, slots=True)
class ChatNotice:
    """Something the platform told the bot about its own messages (Twitch's NOTICE ``msg-id``)."""

    channel: str | None
    kind: str  # e.g. msg_ratelimit, msg_duplicate; "" when the platform gave none
    text: str


class ChatHandler(Protocol):
    def on_message(self, message: ChatMessage) -> None: ...

    def on_notice(self, notice: ChatNotice) -> None: ...

    def on_standing(self, standing: Standing) -> None:
        """The platform said the bot's standing in the channel (broadcaster, moderator, VIP or viewer)."""
        ...


class ChatTransport(Protocol):
    """A connection to one channel's chat that keeps itself connected until closed."""

    @property
    def connected(self) -> bool:
        """Joined and able to send."""
        ...

    async def run(self, handler: ChatHandler) -> None:
        """Connect, deliver what viewers write to ``handler`` and reconnect after failures, until
        :meth:`close`."""
        ...

    async def wait_connected(self) -> None: ...

    async def send(self, text: str) -> None:
        """Send one line to the channel; raise TransportUnavailable when not connected."""
        ...

    async def close(self) -> None: ...

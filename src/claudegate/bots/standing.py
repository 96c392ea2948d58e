"""The bot's standing in the channel, and the message limit Twitch gives it.

Twitch says it in the ``badges`` tag of ``USERSTATE``, which it sends when the bot joins and after each of
its messages: ``broadcaster/1``, ``moderator/1`` or ``vip/1`` (``mod=1`` also marks a moderator). Twitch
documents 100 messages per 30 s for the broadcaster and moderators, and 20 for anyone else; an account that
sends more is locked out of chat for about 30 minutes. A VIP is read and reported as such but paced as any
other account, since no documented limit says otherwise and guessing high costs the lockout.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["ELEVATED_PER_WINDOW", "VIEWER_PER_WINDOW", "Standing", "cost_of", "standing_of"]

ELEVATED_PER_WINDOW = 100
VIEWER_PER_WINDOW = 20


class Standing(StrEnum):
    broadcaster = "broadcaster"
    moderator = "moderator"
    vip = "vip"
    viewer = "viewer"  # none of the above: the lower limit

    @property
    def elevated(self) -> bool:
        """Whether Twitch's higher message limit applies."""
        return self in (Standing.broadcaster, Standing.moderator)

    @property
    def per_window(self) -> int:
        """Twitch's messages per 30 s for this standing."""
        return ELEVATED_PER_WINDOW if self.elevated else VIEWER_PER_WINDOW


def standing_of(tags: dict[str, str] | None) -> Standing:
    """The standing a ``USERSTATE`` line's tags give (a missing or empty ``badges`` tag: a plain viewer)."""
    tags = tags or {}
    badges = {badge.partition("/")[0] for badge in tags.get("badges", "").split(",") if badge}
    if "broadcaster" in badges:
        return Standing.broadcaster
    if "moderator" in badges or tags.get("mod") == "1":
        return Standing.moderator
    if "vip" in badges or tags.get("vip") == "1":
        return Standing.vip
    return Standing.viewer


def cost_of(limit: int, window_s: float) -> str:
    """What a low message limit costs viewers, in a sentence for the log and ``/health``."""
    return (
        f"the bot is not a moderator in the channel: Twitch lets it send {limit} lines per {window_s:g} s, "
        f"so in a burst of questions answers are shortened and packed several to a line, and whoever does "
        f"not fit waits about {window_s:g} s for the next lines. Make it a moderator (/mod <bot>) for "
        f"{ELEVATED_PER_WINDOW} per {window_s:g} s."
    )

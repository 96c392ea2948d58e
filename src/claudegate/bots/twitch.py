"""``claudegate bot twitch``: the question bot on a Twitch channel, until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

from pydantic import SecretStr

from claudegate.bots.bot import ChatBot
from claudegate.bots.irc import IrcConfig, IrcTransport
from claudegate.bots.metrics import BotMetrics
from claudegate.config import BotSettings, ConfigError, Settings

__all__ = ["irc_config", "run_twitch_bot"]

logger = logging.getLogger(__name__)


def irc_config(bot: BotSettings, channel: str, token: SecretStr | None) -> IrcConfig:
    if bot.nick is None:
        raise ConfigError("set the bot's login name: nick in the bot table of the settings file")
    return IrcConfig(
        host=bot.irc_host,
        port=bot.irc_port,
        tls=bot.irc_tls,
        nick=bot.nick,
        channel=channel.lstrip("#").lower(),
        token=token,
        capabilities=tuple(bot.capabilities),
        reconnect_min_s=bot.reconnect_min_s,
        reconnect_max_s=bot.reconnect_max_s,
        ping_interval_s=bot.ping_interval_s,
        ping_timeout_s=bot.ping_timeout_s,
    )


def _token(bot: BotSettings) -> SecretStr | None:
    value = os.environ.get(bot.token_env, "").strip()
    if value:
        return SecretStr(value)
    if bot.irc_host.endswith(".twitch.tv"):
        raise ConfigError(
            f"Twitch needs the bot account's OAuth token in the environment variable {bot.token_env}"
        )
    return None


async def run_twitch_bot(settings: Settings, channel: str) -> None:
    """Run until SIGINT or SIGTERM, then stop taking questions and drain within the grace period."""
    from claudegate.bots.claude import ClaudeAnswerer
    from claudegate.client import AsyncClient

    bot_settings = settings.bot
    metrics = BotMetrics(window_s=bot_settings.health_window_s)
    config = irc_config(bot_settings, channel, _token(bot_settings))
    transport = IrcTransport(config, on_reconnect=metrics.reconnects.inc)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with AsyncClient(settings=settings, org=bot_settings.org, user=config.channel) as client:
        answerer = ClaudeAnswerer(
            client,
            model=bot_settings.model,
            system_prompt=bot_settings.system_prompt,
            chars_per_token=bot_settings.chars_per_token,
        )
        bot = ChatBot(bot_settings, transport, answerer, metrics=metrics)
        await bot.start()
        logger.info("answering %s in #%s as %s", bot_settings.command_prefix, config.channel, config.nick)
        await stop.wait()
        logger.info(
            "stopping: no new questions; %g s to finish the accepted ones", bot_settings.shutdown_grace_s
        )
        await bot.stop()

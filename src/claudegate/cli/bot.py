"""``claudegate bot``: chat bots that answer viewers' questions through the pipeline."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

__all__ = ["register"]

bot_app = typer.Typer(
    name="bot", help="Chat bots that answer viewers' questions with Claude.", no_args_is_help=True
)


@bot_app.command("twitch")
def twitch(
    channel: str | None = typer.Option(
        None, "--channel", help="Channel to join (default: bot.channel in the settings)."
    ),
    config: Path | None = typer.Option(
        None,
        "--config",
        exists=True,
        dir_okay=False,
        help="A TOML settings file (its bot table configures the bot); the environment overrides it.",
    ),
) -> None:
    """Answer `!ask <question>` in a Twitch channel's chat.

    The IRC server, TLS, nick, command, limits and the rest come from the bot table of the settings file;
    the OAuth token from the environment variable it names (TWITCH_OAUTH_TOKEN by default). SIGINT or
    SIGTERM stops taking questions and finishes the accepted ones within bot.shutdown_grace_s.
    """
    import asyncio

    from claudegate.bots.twitch import run_twitch_bot
    from claudegate.config import ConfigError, Settings

    console = Console(stderr=True)
    try:
        settings = Settings.load(config)
    except ConfigError as error:
        console.print(f"[red]error:[/red] {escape(str(error))}")
        raise typer.Exit(2) from None
    name = channel or settings.bot.channel
    if not name:
        console.print("[red]error:[/red] give --channel NAME, or set channel in the settings' bot table")
        raise typer.Exit(2)
    from claudegate.accounting.access_log import configure_logging

    configure_logging(settings.log_level, settings.log_format)
    try:
        asyncio.run(run_twitch_bot(settings, name))
    except ConfigError as error:
        console.print(f"[red]error:[/red] {escape(str(error))}")
        raise typer.Exit(2) from None


def register(app: typer.Typer) -> None:
    app.add_typer(bot_app)

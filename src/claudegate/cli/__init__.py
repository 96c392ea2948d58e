"""The ``claudegate`` command. Each subcommand lives in a module of its own and registers itself here."""

from __future__ import annotations

import typer

from claudegate._version import __version__
from claudegate.cli import bot, budgets, calls, db, keys, orgs, prompts, serve, simulate, usage

__all__ = ["app", "main"]

app = typer.Typer(
    name="claudegate",
    help=(
        "Run Anthropic's Claude in production: an Anthropic-compatible gateway with flow control and "
        "accounting, a chat API, chat bots, and an Anthropic API simulator."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"claudegate {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """claudegate: run Anthropic's Claude in production."""


serve.register(app)
simulate.register(app)
keys.register(app)
orgs.register(app)
usage.register(app)
prompts.register(app)
budgets.register(app)
calls.register(app)
db.register(app)
bot.register(app)


def main() -> None:
    app()

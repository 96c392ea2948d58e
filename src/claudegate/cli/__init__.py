"""The ``claudegate`` command. Each subcommand lives in a module of its own and registers itself here."""

from __future__ import annotations

import functools

import typer
import typer.core
import typer.main

from claudegate._version import __version__
from claudegate.cli import (
    bot,
    budgets,
    calls,
    config,
    db,
    keys,
    models,
    orgs,
    prompts,
    serve,
    simulate,
    usage,
)

__all__ = ["app", "command", "main"]

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
config.register(app)
bot.register(app)
models.register(app)


def command() -> typer.core.TyperGroup:
    """The ``claudegate`` command as click runs it, its help written for people (see ``_plain_metavars``)."""
    root = typer.main.get_command(app)
    assert isinstance(root, typer.core.TyperGroup)
    _plain_metavars(root)
    return root


def _plain_metavars(command: typer.core.TyperGroup | typer.core.TyperCommand) -> None:
    """Name each option's value as the help's reader needs it: ``--port PORT``, a flag alone (``--json``,
    ``--help``), choices as ``1|2|3``, an argument by its name (``KEY_ID``), instead of the type placeholders
    typer shows (``<int>``, ``<bool>``, ``<list[str]>``, ``{key_id}``). A metavar declared with the option
    is kept. Typer has no setting for this, so the command tree is adjusted once, before it runs."""
    help_option = command.get_help_option(typer.Context(command))
    if help_option is not None:
        help_option.metavar = ""
    for param in command.params:
        if isinstance(param, typer.core.TyperArgument):
            name = param.metavar or (param.name or "").upper()
            param.metavar = name
            param.display_type_rich = _no_type  # type: ignore[method-assign]
            param._usage_display_name = functools.partial(str, name)  # type: ignore[method-assign]
            continue
        if not isinstance(param, typer.core.TyperOption | typer.core.TyperArgument) or param.metavar:
            continue
        described = param.type_descriptor
        if isinstance(param, typer.core.TyperOption) and param.is_flag:
            param.metavar = ""
        elif described.is_choice and described.choices:
            param.metavar = "|".join(str(getattr(choice, "value", choice)) for choice in described.choices)
        elif param.name is not None:
            param.metavar = param.name.upper()
    if isinstance(command, typer.core.TyperGroup):
        for sub in command.commands.values():
            if isinstance(sub, typer.core.TyperGroup | typer.core.TyperCommand):
                _plain_metavars(sub)


def _no_type(ctx: object) -> None:
    return None


def main() -> None:
    command()(prog_name="claudegate")

"""What the database commands share: loading settings, opening the (upgraded) store, failing cleanly."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from claudegate.config import ConfigError, Settings

if TYPE_CHECKING:
    from claudegate.store import Store

__all__ = ["CliError", "ConfigOption", "JsonOption", "fail", "print_table", "run_with_store"]

T = TypeVar("T")

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", help="A TOML settings file (environment variables override it).", dir_okay=False
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


class CliError(Exception):
    """A problem to report in one line, without a traceback."""


def print_table(table: Table) -> None:
    """Print a table whole. Output to a pipe or file is not cut to rich's default 80 columns; tables are only
    as wide as their content anyway."""
    for column in table.columns:
        column.no_wrap = True  # a wrapped id, date or number is hard to read
    console = Console()
    if not console.is_terminal:
        console = Console(width=250)
    console.print(table)


def fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def run_with_store(config_file: Path | None, action: Callable[[Store, Settings], Awaitable[T]]) -> T:
    """Run ``action`` against the configured database, after bringing its schema up to date."""
    # The store pulls in SQLAlchemy; importing it here keeps `claudegate --help` and other commands fast.
    from sqlalchemy.exc import SQLAlchemyError

    from claudegate.store import Store, StoreError

    try:
        settings = Settings.load(config_file)
    except ConfigError as exc:
        fail(str(exc))

    async def main() -> T:
        store = await Store.open(settings.database_url)
        try:
            return await action(store, settings)
        finally:
            await store.close()

    try:
        return asyncio.run(main())
    except (CliError, StoreError) as exc:
        fail(str(exc))
    except (SQLAlchemyError, OSError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        fail(f"cannot use the database at {settings.database_url_redacted}: {reason}")

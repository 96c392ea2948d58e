"""``claudegate db``: database maintenance."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import typer

from claudegate.cli._store import ConfigOption, JsonOption, run_with_store

if TYPE_CHECKING:
    from claudegate.config import Settings
    from claudegate.store import Store

__all__ = ["register"]

db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)


@db_app.command("upgrade")
def upgrade(config: ConfigOption = None, json_output: JsonOption = False) -> None:
    """Create the database schema or upgrade it to this claudegate version (every command does this too)."""
    from claudegate.store import current_revision

    async def action(_store: Store, settings: Settings) -> tuple[str, str | None]:
        return settings.database_url_redacted, await current_revision(settings.database_url)

    # run_with_store has already upgraded the schema by the time action runs.
    where, revision = run_with_store(config, action)
    if json_output:
        typer.echo(json.dumps({"database": where, "revision": revision}))
        return
    typer.echo(f"Database {where} is at revision {revision} (the newest).")


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")

"""``claudegate orgs``: organisations' and users' limits and weights."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import orjson
import typer

from claudegate.cli._settings import (
    ConcurrencyOption,
    RpmOption,
    TpmOption,
    WeightOption,
    limit_lines,
    parse_settings,
    print_lines,
)
from claudegate.cli._store import CliError, ConfigOption, JsonOption, run_with_store

if TYPE_CHECKING:
    from claudegate.config import Settings
    from claudegate.store import OrgRow, Store, UserRow

__all__ = ["register"]

orgs_app = typer.Typer(help="Organisations and their users: limits and weights.", no_args_is_help=True)


@orgs_app.command("limits")
def limits(
    org: Annotated[str, typer.Argument(help="The organisation's name.")],
    user: Annotated[
        str | None, typer.Option(help="Change this user of the organisation instead of the organisation.")
    ] = None,
    rpm: RpmOption = None,
    tpm: TpmOption = None,
    concurrency: ConcurrencyOption = None,
    weight: WeightOption = None,
    json_output: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Change an organisation's limits and weight (or a user's, with --user), then show them all.

    An organisation's limits cover all its keys together; a user's cover all the user's keys.

    The weight shares capacity between organisations, or between the users of one organisation.

    Only the options given change; without any, the settings are only shown.

    Running gateways apply a change within key_cache_ttl_s.
    """
    changes = parse_settings(
        {
            "requests_per_minute": rpm,
            "tokens_per_minute": tpm,
            "max_concurrency": concurrency,
            "weight": weight,
        }
    )

    async def action(store: Store, _settings: Settings) -> OrgRow | UserRow:
        org_row = await store.orgs.get_org(org)
        if org_row is None:
            raise CliError(f"no organization named {org!r}")
        if user is None:
            updated_org = await store.orgs.update_org_settings(org_row.id, **changes)
            if updated_org is None:
                raise CliError(f"no organization named {org!r}")
            return updated_org
        user_row = await store.orgs.get_user(org_row.id, user)
        if user_row is None:
            raise CliError(f"no user named {user!r} in organization {org!r}")
        updated_user = await store.orgs.update_user_settings(user_row.id, **changes)
        if updated_user is None:
            raise CliError(f"no user named {user!r} in organization {org!r}")
        return updated_user

    row = run_with_store(config, action)
    from claudegate.store.render import org_json, user_json
    from claudegate.store.rows import UserRow

    if json_output:
        data = user_json(row, org) if isinstance(row, UserRow) else org_json(row)
        typer.echo(orjson.dumps(data).decode())
        return
    what = f"user {row.name} of org {org}" if isinstance(row, UserRow) else f"org {row.name}"
    title = f"{'Updated' if changes else 'Settings of'} {what}:"
    weight_text = "1 (default)" if row.weight is None else f"{row.weight:g}"
    print_lines(title, [*limit_lines(row.limits), ("weight", weight_text)])


def register(app: typer.Typer) -> None:
    app.add_typer(orgs_app, name="orgs")

"""``claudegate keys``: create, list and revoke gateway keys, and set their limits."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer

from claudegate.cli._settings import (
    ConcurrencyOption,
    DeadlineOption,
    PriorityOption,
    RpmOption,
    TpmOption,
    limit_lines,
    parse_settings,
    print_lines,
    setting_text,
)
from claudegate.cli._store import (
    CliError,
    ConfigOption,
    JsonOption,
    compact,
    fail,
    print_table,
    run_with_store,
)

if TYPE_CHECKING:
    from claudegate.config import Settings
    from claudegate.store import KeyRow, NewKey, Store

__all__ = ["register"]

ActForUsersOption = Annotated[
    str | None,
    typer.Option(
        "--act-for-users",
        metavar="yes|no",
        help="Whether the key may act for end users of its organisation (chat API, x-user-id).",
    ),
]


CacheOption = Annotated[
    str | None,
    typer.Option(
        "--cache",
        metavar="on|off|default",
        help="Whether the response cache answers the key's calls; default: as its organisation (cache_orgs).",
    ),
]
_CACHE_CHOICES = {"on": True, "off": False, "default": None}


def _cache(text: str | None) -> dict[str, bool | None]:
    if text is None:
        return {}
    value = text.strip().lower()
    if value not in _CACHE_CHOICES:
        fail(f"--cache: expected on, off or default, got {text!r}")
    return {"cache_replies": _CACHE_CHOICES[value]}


def _act_for_users(text: str | None) -> dict[str, bool]:
    if text is None:
        return {}
    value = text.strip().lower()
    if value not in ("yes", "no", "true", "false"):
        fail(f"--act-for-users: expected yes or no, got {text!r}")
    return {"act_for_users": value in ("yes", "true")}


def _key_settings(
    rpm: str | None,
    tpm: str | None,
    concurrency: str | None,
    deadline_ms: str | None,
    priority: str | None,
    act_for_users: str | None,
    cache: str | None = None,
) -> dict[str, Any]:
    """A key's settings as given to ``keys create`` or ``keys limits``, parsed and checked."""
    settings = parse_settings(
        {
            "requests_per_minute": rpm,
            "tokens_per_minute": tpm,
            "max_concurrency": concurrency,
            "deadline_ms": deadline_ms,
            "priority": priority,
        }
    )
    settings.update(_act_for_users(act_for_users))
    settings.update(_cache(cache))
    return settings


keys_app = typer.Typer(
    help="Create, list and revoke gateway keys (cg-…), and set their limits.", no_args_is_help=True
)


@keys_app.command("create")
def create(
    org: Annotated[str, typer.Option(help="Organisation that owns the key (created if missing).")],
    user: Annotated[
        str | None, typer.Option(help="User within the organisation (created if missing).")
    ] = None,
    name: Annotated[str, typer.Option(help="A name to tell the key apart from others.")] = "default",
    rpm: RpmOption = None,
    tpm: TpmOption = None,
    concurrency: ConcurrencyOption = None,
    deadline_ms: DeadlineOption = None,
    priority: PriorityOption = None,
    act_for_users: ActForUsersOption = None,
    cache: CacheOption = None,
    json_output: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Create a key and print it. This is the only time the key is shown: only its hash is stored.

    Without limits the key is limited only by its user's and organisation's (see `keys limits`)."""
    settings = _key_settings(rpm, tpm, concurrency, deadline_ms, priority, act_for_users, cache)

    async def action(store: Store, _settings: Settings) -> NewKey:
        org_row = await store.orgs.get_or_create_org(org)
        user_row = await store.orgs.get_or_create_user(org_row.id, user) if user is not None else None
        return await store.keys.create_key(
            org_id=org_row.id, user_id=user_row.id if user_row else None, name=name, **settings
        )

    new = run_with_store(config, action)
    if json_output:
        from claudegate.store.render import new_key_json

        typer.echo(orjson.dumps(new_key_json(new)).decode())
        return
    owner = f"org {new.row.org_name}" + (f", user {new.row.user_name}" if new.row.user_name else "")
    typer.echo(f"Created key {new.row.id} ({new.row.name!r}) for {owner}:\n")
    typer.echo(f"    {new.key}\n")
    typer.echo("Store it now: claudegate keeps only its hash and cannot show it again.")


@keys_app.command("list")
def list_keys(
    org: Annotated[str | None, typer.Option(help="Only this organisation's keys.")] = None,
    json_output: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """List keys by their prefix (keys themselves are never stored)."""

    async def action(store: Store, _settings: Settings) -> list[KeyRow]:
        org_id = None
        if org is not None:
            org_row = await store.orgs.get_org(org)
            if org_row is None:
                raise CliError(f"no organization named {org!r}")
            org_id = org_row.id
        return await store.keys.list_keys(org_id)

    rows = run_with_store(config, action)
    from claudegate.store.render import key_json

    if json_output:
        typer.echo(orjson.dumps([key_json(row) for row in rows]).decode())
        return
    from rich.table import Table

    table = Table(
        "id",
        "org",
        "user",
        "name",
        "prefix",
        "created",
        "last used",
        "status",
        "rpm",
        "tpm",
        "conc",
        "deadline ms",
        "prio",
        caption="rpm, tpm, conc(urrency): the key's own limits (- none); its user's and org's apply too",
    )
    for column in table.columns[8:]:
        column.justify = "right"
    for row in rows:
        data = key_json(row)
        table.add_row(
            str(row.id),
            row.org_name,
            row.user_name or "",
            row.name,
            row.prefix + "…",
            _short(data["created_at"]),
            _short(data["last_used_at"]) or "never",
            "active" if row.active else "revoked",
            _limit(row.limits.requests_per_minute),
            _limit(row.limits.tokens_per_minute),
            _limit(row.limits.max_concurrency),
            setting_text(row.deadline_ms),
            str(row.priority or 0),
        )
    print_table(table, priorities=[0, 0, 1, 2, 3, 5, 4, 0, 1, 1, 2, 3, 3])


@keys_app.command("revoke")
def revoke(
    key_id: Annotated[int, typer.Argument(help="The key's id, as `keys list` shows it.")],
    json_output: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Revoke a key. Running gateways stop accepting it within key_cache_ttl_s."""

    async def action(store: Store, _settings: Settings) -> tuple[KeyRow | None, KeyRow | None]:
        before = await store.keys.get_key(key_id)
        if before is None:
            raise CliError(f"no key with id {key_id}")
        return before, await store.keys.revoke_key(key_id)

    before, after = run_with_store(config, action)
    if json_output:
        from claudegate.store.render import key_json

        row = after or before
        assert row is not None
        data = {**key_json(row), "already_revoked": before is not None and not before.active}
        typer.echo(orjson.dumps(data).decode())
        return
    if before is not None and not before.active:
        typer.echo(f"Key {key_id} ({before.prefix}…) was already revoked.")
    elif after is not None:
        typer.echo(f"Revoked key {key_id} ({after.prefix}…) of org {after.org_name}.")


@keys_app.command("limits")
def limits(
    key_id: Annotated[int, typer.Argument(help="The key's id, as `keys list` shows it.")],
    rpm: RpmOption = None,
    tpm: TpmOption = None,
    concurrency: ConcurrencyOption = None,
    deadline_ms: DeadlineOption = None,
    priority: PriorityOption = None,
    act_for_users: ActForUsersOption = None,
    cache: CacheOption = None,
    json_output: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Change a key's limits, deadline, priority, end-user permission or caching, then show them all.

    Only the options given change; without any, the settings are only shown.

    Running gateways apply a change within key_cache_ttl_s.
    """
    changes = _key_settings(rpm, tpm, concurrency, deadline_ms, priority, act_for_users, cache)

    async def action(store: Store, _settings: Settings) -> KeyRow:
        row = await store.keys.update_key_settings(key_id, **changes)
        if row is None:
            raise CliError(f"no key with id {key_id}")
        return row

    row = run_with_store(config, action)
    if json_output:
        from claudegate.store.render import key_json

        typer.echo(orjson.dumps(key_json(row)).decode())
        return
    owner = f"org {row.org_name}" + (f", user {row.user_name}" if row.user_name else "")
    title = f"{'Updated key' if changes else 'Key'} {row.id} ({row.name!r}, {row.prefix}…) of {owner}:"
    print_lines(
        title,
        [
            *limit_lines(row.limits),
            ("default deadline", "none" if row.deadline_ms is None else f"{row.deadline_ms:,} ms"),
            ("priority", str(row.priority or 0)),
            ("acts for end users", "yes" if row.act_for_users else "no"),
            ("response cache", {True: "on", False: "off", None: "as its organisation"}[row.cache_replies]),
        ],
    )


def _limit(value: int | None) -> str:
    return "-" if value is None else compact(value)


def _short(moment: str | None) -> str:
    """``2026-11-22T10:15:00.123Z`` → ``2026-11-22 10:15`` (UTC) for tables."""
    return "" if moment is None else moment[:16].replace("T", " ")


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")

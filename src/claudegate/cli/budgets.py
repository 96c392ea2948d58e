"""``claudegate budgets``: daily and monthly caps in tokens and dollars per organisation and per user."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer

from claudegate.cli._settings import print_lines
from claudegate.cli._store import CliError, ConfigOption, JsonOption, fail, run_with_store

if TYPE_CHECKING:
    from claudegate.config import Settings
    from claudegate.store import Store

__all__ = ["register"]

budgets_app = typer.Typer(
    help="Spending caps per organisation and user: tokens and dollars, per UTC day and month.",
    no_args_is_help=True,
)

_OPTIONS = {
    "daily_tokens": "--daily-tokens",
    "monthly_tokens": "--monthly-tokens",
    "daily_usd": "--daily-usd",
    "monthly_usd": "--monthly-usd",
}


def _cap(name: str, text: str | None) -> object:
    """An option's value: UNSET when not given, None for 'none', else a number."""
    from claudegate.store.settings import UNSET

    if text is None:
        return UNSET
    if text.strip().lower() == "none":
        return None
    try:
        return int(text) if name.endswith("_tokens") else text.strip()
    except ValueError:
        fail(f"{_OPTIONS[name]}: expected a whole number of tokens or 'none', got {text!r}")


@budgets_app.command("set")
def set_budget(
    org: Annotated[str, typer.Argument(help="The organisation's name.")],
    user: Annotated[str | None, typer.Option(help="Cap this user of the organisation instead.")] = None,
    daily_tokens: Annotated[
        str | None, typer.Option("--daily-tokens", metavar="N|none", help="Tokens per UTC day.")
    ] = None,
    monthly_tokens: Annotated[
        str | None, typer.Option("--monthly-tokens", metavar="N|none", help="Tokens per calendar month.")
    ] = None,
    daily_usd: Annotated[
        str | None, typer.Option("--daily-usd", metavar="X|none", help="US dollars per UTC day.")
    ] = None,
    monthly_usd: Annotated[
        str | None, typer.Option("--monthly-usd", metavar="X|none", help="US dollars per calendar month.")
    ] = None,
    json_output: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Set or clear ('none') caps, then show the caps and what was spent. Without options, only show them.

    Tokens count all input (cached or not) and output. A call that would pass a cap is refused with
    402 billing_error naming the cap and when it resets. Running gateways apply a change within
    key_cache_ttl_s.
    """
    given = {"daily_tokens": daily_tokens, "monthly_tokens": monthly_tokens, "daily_usd": daily_usd}
    given["monthly_usd"] = monthly_usd
    changes = {name: _cap(name, text) for name, text in given.items()}
    from claudegate.store.budgets import check_budget_changes
    from claudegate.store.rows import InvalidSettingError

    try:
        check_budget_changes(changes)
    except InvalidSettingError as exc:
        fail(f"{_OPTIONS.get(exc.setting, exc.setting)}: {exc.problem}")
    _report(org, user, changes, json_output=json_output, config=config)


@budgets_app.command("show")
def show(
    org: Annotated[str, typer.Argument(help="The organisation's name.")],
    user: Annotated[str | None, typer.Option(help="Show this user of the organisation instead.")] = None,
    json_output: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Show the caps and what was spent today and this month (from the usage records)."""
    _report(org, user, {}, json_output=json_output, config=config)


def _report(
    org: str, user: str | None, changes: dict[str, object], *, json_output: bool, config: Any
) -> None:
    async def action(store: Store, _settings: Settings) -> dict[str, Any]:
        return await _apply(store, org, user, changes)

    report = run_with_store(config, action)
    if json_output:
        typer.echo(orjson.dumps(report).decode())
        return
    who = f"user {user} of org {org}" if user else f"org {org}"
    spent = report["spent"]
    print_lines(
        f"Budget of {who}:",
        [
            ("tokens per day", _show(report["daily_tokens"])),
            ("tokens per month", _show(report["monthly_tokens"])),
            ("dollars per day", _show(report["daily_usd"], dollars=True)),
            ("dollars per month", _show(report["monthly_usd"], dollars=True)),
            ("spent today", f"{spent['today']['tokens']:,} tokens, ${spent['today']['usd']}"),
            ("spent this month", f"{spent['this_month']['tokens']:,} tokens, ${spent['this_month']['usd']}"),
        ],
    )


async def _apply(store: Store, org: str, user: str | None, changes: dict[str, object]) -> dict[str, Any]:
    from claudegate.chat.render import usd
    from claudegate.pipeline.budgets import period_end
    from claudegate.server.admin_chat import budget_json
    from claudegate.store.render import iso

    org_row = await store.orgs.get_org(org)
    if org_row is None:
        raise CliError(f"no organization named {org!r}")
    user_id = None
    if user is not None:
        user_row = await store.orgs.get_user(org_row.id, user)
        if user_row is None:
            raise CliError(f"no user named {user!r} in organization {org!r}")
        user_id = user_row.id
    caps = await store.budgets.update(org_id=org_row.id, user_id=user_id, changes=changes)
    if caps is None:
        raise CliError("no such organization or user")
    now = datetime.now(UTC)
    day = datetime(now.year, now.month, now.day, tzinfo=UTC)
    today = await store.budgets.spent(org_id=org_row.id, user_id=user_id, since=day)
    month = await store.budgets.spent(org_id=org_row.id, user_id=user_id, since=day.replace(day=1))
    return {
        "org": org,
        "user": user,
        **budget_json(caps),
        "spent": {
            "today": {
                "tokens": today.tokens,
                "usd": usd(today.usd),
                "resets_at": iso(period_end(now, "day")),
            },
            "this_month": {
                "tokens": month.tokens,
                "usd": usd(month.usd),
                "resets_at": iso(period_end(now, "month")),
            },
        },
    }


def _show(value: float | None, *, dollars: bool = False) -> str:
    if value is None:
        return "no cap"
    return f"${value:,.2f}" if dollars else f"{value:,}"


def register(app: typer.Typer) -> None:
    app.add_typer(budgets_app, name="budgets")

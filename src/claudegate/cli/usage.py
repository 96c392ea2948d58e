"""``claudegate usage``: what was used and spent, grouped by model, day, user or key; or, with ``--per`` or
``--by``, per hour, day or month split by organisation, user, key or model (the admin API's
``/usage/series`` and the web console's query)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import orjson
import typer

from claudegate.cli._store import (
    CliError,
    ConfigOption,
    JsonOption,
    compact,
    fail,
    money,
    print_table,
    run_with_store,
)
from claudegate.store.rows import Bucket, GroupBy, SeriesBy

if TYPE_CHECKING:
    from datetime import datetime
    from pathlib import Path

    from claudegate.config import Settings
    from claudegate.store import Store, UsageReportRow
    from claudegate.store.usage_series import UsageSeriesRow

__all__ = ["register"]


def usage(
    org: Annotated[str | None, typer.Option(help="Only this organisation's usage.")] = None,
    since: Annotated[
        str | None, typer.Option(help="Start: a date (2026-11-01, UTC), an ISO 8601 time, or 7d / 12h ago.")
    ] = None,
    group_by: Annotated[GroupBy, typer.Option("--group-by", help="How to group the rows.")] = GroupBy.MODEL,
    per: Annotated[Bucket | None, typer.Option(help="One row per hour, day or month (UTC).")] = None,
    by: Annotated[
        SeriesBy | None, typer.Option(help="Split each period by organisation, user, key or model.")
    ] = None,
    until: Annotated[str | None, typer.Option(help="End (exclusive), written as --since.")] = None,
    json_output: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Report requests, errors, tokens and cost at list prices (by session: per Claude Code session)."""
    from claudegate.store.render import parse_since, usage_json

    start: datetime | None = None
    end: datetime | None = None
    for name, text in (("since", since), ("until", until)):
        if text is not None:
            try:
                moment = parse_since(text)
            except ValueError as exc:
                fail(f"{name}: {exc}" if name == "until" else str(exc))
            start, end = (moment, end) if name == "since" else (start, moment)
    if per is not None or by is not None or until is not None:
        _series(org, start, end, per, by or SeriesBy.TOTAL, json_output=json_output, config=config)
        return

    async def action(store: Store, _settings: Settings) -> list[UsageReportRow]:
        org_id = None
        if org is not None:
            org_row = await store.orgs.get_org(org)
            if org_row is None:
                raise CliError(f"no organization named {org!r}")
            org_id = org_row.id
        return await store.usage.report(group_by=group_by, org_id=org_id, since=start)

    rows = run_with_store(config, action)
    if json_output:
        typer.echo(orjson.dumps([usage_json(row) for row in rows]).decode())
        return
    from rich.table import Table

    table = Table(
        group_by.value,
        "calls",
        "errors",
        "input",
        "output",
        "cache write",
        "cache read",
        "cost $",
        title=_title(org, since),
        caption="tokens: 12.3k = 12,300, 1.2M = 1,200,000 (--json gives exact figures)",
    )
    for column in table.columns[1:]:
        column.justify = "right"
    for row in rows:
        table.add_row(
            _group_text(group_by, row),
            compact(row.requests),
            compact(row.errors),
            compact(row.input_tokens),
            compact(row.output_tokens),
            compact(row.cache_creation_input_tokens),
            compact(row.cache_read_input_tokens),
            _cost_text(row),
        )
    print_table(table, priorities=[0, 0, 1, 0, 0, 2, 2, 0])
    unpriced = sum(row.unpriced_requests for row in rows)
    if unpriced:
        typer.echo(f"{unpriced:,} requests used models with no price; their cost is not included.")


def _series(
    org: str | None,
    start: datetime | None,
    end: datetime | None,
    per: Bucket | None,
    by: SeriesBy,
    *,
    json_output: bool,
    config: Path | None,
) -> None:
    from claudegate.store.usage_series import UsageQuery, series_json

    async def action(store: Store, _settings: Settings) -> list[UsageSeriesRow]:
        org_id = None
        if org is not None:
            org_row = await store.orgs.get_org(org)
            if org_row is None:
                raise CliError(f"no organization named {org!r}")
            org_id = org_row.id
        query = UsageQuery(bucket=per, by=by, org_id=org_id, since=start, until=end)
        return await store.usage.series(query)

    rows = run_with_store(config, action)
    if json_output:
        typer.echo(orjson.dumps([series_json(row) for row in rows]).decode())
        return
    from rich.table import Table

    table = Table(
        per.value if per is not None else "period",
        by.value,
        "calls",
        "errors",
        "input",
        "output",
        "cache write",
        "cache read",
        "cost $",
        title="Usage" + (f" of {org}" if org else ""),
        caption="tokens: 12.3k = 12,300, 1.2M = 1,200,000 (--json gives exact figures); * some unpriced",
    )
    for column in table.columns[2:]:
        column.justify = "right"
    for row in rows:
        table.add_row(
            row.period or "all",
            row.label or row.group or ("all" if by is SeriesBy.TOTAL else "(none)"),
            compact(row.requests),
            compact(row.errors),
            compact(row.input_tokens),
            compact(row.output_tokens),
            compact(row.cache_creation_input_tokens),
            compact(row.cache_read_input_tokens),
            money(float(row.cost_usd)) + (" *" if row.unpriced_requests else ""),
        )
    print_table(table, priorities=[0, 0, 0, 1, 0, 0, 2, 2, 0])


def _title(org: str | None, since: str | None) -> str:
    return "Usage" + (f" of {org}" if org else "") + (f" since {since}" if since else "")


def _group_text(group_by: GroupBy, row: UsageReportRow) -> str:
    if group_by is GroupBy.KEY and row.group is not None:
        return f"{row.group}: {row.label}" if row.label else row.group
    return row.group if row.group is not None else "(none)"


def _cost_text(row: UsageReportRow) -> str:
    text = money(float(row.cost_usd))
    return text + " *" if row.unpriced_requests else text


def register(app: typer.Typer) -> None:
    app.command("usage")(usage)

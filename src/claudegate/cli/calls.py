"""``claudegate calls show ID``: one call's story, found by any id its client saw."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer
from rich.table import Table

from claudegate.cli._store import CliError, ConfigOption, JsonOption, print_table, run_with_store

if TYPE_CHECKING:
    from claudegate.config import Settings
    from claudegate.store import Store

__all__ = ["register"]

calls_app = typer.Typer(
    help="Diagnose one call: its usage record, admission wait and attempts.", no_args_is_help=True
)


@calls_app.command("show")
def show(
    call_id: Annotated[
        str,
        typer.Argument(
            metavar="ID",
            help="The call's x-claudegate-request-id, its upstream request-id, or its message id (msg_…).",
        ),
    ],
    curl: Annotated[
        bool,
        typer.Option(
            "--curl",
            help="Print a curl command that reproduces the call (its organisation must log payloads).",
        ),
    ] = False,
    url: Annotated[
        str | None, typer.Option(help="The gateway's base URL for --curl (default: host and port settings).")
    ] = None,
    json_output: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Show a call: status, upstream, ids, tokens, timings, the admission wait and each attempt."""
    from claudegate.diagnostics import curl_command, describe_call
    from claudegate.store.calls import CallRepository

    async def action(store: Store, settings: Settings) -> tuple[dict[str, Any], str | None]:
        calls = CallRepository(store.engine)
        record = await calls.find(call_id)
        if record is None:
            raise CliError(
                f"no call with the id {call_id!r} (a gateway request id, an upstream request-id or a msg_ id)"
            )
        if not curl:
            return describe_call(record), None
        payload = await calls.payload(record["request_id"])
        if payload is None:
            raise CliError(
                "this call's request was not logged: payload logging is off for its organisation (set "
                "payload_log_orgs), or the payload is older than payload_retention_days"
            )
        base = url or f"http://{settings.host}:{settings.port}"
        return describe_call(record), curl_command(base, payload)

    described, command = run_with_store(config, action)
    if command is not None:
        typer.echo(command)
        return
    if json_output:
        typer.echo(orjson.dumps(described, option=orjson.OPT_INDENT_2).decode())
        return
    _print(described)


def _print(described: dict[str, Any]) -> None:
    summary = Table("field", "value", title=f"call {described['request_id']}")
    for name, value in described.items():
        if name != "attempt_log" and value is not None:
            summary.add_row(name, str(value))
    print_table(summary)
    attempts = Table(
        "#",
        "upstream",
        "status",
        "error",
        "upstream request-id",
        "began ms",
        "first byte ms",
        "ms",
        title="attempts",
    )
    for number, attempt in enumerate(described["attempt_log"], start=1):
        attempts.add_row(
            str(number),
            str(attempt.get("upstream", "")),
            str(attempt.get("status", "")),
            str(attempt.get("error_type") or ""),
            str(attempt.get("upstream_request_id") or ""),
            str(attempt.get("began_ms", "")),
            str(attempt.get("first_byte_ms", "")),
            str(attempt.get("ms", "")),
        )
    if described["attempt_log"]:
        print_table(attempts)
    else:
        typer.echo("no upstream attempt (answered from the cache, or refused before reaching an upstream)")


def register(app: typer.Typer) -> None:
    app.add_typer(calls_app, name="calls")

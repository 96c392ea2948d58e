"""``claudegate prompts``: named system prompts with numbered versions for the chat API."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

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

if TYPE_CHECKING:
    from claudegate.config import Settings
    from claudegate.store import OrgRow, Store
    from claudegate.store.chat_rows import PromptRow

__all__ = ["register"]

prompts_app = typer.Typer(
    help="Chat prompts: versions, which is active, A/B splits, rollback and usage per version.",
    no_args_is_help=True,
)

OrgArgument = Annotated[str, typer.Argument(help="The organisation's name.")]
NameArgument = Annotated[str, typer.Argument(help="The prompt's name.")]


async def _org(store: Store, name: str) -> OrgRow:
    org = await store.orgs.get_org(name)
    if org is None:
        raise CliError(f"no organization named {name!r}")
    return org


async def _prompt(store: Store, org: str, name: str) -> tuple[OrgRow, PromptRow]:
    org_row = await _org(store, org)
    prompt = await store.prompts.get_prompt(org_row.id, name)
    if prompt is None:
        raise CliError(f"no prompt named {name!r} in organization {org!r}")
    return org_row, prompt


def _describe(prompt: PromptRow) -> str:
    if prompt.split:
        total = sum(prompt.split.values())
        shares = ", ".join(f"v{v} {w / total:.0%}" for v, w in prompt.split.items())
        return f"split {shares}"
    return f"v{prompt.active_version} active" if prompt.active_version else "no active version"


def _print_prompt(prompt: PromptRow, json_output: bool, what: str) -> None:
    from claudegate.chat.render import prompt_json

    if json_output:
        typer.echo(orjson.dumps(prompt_json(prompt)).decode())
    else:
        typer.echo(f"{what}: prompt {prompt.name!r}, {_describe(prompt)} (latest v{prompt.latest_version})")


@prompts_app.command("create")
def create(
    org: OrgArgument,
    name: NameArgument,
    text: Annotated[str | None, typer.Option("--text", help="The system prompt.")] = None,
    file: Annotated[
        Path | None, typer.Option("--file", help="Read the system prompt from this file.", dir_okay=False)
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="The model this version is for (default: the chat's).")
    ] = None,
    note: Annotated[str | None, typer.Option(help="A note: what changed in this version.")] = None,
    activate: Annotated[
        bool | None,
        typer.Option(
            "--activate/--no-activate",
            help="Make it the active version (default: only if none is active yet).",
            show_default=False,
        ),
    ] = None,
    json_output: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Add a version to a prompt (creating the prompt, as version 1, if it is new)."""
    if (text is None) == (file is None):
        fail("give the system prompt with --text or --file (one of them)")
    if file is not None:
        try:
            text = file.read_text(encoding="utf-8")
        except OSError as exc:
            fail(f"cannot read {file}: {exc}")
    assert text is not None
    system = text

    async def action(store: Store, _settings: Settings) -> tuple[PromptRow, int]:
        org_row = await _org(store, org)
        prompt, version = await store.prompts.create_version(
            org_row.id, name, system=system, model=model, note=note, activate=activate
        )
        return prompt, version.version

    prompt, number = run_with_store(config, action)
    _print_prompt(prompt, json_output, f"Created version {number}")


@prompts_app.command("list")
def list_prompts(org: OrgArgument, json_output: JsonOption = False, config: ConfigOption = None) -> None:
    """List an organisation's prompts with their active version or split."""

    async def action(store: Store, _settings: Settings) -> list[PromptRow]:
        return await store.prompts.list_prompts((await _org(store, org)).id)

    prompts = run_with_store(config, action)
    from claudegate.chat.render import prompt_json

    if json_output:
        typer.echo(orjson.dumps([prompt_json(prompt) for prompt in prompts]).decode())
        return
    from rich.table import Table

    table = Table("prompt", "versions", "new chats get", "rollback to")
    for prompt in prompts:
        table.add_row(
            prompt.name,
            str(prompt.latest_version),
            _describe(prompt),
            f"v{prompt.previous_version}" if prompt.previous_version else "-",
        )
    print_table(table)


@prompts_app.command("show")
def show(
    org: OrgArgument, name: NameArgument, json_output: JsonOption = False, config: ConfigOption = None
) -> None:
    """Show a prompt's versions (the text of each with --json)."""

    async def action(store: Store, _settings: Settings) -> tuple[PromptRow, list[Any]]:
        _, prompt = await _prompt(store, org, name)
        return prompt, await store.prompts.list_versions(prompt.id)

    prompt, versions = run_with_store(config, action)
    from claudegate.chat.render import prompt_json, version_json

    if json_output:
        data = {**prompt_json(prompt), "versions": [version_json(version) for version in versions]}
        typer.echo(orjson.dumps(data).decode())
        return
    typer.echo(f"Prompt {prompt.name!r}: {_describe(prompt)}")
    from rich.table import Table

    table = Table("version", "created", "model", "characters", "note")
    priorities = [0, 2, 1, 3, 4]
    for version in versions:
        table.add_row(
            f"v{version.version}",
            version.created_at.strftime("%Y-%m-%d %H:%M"),
            version.model or "",
            f"{len(version.system):,}",
            version.note or "",
        )
    print_table(table, priorities)


@prompts_app.command("activate")
def activate(
    org: OrgArgument,
    name: NameArgument,
    version: Annotated[int, typer.Argument(help="The version new chats get from now on.")],
    json_output: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Make a version the one new chats get (ends a split). Chats already started keep theirs."""

    async def action(store: Store, _settings: Settings) -> PromptRow:
        org_row, _ = await _prompt(store, org, name)
        return await store.prompts.activate(org_row.id, name, version)

    _print_prompt(run_with_store(config, action), json_output, "Activated")


@prompts_app.command("rollback")
def rollback(
    org: OrgArgument, name: NameArgument, json_output: JsonOption = False, config: ConfigOption = None
) -> None:
    """Activate again the version that was active before the current one."""

    async def action(store: Store, _settings: Settings) -> PromptRow:
        org_row, _ = await _prompt(store, org, name)
        return await store.prompts.rollback(org_row.id, name)

    _print_prompt(run_with_store(config, action), json_output, "Rolled back")


@prompts_app.command("split")
def split(
    org: OrgArgument,
    name: NameArgument,
    weights: Annotated[
        list[str] | None, typer.Argument(help="VERSION=WEIGHT pairs, e.g. 1=50 2=50.", show_default=False)
    ] = None,
    clear: Annotated[
        bool, typer.Option("--clear", help="End the split: new chats get the active version.")
    ] = False,
    json_output: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Split new chats between versions by weight (A/B test); each chat keeps the version it drew."""
    if clear == bool(weights):
        fail("give VERSION=WEIGHT pairs, or --clear")
    parsed: dict[int, float] | None = None
    if weights:
        parsed = {}
        for pair in weights:
            version, _, weight = pair.partition("=")
            try:
                parsed[int(version)] = float(weight)
            except ValueError:
                fail(f"expected VERSION=WEIGHT such as 2=50, got {pair!r}")

    async def action(store: Store, _settings: Settings) -> PromptRow:
        org_row, _ = await _prompt(store, org, name)
        return await store.prompts.set_split(org_row.id, name, parsed)

    _print_prompt(run_with_store(config, action), json_output, "Split ended" if clear else "Split set")


@prompts_app.command("usage")
def usage(
    org: OrgArgument, name: NameArgument, json_output: JsonOption = False, config: ConfigOption = None
) -> None:
    """Conversations, replies, failed calls, tokens and cost per version."""

    async def action(store: Store, _settings: Settings) -> list[Any]:
        _, prompt = await _prompt(store, org, name)
        return await store.prompts.usage(prompt.id)

    rows = run_with_store(config, action)
    from claudegate.chat.render import version_usage_json

    if json_output:
        typer.echo(orjson.dumps([version_usage_json(row) for row in rows]).decode())
        return
    from rich.table import Table

    table = Table(
        "version", "chats", "replies", "failed", "input", "output", "cache write", "cache read", "cost $"
    )
    for column in table.columns[1:]:
        column.justify = "right"
    for row in rows:
        table.add_row(
            f"v{row.version}",
            compact(row.conversations),
            compact(row.replies),
            compact(row.failed),
            compact(row.input_tokens),
            compact(row.output_tokens),
            compact(row.cache_creation_input_tokens),
            compact(row.cache_read_input_tokens),
            money(float(row.cost_usd)),
        )
    print_table(table, priorities=[0, 0, 0, 1, 0, 0, 2, 2, 0])


def register(app: typer.Typer) -> None:
    app.add_typer(prompts_app, name="prompts")

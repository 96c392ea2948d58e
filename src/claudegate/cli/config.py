"""``claudegate config``: the effective settings and where each came from; checking a settings file."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from claudegate.cli._store import ConfigOption, JsonOption, fail

if TYPE_CHECKING:
    from claudegate.config import Settings

__all__ = ["EffectiveSetting", "effective_settings", "register", "startup_lines"]

config_app = typer.Typer(help="Show the effective settings, or check a settings file.", no_args_is_help=True)


@dataclass(frozen=True, slots=True)
class EffectiveSetting:
    name: str
    value: Any  # as JSON would have it, secrets masked
    source: str  # default, file, env, data directory, config file's directory


def effective_settings(config_file: Path | None) -> tuple[Settings, list[EffectiveSetting]]:
    """Load the settings as every command does, and say where each top-level value came from."""
    from pydantic_settings import EnvSettingsSource

    from claudegate.config import ConfigError, Settings

    try:
        settings = Settings.load(config_file)
    except ConfigError as error:
        fail(str(error))
    file_keys = _file_keys(config_file) if config_file is not None else set()
    env_keys = {key.lower() for key in EnvSettingsSource(Settings)()}
    values = settings.model_dump(mode="json")
    values["database_url"] = settings.database_url_redacted
    rows = []
    for name, info in Settings.model_fields.items():
        aliases = {name}
        if info.validation_alias is not None and hasattr(info.validation_alias, "choices"):
            aliases |= {str(choice).lower() for choice in info.validation_alias.choices}
        if aliases & env_keys:
            source = "env"
        elif aliases & file_keys:
            source = "file"
        elif name == "home":
            source = "config file's directory" if config_file is not None else "default"
        elif name in ("database_url", "usage_spill_file"):
            source = "data directory"
        else:
            source = "default"
        rows.append(EffectiveSetting(name, values[name], source))
    return settings, rows


def _file_keys(config_file: Path) -> set[str]:
    """The settings written in the file (already read once by ``Settings.load``, so it is valid TOML)."""
    import tomllib

    return {key.lower() for key in tomllib.loads(config_file.read_text(encoding="utf-8"))}


@config_app.command("show")
def show(config: ConfigOption = None, json_output: JsonOption = False) -> None:
    """Print the effective settings (secrets masked) and where each came from: default, file or env.

    The text form is TOML a settings file can start from; the source of each value is a comment."""
    _settings, rows = effective_settings(config)
    if json_output:
        typer.echo(json.dumps({row.name: {"value": row.value, "source": row.source} for row in rows}))
        return
    tables = [row for row in rows if row.name in ("bot", "upstreams")]
    for row in rows:
        if row in tables:
            continue
        text = f"# {row.name} unset" if row.value is None else f"{row.name} = {_toml(row.value)}"
        typer.echo(f"{text:<44} # {row.source}")
    for row in tables:
        items = row.value if isinstance(row.value, list) else [row.value]
        for item in items:
            typer.echo(f"\n[{'[upstreams]' if row.name == 'upstreams' else 'bot'}]  # {row.source}")
            for key, value in item.items():
                if value is not None:
                    typer.echo(f"{key} = {_toml(value)}")


def _toml(value: Any) -> str:
    """A value as TOML writes it (strings, numbers, booleans and lists of them are all settings hold)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value), ensure_ascii=False)


@config_app.command("check")
def check(
    file: Annotated[Path, typer.Argument(help="The TOML settings file to check.", dir_okay=False)],
    json_output: JsonOption = False,
) -> None:
    """Check a settings file as serve would read it (with the environment on top).

    Prints what is wrong, one problem a line, and exits 1; prints "ok" otherwise."""
    from claudegate.config import ConfigError, Settings

    try:
        settings = Settings.load(file)
    except ConfigError as error:
        text = str(error)
        head, _, listed = text.partition(": ")
        _report_problems(
            file, listed.split("; ") if head.startswith("invalid configuration") else [text], json_output
        )
    problems = [
        f"upstreams.{upstream.name}: the environment variable {upstream.api_key_env} (api_key_env) is not set"
        for upstream in settings.upstreams
        if upstream.api_key is None and upstream.api_key_env and not os.environ.get(upstream.api_key_env)
    ]
    problems += [
        f"upstreams.{upstream.name}: needs api_key or api_key_env"
        for upstream in settings.upstreams
        if upstream.api_key is None and not upstream.api_key_env
    ]
    if problems:
        _report_problems(file, problems, json_output)
    if json_output:
        typer.echo(json.dumps({"file": str(file), "ok": True, "problems": [], "home": str(settings.home)}))
        return
    typer.echo(f"{file}: ok ({len(settings.upstreams) or 1} upstream(s), data in {settings.home})")


def _report_problems(file: Path, problems: list[str], json_output: bool) -> NoReturn:
    if json_output:
        typer.echo(json.dumps({"file": str(file), "ok": False, "problems": problems}))
    else:
        typer.echo(f"{file}: invalid", err=True)
        for problem in problems:
            typer.echo(f"  {problem}", err=True)
    raise typer.Exit(1)


def startup_lines(settings: Settings, config_file: Path | None) -> list[str]:
    """What ``serve`` says at start: where its settings, data and upstreams come from (secrets masked)."""
    lines = [f"config:   {config_file.resolve() if config_file else 'none (defaults and environment)'}"]
    lines.append(f"data:     {settings.home}")
    lines.append(f"database: {settings.database_url_redacted}")
    lines.append(f"spill:    {settings.usage_spill_file}")
    if settings.upstreams:
        for upstream in settings.upstreams:
            key = "api_key (file)" if upstream.api_key is not None else f"${upstream.api_key_env}"
            lines.append(f"upstream: {upstream.name} {upstream.url} key={key} priority={upstream.priority}")
    else:
        url = settings.resolved_upstream_url
        if url is None:
            lines.append("upstream: built-in simulator (no ANTHROPIC_API_KEY, no upstream_url)")
        else:
            key = "$ANTHROPIC_API_KEY" if settings.anthropic_api_key is not None else "none"
            lines.append(f"upstream: {url} key={key}")
    legacy = Path("claudegate.db")
    if (
        legacy.exists()
        and legacy.resolve() != settings.home / "claudegate.db"
        and _default_database(settings)
    ):
        lines.append(
            f"note:     ./claudegate.db here is not used: data lives in {settings.home}. To keep using it, "
            "set CLAUDEGATE_DATABASE_URL=sqlite:///./claudegate.db or move it there."
        )
    return lines


def _default_database(settings: Settings) -> bool:
    from claudegate.home import sqlite_url

    return settings.database_url == sqlite_url(settings.home)


def register(app: typer.Typer) -> None:
    app.add_typer(config_app, name="config")

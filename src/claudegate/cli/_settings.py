"""What ``claudegate keys`` and ``claudegate orgs`` share for tenant settings: options that take a number or
``none``, checked before the database is opened, and the settings shown as lines of text."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, Final

import typer

from claudegate.cli._store import fail

if TYPE_CHECKING:
    from claudegate.keys import LimitSet

__all__ = [
    "ConcurrencyOption",
    "DeadlineOption",
    "PriorityOption",
    "RpmOption",
    "TpmOption",
    "WeightOption",
    "limit_lines",
    "parse_settings",
    "print_lines",
    "setting_text",
]

OPTION_NAMES: Final = {
    "requests_per_minute": "--rpm",
    "tokens_per_minute": "--tpm",
    "max_concurrency": "--concurrency",
    "deadline_ms": "--deadline-ms",
    "priority": "--priority",
    "weight": "--weight",
}
_NONE: Final = "none"

RpmOption = Annotated[
    str | None,
    typer.Option("--rpm", metavar="N|none", help="Requests per minute ('none': no limit)."),
]
TpmOption = Annotated[
    str | None,
    typer.Option(
        "--tpm", metavar="N|none", help="Tokens per minute, input and output together ('none': no limit)."
    ),
]
ConcurrencyOption = Annotated[
    str | None,
    typer.Option("--concurrency", metavar="N|none", help="Calls in progress at once ('none': no limit)."),
]
DeadlineOption = Annotated[
    str | None,
    typer.Option(
        "--deadline-ms",
        metavar="N|none",
        help="Default deadline of the key's calls, in milliseconds ('none': no default deadline).",
    ),
]
PriorityOption = Annotated[
    str | None,
    typer.Option("--priority", metavar="N", help="Priority of the key's calls: higher first (default 0)."),
]
WeightOption = Annotated[
    str | None,
    typer.Option(
        "--weight",
        metavar="X|none",
        help="Share of capacity relative to the others (default 1; 2 gets twice the share of 1).",
    ),
]


def parse_settings(given: Mapping[str, str | None]) -> dict[str, Any]:
    """The settings given on the command line (setting name -> option text, None when not given), parsed
    and checked: ``none`` clears a setting. Fails with the option's name and what it takes."""
    from claudegate.store.rows import InvalidSettingError
    from claudegate.store.settings import check_setting

    changes: dict[str, Any] = {}
    for name, text in given.items():
        if text is None:
            continue
        option = OPTION_NAMES[name]
        value: int | float | None
        if text.strip().lower() == _NONE:
            value = None
        else:
            try:
                value = _number(text) if name == "weight" else int(text)
            except ValueError:
                kind = "a number" if name == "weight" else "a whole number"
                fail(f"{option}: expected {kind} or '{_NONE}', got {text!r}")
        try:
            changes[name] = check_setting(name, value)
        except InvalidSettingError as exc:
            fail(f"{option}: {exc.problem}")
    return changes


def _number(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        return float(text)


def setting_text(value: float | None, *, unset: str = "-") -> str:
    """A setting in a table: ``unset`` when null, integers with thousands separators."""
    if value is None:
        return unset
    if isinstance(value, float):
        return f"{value:g}"
    return f"{value:,}"


def limit_lines(limits: LimitSet) -> list[tuple[str, str]]:
    """(label, value) lines for a level's limits."""
    return [
        ("requests per minute", setting_text(limits.requests_per_minute, unset="no limit")),
        ("tokens per minute", setting_text(limits.tokens_per_minute, unset="no limit")),
        ("concurrent calls", setting_text(limits.max_concurrency, unset="no limit")),
    ]


def print_lines(title: str, lines: list[tuple[str, str]]) -> None:
    typer.echo(title)
    width = max(len(label) for label, _value in lines)
    for label, value in lines:
        typer.echo(f"  {label:<{width}}  {value}")

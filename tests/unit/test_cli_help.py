"""The command's help as a reader sees it: values named, not typed; sentences whole; every command listed."""

from __future__ import annotations

import re

import pytest
import typer.core
from typer.testing import CliRunner

from claudegate.cli import command


def _commands() -> list[list[str]]:
    found: list[list[str]] = []

    def walk(node: typer.core.TyperCommand | typer.core.TyperGroup, path: list[str]) -> None:
        found.append(path)
        if isinstance(node, typer.core.TyperGroup):
            for name, sub in node.commands.items():
                walk(sub, [*path, name])  # type: ignore[arg-type]

    walk(command(), [])
    return found


COMMANDS = _commands()


def _help(args: list[str], columns: int = 80) -> str:
    """The help the ``claudegate`` executable prints (its command tree, as ``main`` runs it)."""
    with CliRunner().isolation(env={"COLUMNS": str(columns)}) as (out, _err, _output):
        with pytest.raises(SystemExit) as done:
            command().main([*args, "--help"], prog_name="claudegate")
        assert done.value.code == 0
        return out.getvalue().decode()


@pytest.mark.parametrize("path", COMMANDS, ids=lambda path: " ".join(path) or "claudegate")
def test_help_names_values_instead_of_showing_types(path: list[str]) -> None:
    output = _help(path)
    assert not re.search(r"<(str|int|float|bool|file|path|list\[.*?\]|text|integer)>", output)
    assert "{" not in output.split("\n\n", 2)[1]  # the usage line: KEY_ID, not {key_id}
    assert all(len(line) <= 80 for line in output.splitlines())


def test_every_command_s_summary_is_one_sentence_on_one_line() -> None:
    """The first paragraph of a docstring is the summary in its group's list; a line break in it shows up
    as a break in the middle of a sentence there."""
    root = command()
    for path in COMMANDS:
        node: typer.core.TyperCommand | typer.core.TyperGroup = root
        for name in path:
            assert isinstance(node, typer.core.TyperGroup)
            node = node.commands[name]  # type: ignore[assignment]
        summary = (node.help or "").strip().split("\n\n")[0]
        assert "\n" not in summary, f"claudegate {' '.join(path)}: {summary!r}"


def test_options_show_their_value_names() -> None:
    output = _help(["simulate"], 100)
    assert re.search(r"--tier\s+1\|2\|3\|4\|unlimited", output)
    assert re.search(r"--port\s+PORT", output)
    assert re.search(r"--fault\s+FAULT", output)
    json_help = _help(["keys", "list"], 100)
    assert re.search(r"--json\s+Print JSON", json_help)

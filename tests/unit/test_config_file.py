"""The example settings file and ``claudegate config show|check``: what a user copies and what they run."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from claudegate.cli import app
from claudegate.config import BotSettings, Settings, UpstreamSettings

EXAMPLE = Path(__file__).resolve().parents[2] / "claudegate.example.toml"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("CLAUDEGATE_") or name == "ANTHROPIC_API_KEY":
            monkeypatch.delenv(name)


def _sections(text: str) -> dict[str, set[str]]:
    """Setting names written in each section of the file, commented out or not."""
    sections: dict[str, set[str]] = {"": set()}
    current = ""
    for line in text.splitlines():
        header = re.fullmatch(r"#? ?\[\[?(\w+)\]\]?.*", line)
        if header:
            current = header.group(1)
            sections.setdefault(current, set())
            continue
        setting = re.match(r"#? ?(\w+) = ", line)
        if setting:
            sections[current].add(setting.group(1))
    return sections


def test_the_example_file_names_every_setting_and_nothing_else() -> None:
    sections = _sections(EXAMPLE.read_text())
    assert sections[""] == set(Settings.model_fields) - {"bot", "upstreams"}
    assert sections["bot"] == set(BotSettings.model_fields)
    assert sections["upstreams"] == set(UpstreamSettings.model_fields)


def test_the_example_file_loads_and_its_values_are_the_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLAUDEGATE_HOME", str(tmp_path))
    loaded = Settings.load(EXAMPLE)
    defaults = Settings()
    assert loaded.model_dump() == defaults.model_dump()
    written = tomllib.loads(EXAMPLE.read_text())
    assert len(written) > 20
    assert len(written["bot"]) > 30


def _run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


def test_config_show_says_where_each_setting_came_from(tmp_path: Path) -> None:
    config = tmp_path / "claudegate.toml"
    config.write_text('port = 9000\nadmin_token = "from-the-file"\n[bot]\nnick = "helper"\n')
    code, out, _ = _run(
        "config", "show", "--config", str(config), "--json", env={"CLAUDEGATE_LOG_LEVEL": "debug"}
    )
    assert code == 0
    shown = orjson.loads(out)
    assert shown["port"] == {"value": 9000, "source": "file"}
    assert shown["log_level"] == {"value": "debug", "source": "env"}
    assert shown["host"] == {"value": "127.0.0.1", "source": "default"}
    assert shown["home"] == {"value": str(tmp_path), "source": "config file's directory"}
    assert shown["database_url"]["source"] == "data directory"
    assert shown["admin_token"]["value"] == "**********"
    assert shown["bot"]["value"]["nick"] == "helper"
    assert "from-the-file" not in out


def test_config_show_masks_secrets_in_text_too(tmp_path: Path) -> None:
    code, out, _ = _run(
        "config",
        "show",
        env={
            "CLAUDEGATE_HOME": str(tmp_path),
            "ANTHROPIC_API_KEY": "sk-ant-secret",
            "CLAUDEGATE_DATABASE_URL": "postgresql://cg:hunter2@db/cg",
        },
    )
    assert code == 0
    assert "sk-ant-secret" not in out
    assert "hunter2" not in out
    assert re.search(r'^anthropic_api_key = "\*+" +# env$', out, re.M)
    assert re.search(r'^database_url = "postgresql\+asyncpg://cg:\*\*\*@db/cg" +# env$', out, re.M)


def test_config_check_lists_every_problem_and_fails(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('port = "eighty"\nprot = 1\n[bot]\nirc_port = 99999\n')
    code, _, err = _run("config", "check", str(config))
    assert code == 1
    assert "port: Input should be a valid integer" in err
    assert "prot: unknown setting" in err
    assert "bot.irc_port: Input should be less than or equal to 65535" in err


def test_config_check_reports_an_upstream_key_variable_that_is_not_set(tmp_path: Path) -> None:
    config = tmp_path / "up.toml"
    config.write_text('[[upstreams]]\nname = "main"\nurl = "https://x.test"\napi_key_env = "NO_SUCH_VAR"\n')
    code, _, err = _run("config", "check", str(config))
    assert code == 1
    assert "upstreams.main: the environment variable NO_SUCH_VAR (api_key_env) is not set" in err


def test_config_check_accepts_the_example_file() -> None:
    code, out, _ = _run("config", "check", str(EXAMPLE))
    assert code == 0
    assert out.startswith(f"{EXAMPLE}: ok")


def test_config_check_says_when_the_file_is_not_toml(tmp_path: Path) -> None:
    config = tmp_path / "broken.toml"
    config.write_text("port = \n")
    code, _, err = _run("config", "check", str(config))
    assert code == 1
    assert "is not valid TOML" in err


def test_config_check_in_json_lists_the_problems(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("prot = 1\n")
    code, out, _ = _run("config", "check", str(config), "--json")
    assert code == 1
    assert orjson.loads(out) == {"file": str(config), "ok": False, "problems": ["prot: unknown setting"]}


def test_serve_s_start_lines_say_where_things_come_from_with_secrets_masked(tmp_path: Path) -> None:
    from claudegate.cli.config import startup_lines

    config = tmp_path / "claudegate.toml"
    config.write_text(
        'database_url = "postgresql://cg:hunter2@db.internal/cg"\n'
        '[[upstreams]]\nname = "main"\nurl = "https://api.anthropic.com"\napi_key = "sk-ant-in-file"\n'
        '[[upstreams]]\nname = "backup"\nurl = "https://backup.test"\n'
        'api_key_env = "BACKUP_KEY"\npriority = 1\n'
    )
    lines = "\n".join(startup_lines(Settings.load(config), config))
    assert f"config:   {config}" in lines
    assert f"data:     {tmp_path}" in lines
    assert "database: postgresql+asyncpg://cg:***@db.internal/cg" in lines
    assert "upstream: main https://api.anthropic.com key=api_key (file) priority=0" in lines
    assert "upstream: backup https://backup.test key=$BACKUP_KEY priority=1" in lines
    assert "hunter2" not in lines
    assert "sk-ant-in-file" not in lines


def test_serve_tells_about_an_old_database_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from claudegate.cli.config import startup_lines

    monkeypatch.chdir(tmp_path)
    (tmp_path / "claudegate.db").write_bytes(b"")
    monkeypatch.setenv("CLAUDEGATE_HOME", str(tmp_path / "home"))
    lines = startup_lines(Settings.load(), None)
    assert any("./claudegate.db here is not used" in line for line in lines)
    monkeypatch.setenv("CLAUDEGATE_DATABASE_URL", "sqlite:///./claudegate.db")
    assert not any("not used" in line for line in startup_lines(Settings.load(), None))

from __future__ import annotations

import os
from pathlib import Path

import pytest

from claudegate.config import ConfigError, Settings, normalize_database_url


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read the environment: start each test from none of claudegate's variables."""
    for name in list(os.environ):
        if name.startswith("CLAUDEGATE_") or name == "ANTHROPIC_API_KEY":
            monkeypatch.delenv(name)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "claudegate.toml"
    path.write_text(text)
    return path


def test_defaults_without_file_or_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    settings = Settings.load()
    assert (settings.host, settings.port) == ("127.0.0.1", 8080)
    home = tmp_path / "data" / "claudegate"
    assert settings.home == home
    assert settings.database_url == f"sqlite+aiosqlite:///{home / 'claudegate.db'}"
    assert settings.anthropic_api_key is None
    assert settings.admin_token is None
    assert settings.usage_flush_interval_s == 0.5
    assert settings.usage_batch_size == 500
    assert settings.usage_spill_file == home / "usage-spill.jsonl"
    assert settings.key_cache_ttl_s == 5.0
    assert settings.simulator_tier == "unlimited"
    assert settings.log_level == "info"


def test_file_values_are_used(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'port = 9000\nadmin_token = "adm"\nprices_file = "my-prices.toml"\nlog_level = "DEBUG"\n',
    )
    settings = Settings.load(path)
    assert settings.port == 9000
    assert settings.admin_token is not None
    assert settings.admin_token.get_secret_value() == "adm"
    assert settings.prices_file == Path("my-prices.toml")
    assert settings.log_level == "debug"


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, 'port = 9000\nanthropic_api_key = "sk-from-file"\nhost = "0.0.0.0"\n')
    monkeypatch.setenv("CLAUDEGATE_PORT", "8080")  # equal to the default, and still wins over the file
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-from-env")
    settings = Settings.load(path)
    assert settings.port == 8080
    assert settings.host == "0.0.0.0"
    assert settings.anthropic_api_key is not None
    assert settings.anthropic_api_key.get_secret_value() == "sk-from-env"


def test_anthropic_key_is_read_without_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-123")
    settings = Settings.load()
    assert settings.anthropic_api_key is not None
    assert settings.anthropic_api_key.get_secret_value() == "sk-ant-123"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://u:p@127.0.0.1/db", "postgresql+asyncpg://u:p@127.0.0.1/db"),
        ("postgres://u@127.0.0.1:5433/db", "postgresql+asyncpg://u@127.0.0.1:5433/db"),
        ("postgresql+asyncpg://u@127.0.0.1/db", "postgresql+asyncpg://u@127.0.0.1/db"),
        ("sqlite:///./x.db", "sqlite+aiosqlite:///./x.db"),
        ("sqlite+aiosqlite:////abs/x.db", "sqlite+aiosqlite:////abs/x.db"),
    ],
)
def test_database_urls_get_the_async_driver(
    given: str, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert normalize_database_url(given) == expected
    monkeypatch.setenv("CLAUDEGATE_DATABASE_URL", given)
    assert Settings.load().database_url == expected


def test_secrets_never_show_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-SECRET1")
    monkeypatch.setenv("CLAUDEGATE_ADMIN_TOKEN", "admin-SECRET2")
    monkeypatch.setenv("CLAUDEGATE_DATABASE_URL", "postgresql://app:db-SECRET3@127.0.0.1/prod")
    settings = Settings.load()
    for text in (repr(settings), str(settings), settings.database_url_redacted):
        assert "SECRET" not in text
    assert settings.database_url_redacted == "postgresql+asyncpg://app:***@127.0.0.1/prod"


def test_upstream_defaults_to_anthropic_with_a_key_and_to_the_simulator_without(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings.load().resolved_upstream_url is None
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant")
    assert Settings.load().resolved_upstream_url == "https://api.anthropic.com"
    monkeypatch.setenv("CLAUDEGATE_UPSTREAM_URL", "http://127.0.0.1:8100/")
    assert Settings.load().resolved_upstream_url == "http://127.0.0.1:8100"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("prot = 8080\n", "prot: unknown setting"),
        ('port = "eighty"\n', "port:"),
        ("usage_batch_size = 0\n", "usage_batch_size:"),
        ('upstream_url = "api.anthropic.com"\n', "must start with http:// or https://"),
        ('log_level = "chatty"\n', "log_level:"),
        ("port = \n", "not valid TOML"),
    ],
)
def test_bad_files_name_the_setting_to_fix(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.load(write(tmp_path, text))


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        Settings.load(tmp_path / "nope.toml")


def test_bad_environment_value_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLAUDEGATE_PORT", "http")
    with pytest.raises(ConfigError, match="port:"):
        Settings.load()


def test_every_setting_is_documented() -> None:
    for name, field in Settings.model_fields.items():
        assert field.description, f"{name} has no description"


def test_the_data_directory_comes_from_claudegate_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLAUDEGATE_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    settings = Settings.load()
    assert settings.database_url == f"sqlite+aiosqlite:///{tmp_path / 'home' / 'claudegate.db'}"
    assert settings.usage_spill_file == tmp_path / "home" / "usage-spill.jsonl"


def test_a_config_file_makes_its_directory_the_data_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "etc").mkdir()
    path = write(tmp_path / "etc", "port = 9000\n")
    monkeypatch.chdir(tmp_path)
    settings = Settings.load(Path("etc/claudegate.toml"))
    assert settings.home == tmp_path / "etc"
    assert settings.database_url.endswith(f"{tmp_path / 'etc' / 'claudegate.db'}")
    assert path.exists()


def test_a_relative_home_in_the_file_is_taken_from_the_file_s_directory(tmp_path: Path) -> None:
    settings = Settings.load(write(tmp_path, 'home = "data"\nusage_spill_file = "spill/records.jsonl"\n'))
    assert settings.home == tmp_path / "data"
    assert settings.usage_spill_file == tmp_path / "data" / "spill" / "records.jsonl"


def test_an_explicit_database_url_wins_over_the_data_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLAUDEGATE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CLAUDEGATE_DATABASE_URL", "sqlite:///./claudegate.db")
    assert Settings.load().database_url == "sqlite+aiosqlite:///./claudegate.db"


def test_claudegate_home_overrides_the_config_file_s_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLAUDEGATE_HOME", str(tmp_path / "elsewhere"))
    assert Settings.load(write(tmp_path, "")).home == tmp_path / "elsewhere"

"""One home for the data: commands, the in-process client and the gateway find the same database from any
working directory (real processes, a real SQLite file in the data directory)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

CLAUDEGATE = [sys.executable, "-m", "claudegate"]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLAUDEGATE_", "ANTHROPIC_"))}
    return env | extra


def _run(argv: list[str], cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(argv, check=False, cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


_CALL = """
import claudegate, sys
with claudegate.Client(key=sys.argv[1]) as client:
    message = client.messages.create(
        model="claude-sonnet-4-6", max_tokens=20, messages=[{"role": "user", "content": "Hello"}]
    )
print(message.usage.output_tokens)
"""


def test_commands_and_the_in_process_client_share_the_data_directory(tmp_path: Path) -> None:
    env = _env(CLAUDEGATE_HOME=str(tmp_path / "home"))
    for name in ("a", "b", "c"):
        (tmp_path / name).mkdir()
    created = json.loads(
        _run([*CLAUDEGATE, "keys", "create", "--org", "acme", "--json"], tmp_path / "a", env)
    )
    output_tokens = int(_run([sys.executable, "-c", _CALL, created["key"]], tmp_path / "b", env))
    (row,) = json.loads(_run([*CLAUDEGATE, "usage", "--json"], tmp_path / "c", env))
    assert (row["requests"], row["output_tokens"]) == (1, output_tokens)
    assert (tmp_path / "home" / "claudegate.db").exists()
    assert not any((tmp_path / name / "claudegate.db").exists() for name in ("a", "b", "c"))


def test_a_config_file_keeps_its_data_beside_it(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "claudegate.toml").write_text("port = 9000\n")
    env = _env()
    _run([*CLAUDEGATE, "keys", "create", "--org", "acme", "--config", "etc/claudegate.toml"], tmp_path, env)
    listed = _run(
        [*CLAUDEGATE, "keys", "list", "--json", "--config", str(tmp_path / "etc" / "claudegate.toml")],
        tmp_path / "etc",
        env,
    )
    assert [row["org"] for row in json.loads(listed)] == ["acme"]
    assert (tmp_path / "etc" / "claudegate.db").exists()

"""Installing claudegate from its wheel into a fresh virtual environment gives a working ``claudegate``: its
data files and migrations are in the wheel, the schema is created, a key is made, and the gateway answers.

The wheel is built from this checkout and installed into a new venv. Its dependencies are the ones already
installed for the tests (made visible to the new venv by a ``.pth`` file), so the test needs no network and
runs in seconds; ``CLAUDEGATE_WHEEL_TEST_FULL=1`` makes pip resolve and install them too, as a user's
``pip install claudegate-*.whl`` does. Either way the package itself is only the wheel's copy: the test
checks that ``claudegate`` is imported from the new venv, not from this checkout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import anthropic

from tests.gateway_process import gateway_env, running_gateway

ROOT = Path(__file__).resolve().parents[2]


def _run(argv: list[str], **options: object) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=300, **options)  # type: ignore[call-overload]
    assert done.returncode == 0, f"{argv}: {done.stdout}\n{done.stderr}"
    return str(done.stdout)


def test_a_wheel_installed_in_a_fresh_venv_serves(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(dist),
            str(ROOT),
        ]
    )
    (wheel,) = dist.glob("claudegate-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for packaged in (
        "claudegate/data/prices.toml",
        "claudegate/data/models.toml",
        "claudegate/data/betas.txt",
        "claudegate/store/migrations/env.py",
        "claudegate/store/migrations/script.py.mako",
        "claudegate/store/migrations/versions/0001_initial.py",
    ):
        assert packaged in names

    fresh = tmp_path / "venv"
    full = os.environ.get("CLAUDEGATE_WHEEL_TEST_FULL") == "1"
    venv.EnvBuilder(with_pip=full).create(fresh)
    python = fresh / "bin" / "python"
    if full:
        _run([str(python), "-m", "pip", "install", "-q", str(wheel)])
    else:
        _run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", str(wheel)])
        site = Path(
            _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).strip()
        )
        (site / "_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    home = tmp_path / "home"
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = gateway_env(home)
    claudegate = str(fresh / "bin" / "claudegate")
    where = _run([str(python), "-c", "import claudegate, sys; print(claudegate.__file__)"], cwd=work, env=env)
    assert where.startswith(str(fresh)), where
    assert _run([claudegate, "--version"], cwd=work, env=env).strip() == "claudegate 0.1.0"

    upgraded = json.loads(_run([claudegate, "db", "upgrade", "--json"], cwd=work, env=env))
    assert upgraded["database"].endswith(str(home / "claudegate.db"))
    assert upgraded["revision"]
    key = json.loads(_run([claudegate, "keys", "create", "--org", "acme", "--json"], cwd=work, env=env))[
        "key"
    ]

    with running_gateway(env, work, [claudegate]) as gateway:
        client = anthropic.Anthropic(base_url=gateway.url, api_key=key, max_retries=0)
        message = client.messages.create(
            model="claude-sonnet-4-6", max_tokens=20, messages=[{"role": "user", "content": "Hello"}]
        )
        assert message.usage.output_tokens > 0  # prices.toml and models.toml came with the wheel
        log = gateway.stop()
    assert f"data:     {home}" in log

"""An application that uses the in-process client, the chat API's service or the bots loads no HTTP server:
what they share with the gateway lives in ``claudegate.runtime`` and ``claudegate.pipeline``."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

_CLIENT_END_TO_END = """
import asyncio, sys
from pathlib import Path
from claudegate import AsyncClient
from claudegate.config import Settings

async def main() -> None:
    tmp = Path(sys.argv[1])
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp / 'claudegate.db'}",
        usage_spill_file=tmp / "spill.jsonl",
        usage_flush_interval_s=0.05,
    )
    async with AsyncClient(settings=settings, org="acme", user="alice") as client:
        message = await client.messages.create(
            model="claude-sonnet-4-6", max_tokens=20, messages=[{"role": "user", "content": "Hi"}]
        )
        assert message.type == "message", message
        async with client.messages.stream(
            model="claude-sonnet-4-6", max_tokens=20, messages=[{"role": "user", "content": "Hi"}]
        ) as stream:
            final = await stream.get_final_message()
        assert final.usage.output_tokens > 0, final
        batches = await client.messages.batches.list()  # the batches route, driven in process
        assert batches.data == [], batches
        files = await client.beta.files.list()  # the files route, likewise
        assert files.data == [], files

asyncio.run(main())
"""


def _server_modules_after(script: str, *args: str) -> list[str]:
    """The ``claudegate.server`` modules loaded once ``script`` has run in a fresh interpreter."""
    check = (
        script + "\nimport sys\nprint(sorted(m for m in sys.modules if m.startswith('claudegate.server')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", check, *args], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    loaded: list[str] = eval(done.stdout.strip().splitlines()[-1])  # a list of names, printed by us
    return loaded


def test_using_the_in_process_client_loads_no_http_server(tmp_path: Path) -> None:
    assert _server_modules_after(textwrap.dedent(_CLIENT_END_TO_END), str(tmp_path)) == []


@pytest.mark.parametrize(
    "modules",
    [
        ["claudegate.client"],
        [
            "claudegate.chat",
            "claudegate.chat.service",
            "claudegate.chat.continuation",
            "claudegate.chat.compaction",
        ],
        ["claudegate.bots", "claudegate.bots.service", "claudegate.bots.claude", "claudegate.bots.twitch"],
        ["claudegate.runtime.services", "claudegate.runtime.files", "claudegate.runtime.batches"],
    ],
    ids=["client", "chat", "bots", "runtime"],
)
def test_importing_a_front_door_loads_no_http_server(modules: list[str]) -> None:
    assert _server_modules_after("".join(f"import {name}\n" for name in modules)) == []

"""The newest Claude Code, in print mode, works through the gateway in front of the simulator: it answers,
runs a tool and answers again, and every call it makes is recorded against its session.

``scripts/test`` installs ``@anthropic-ai/claude-code@latest`` from npm into ``.cache/claude-code`` before
each run (``CLAUDEGATE_CLAUDE_CODE_DIR`` names another place), so a release that changes what Claude Code
sends fails here first. Claude Code is kept off the internet: its own home, telemetry, error reporting and
non-essential traffic off, and every connection except to loopback sent to a proxy that does not exist.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from claudegate.wire.models import default_catalog
from tests.conftest import need_service
from tests.e2e.conftest import Stack, Tenant, make_tenant, usage_rows

pytestmark = [pytest.mark.node, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]
CLAUDE_CODE_DIR = Path(os.environ.get("CLAUDEGATE_CLAUDE_CODE_DIR", REPO / ".cache" / "claude-code"))


def claude_binary() -> Path:
    binary = CLAUDE_CODE_DIR / "node_modules" / ".bin" / "claude"
    need_service(
        binary.exists(),
        f"Claude Code in {CLAUDE_CODE_DIR} (npm install --prefix {CLAUDE_CODE_DIR} "
        "@anthropic-ai/claude-code@latest; scripts/test does it)",
    )
    return binary


def run_claude(
    stack: Stack, tenant: Tenant, workdir: Path, prompt: str, *args: str, headers: str = ""
) -> list[dict[str, Any]]:
    """Run ``claude -p`` against the gateway; the JSON messages it printed (``stream-json``)."""
    home = workdir / "home"
    home.mkdir(exist_ok=True)
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": stack.url,
        "ANTHROPIC_API_KEY": tenant.key,
        "ANTHROPIC_CUSTOM_HEADERS": headers,
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "DISABLE_AUTOUPDATER": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "HTTP_PROXY": "http://127.0.0.1:9",  # the discard port: nothing listens, nothing leaves
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "NO_PROXY": "127.0.0.1,localhost",
    }
    done = subprocess.run(
        [str(claude_binary()), "-p", prompt, "--output-format", "stream-json", "--verbose", *args],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, f"claude exited {done.returncode}: {done.stderr}\n{done.stdout[-2000:]}"
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def blocks(messages: list[dict[str, Any]], role: str) -> list[dict[str, Any]]:
    return [
        block
        for message in messages
        if message.get("type") == role
        for block in message["message"]["content"]
        if isinstance(block, dict)
    ]


def final_result(messages: list[dict[str, Any]]) -> dict[str, Any]:
    results = [m for m in messages if m.get("type") == "result"]
    assert len(results) == 1, [{k: v for k, v in r.items() if k != "modelUsage"} for r in results]
    (result,) = results
    assert result["is_error"] is False, result
    assert result["subtype"] == "success"
    return result


async def test_claude_code_answers_and_runs_a_tool_through_the_gateway(stack: Stack, tmp_path: Path) -> None:
    claude_binary()
    tenant = await make_tenant(stack.database_url, f"claude-code-{uuid.uuid4().hex[:8]}")

    # One plain turn, with Claude Code's default tools offered.
    answered = run_claude(stack, tenant, tmp_path, "Say hello in one sentence.")
    plain = final_result(answered)
    assert plain["result"].strip()
    assert [b["type"] for b in blocks(answered, "assistant")] == ["thinking", "text"]  # no tool asked for

    # A turn that uses a tool: Bash reads a file only this test knows, and its content comes back to the
    # model as the tool's result. The simulator calls the tool named in the question with the input
    # x-simulator-tool-input gives, sent by Claude Code as a custom header.
    secret = uuid.uuid4().hex
    (tmp_path / "note.txt").write_text(f"the secret is {secret}\n")
    tool_input = {"command": "cat note.txt", "description": "Show the note"}
    used = run_claude(
        stack,
        tenant,
        tmp_path,
        "Use the Bash tool to show what note.txt says.",
        "--tools",
        "Bash",
        "--allowedTools",
        "Bash",
        headers=f"x-simulator-tool-input: {json.dumps(tool_input)}",
    )
    with_tool = final_result(used)
    (call,) = [b for b in blocks(used, "assistant") if b["type"] == "tool_use"]
    assert (call["name"], call["input"]) == ("Bash", tool_input)
    (ran,) = [b for b in blocks(used, "user") if b.get("type") == "tool_result"]
    assert ran["tool_use_id"] == call["id"]
    assert ran["is_error"] is False
    assert f"the secret is {secret}" in json.dumps(ran["content"])
    assert with_tool["num_turns"] >= 2

    # Every call Claude Code made is on the tenant's usage records, with the session it reported.
    sessions = {plain["session_id"], with_tool["session_id"]}
    assert len(sessions) == 2

    def answered(rows: list[dict[str, Any]], session: str) -> list[dict[str, Any]]:
        return [row for row in rows if row["status"] == 200 and row["session_id"] == session]

    # Records reach the database in batches: read until both sessions' answered calls are there (the turn
    # that called the tool and the one that read its result, at least).
    deadline = time.monotonic() + 15
    while True:
        rows = await usage_rows(stack.database_url, [tenant.key_id])
        enough = answered(rows, plain["session_id"]) and len(answered(rows, with_tool["session_id"])) >= 2
        if enough or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    summary = [(r["status"], r["error_type"], r["session_id"]) for r in rows]
    assert answered(rows, plain["session_id"]), summary
    assert len(answered(rows, with_tool["session_id"])) >= 2, summary
    assert {row["session_id"] for row in rows} == sessions, summary
    assert all(row["status"] < 500 for row in rows), summary
    answered_rows = [row for row in rows if row["status"] == 200]
    assert all(row["error_type"] is None and row["output_tokens"] > 0 for row in answered_rows)
    # Claude Code's own default models, which the catalogue serves.
    catalog = default_catalog()
    assert all(catalog.resolve(row["model"]) is not None for row in answered_rows), summary
    assert all(row["status"] == 200 for row in rows), summary  # nothing it sends is refused

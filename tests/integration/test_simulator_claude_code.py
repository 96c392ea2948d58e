"""What Claude Code sends (shared/reference section 11) is accepted: its route, headers, betas, body fields
and a tool round trip; a new beta passes, a malformed one is refused as the API refuses it."""

from __future__ import annotations

import json
import uuid
from typing import Any

import anthropic
import httpx2
import orjson
import pytest

from claudegate.wire.sse import SSEParser
from claudegate.wire.tokens import token_pieces
from tests.integration.simulator_support import prose, sync_client, unique_key

CLAUDE_CODE_MODEL = "claude-opus-4-7"
BETAS = [
    "claude-code-20250219",
    "interleaved-thinking-2025-05-14",
    "context-management-2025-06-27",
    "thinking-token-count-2026-05-13",
    "advanced-tool-use-2025-11-20",
    "effort-2025-11-24",
]
SESSION_ID = str(uuid.uuid4())


def claude_code_headers(api_key: str, betas: list[str] = BETAS) -> dict[str, str]:
    return {
        "x-api-key": api_key,
        "anthropic-version": "2023-06-01",
        "anthropic-beta": ",".join(betas),
        "anthropic-dangerous-direct-browser-access": "true",
        "x-app": "cli",
        "X-Claude-Code-Session-Id": SESSION_ID,
        "User-Agent": "claude-cli/2.1.328 (external, cli)",
        "X-Stainless-Lang": "js",
        "X-Stainless-Package-Version": "0.70.0",
        "X-Stainless-Retry-Count": "0",
        "X-Stainless-Timeout": "600",
        "Accept-Encoding": "gzip, deflate, br, zstd",
        "content-type": "application/json",
        "accept": "application/json",
    }


def tool(name: str, properties: dict[str, Any], required: list[str], **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "description": f"The {name} tool. " + prose(40),
        "input_schema": {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "properties": properties,
            "required": required,
            "additionalProperties": False,
        },
        **extra,
    }


STRING = {"type": "string"}
TOOLS = [
    tool("Bash", {"command": STRING, "description": STRING, "timeout": {"type": "number"}}, ["command"]),
    tool(
        "Read",
        {"file_path": STRING, "offset": {"type": "number"}, "limit": {"type": "number"}},
        ["file_path"],
    ),
    tool("Write", {"file_path": STRING, "content": STRING}, ["file_path", "content"]),
    tool(
        "Edit", {"file_path": STRING, "old_string": STRING, "new_string": STRING}, ["file_path", "old_string"]
    ),
    tool("Glob", {"pattern": STRING, "path": STRING}, ["pattern"]),
    tool("Grep", {"pattern": STRING, "path": STRING, "glob": STRING}, ["pattern"]),
    tool("WebFetch", {"url": {"type": "string", "format": "uri"}, "prompt": STRING}, ["url", "prompt"]),
    tool("WebSearch", {"query": {"type": "string", "minLength": 2}}, ["query"]),
    tool(
        "TodoWrite",
        {"todos": {"type": "array", "items": {"type": "object", "properties": {"content": STRING}}}},
        ["todos"],
    ),
    tool("Task", {"description": STRING, "prompt": STRING}, ["description", "prompt"]),
    tool("NotebookEdit", {"notebook_path": STRING, "new_source": STRING}, ["notebook_path", "new_source"]),
    tool("mcp__docs__search", {"query": STRING}, ["query"], defer_loading=True),
]
SYSTEM = [
    {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.328; cc_entrypoint=cli"},
    {"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude.",
     "cache_control": {"type": "ephemeral"}},
    {"type": "text", "text": prose(5000), "cache_control": {"type": "ephemeral"}},  # about 27 KB
]  # fmt: skip


def claude_code_body(messages: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "model": CLAUDE_CODE_MODEL,
        "messages": messages,
        "system": SYSTEM,
        "tools": TOOLS,
        "metadata": {
            "user_id": json.dumps({"device_id": "d" * 64, "account_uuid": "", "session_id": SESSION_ID})
        },
        "max_tokens": 32000,
        "thinking": {"type": "adaptive", "display": "omitted"},
        "output_config": {"effort": "high"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "stream": True,
    }


def post_stream(
    url: str, body: dict[str, Any], headers: dict[str, str]
) -> tuple[httpx2.Response, list[dict[str, Any]]]:
    with (
        httpx2.Client(timeout=10) as http,
        http.stream(
            "POST", f"{url}/v1/messages?beta=true", content=orjson.dumps(body), headers=headers
        ) as response,
    ):
        parser = SSEParser()
        events = [event.json() for chunk in response.iter_raw() for event in parser.feed(chunk)]
        return response, events


def accumulate(events: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The assistant turn a client rebuilds from the events, and the final usage."""
    message = events[0]["message"]
    blocks: list[dict[str, Any]] = []
    partial: dict[int, str] = {}
    for event in events:
        if event["type"] == "content_block_start":
            blocks.append(dict(event["content_block"]))
        elif event["type"] == "content_block_delta":
            block, delta = blocks[event["index"]], event["delta"]
            if delta["type"] == "text_delta":
                block["text"] += delta["text"]
            elif delta["type"] == "thinking_delta":
                block["thinking"] += delta["thinking"]
            elif delta["type"] == "signature_delta":
                block["signature"] = delta["signature"]
            elif delta["type"] == "input_json_delta":
                partial[event["index"]] = partial.get(event["index"], "") + delta["partial_json"]
        elif event["type"] == "content_block_stop" and event["index"] in partial:
            blocks[event["index"]]["input"] = json.loads(partial[event["index"]])
        elif event["type"] == "message_delta":
            message = {**message, **event["delta"], "usage": {**message["usage"], **event["usage"]}}
    return blocks, message


@pytest.fixture
def api_key() -> str:
    return unique_key()


def test_connectivity_check_needs_no_key(simulator_url: str) -> None:
    assert httpx2.head(f"{simulator_url}/api/hello").status_code == 200


def test_claude_code_tool_round_trip_is_accepted(simulator_url: str, api_key: str) -> None:
    question = {"role": "user", "content": [{"type": "text", "text": "List the files here; use Bash."}]}
    response, events = post_stream(simulator_url, claude_code_body([question]), claude_code_headers(api_key))

    assert response.status_code == 200, events
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert events[0]["type"] == "message_start"
    assert events[-1]["type"] == "message_stop"
    content, message = accumulate(events)
    assert [block["type"] for block in content] == ["thinking", "text", "tool_use"]
    assert content[0]["thinking"] == ""
    assert content[0]["signature"]
    tool_use = content[2]
    assert tool_use["name"] == "Bash"
    assert isinstance(tool_use["input"]["command"], str)
    assert message["stop_reason"] == "tool_use"
    assert message["usage"]["cache_creation_input_tokens"] > 5000  # the two marked system blocks

    follow_up = [
        question,
        {"role": "assistant", "content": content},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": tool_use["id"], "content": "ls: permission denied",
             "is_error": True, "cache_control": {"type": "ephemeral"}},
        ]},
    ]  # fmt: skip
    response, events = post_stream(simulator_url, claude_code_body(follow_up), claude_code_headers(api_key))
    assert response.status_code == 200, events
    content, message = accumulate(events)
    assert [block["type"] for block in content] == ["thinking", "text"]  # after a tool result: an answer
    assert message["stop_reason"] == "end_turn"
    assert message["usage"]["cache_read_input_tokens"] > 5000  # tools and system came from the cache
    assert message["usage"]["cache_creation_input_tokens"] > 0  # the new turn, up to the tool_result mark


def test_claude_code_body_through_the_sdk_beta_namespace(simulator_url: str, api_key: str) -> None:
    body = claude_code_body([{"role": "user", "content": "Hello"}])
    del body["stream"]
    with (
        sync_client(simulator_url, api_key=api_key) as client,
        client.beta.messages.stream(  # sends ?beta=true
            betas=BETAS, extra_headers={"x-app": "cli"}, **body
        ) as stream,
    ):
        final = stream.get_final_message()
    assert [block.type for block in final.content] == ["thinking", "text"]
    assert final.stop_reason == "end_turn"


def test_a_beta_released_after_this_simulator_is_accepted(simulator_url: str, api_key: str) -> None:
    # A new client release sends betas no list here knows yet: the API accepts them, so must the simulator.
    body = claude_code_body([{"role": "user", "content": "Hello"}])
    response, _ = post_stream(
        simulator_url, body, claude_code_headers(api_key, [*BETAS, "prompt-caching-scope-2026-01-05"])
    )
    assert response.status_code == 200
    with sync_client(simulator_url, api_key=api_key) as client:
        reply = client.beta.messages.create(
            model=CLAUDE_CODE_MODEL, max_tokens=5, messages=[{"role": "user", "content": "Hi"}],
            betas=["claude-code-20250219", "warp-drive-2099-01-01", "mid-conversation-system-2026-04-07"],
        )  # fmt: skip
    assert reply.stop_reason in ("end_turn", "max_tokens")


@pytest.mark.parametrize("header", ["not a beta", "files-api", "files-api-2025-4-14", "Files-API-2025-04-14"])
def test_a_malformed_beta_header_is_refused_with_what_to_fix(
    simulator_url: str, api_key: str, header: str
) -> None:
    with (
        sync_client(simulator_url, api_key=api_key) as client,
        pytest.raises(
            anthropic.BadRequestError, match=r"Unsupported beta header: .* is not a beta name"
        ) as caught,
    ):
        client.messages.create(
            model=CLAUDE_CODE_MODEL, max_tokens=5, messages=[{"role": "user", "content": "Hi"}],
            extra_headers={"anthropic-beta": f"claude-code-20250219,{header}"},
        )  # fmt: skip
    assert caught.value.type == "invalid_request_error"
    assert "such as files-api-2025-04-14" in caught.value.message


def test_a_tool_call_can_be_scripted(simulator_url: str, api_key: str) -> None:
    """``x-simulator-tool-input`` gives the input of the tool call a reply makes (Claude Code can send it
    with ANTHROPIC_CUSTOM_HEADERS), so a client's tool really runs something known."""
    question = {"role": "user", "content": [{"type": "text", "text": "Show the note; use Bash."}]}
    scripted = {"command": "cat note.txt", "description": "Show the note"}
    headers = {**claude_code_headers(api_key), "x-simulator-tool-input": json.dumps(scripted)}
    response, events = post_stream(simulator_url, claude_code_body([question]), headers)
    assert response.status_code == 200, events
    content, message = accumulate(events)
    assert (content[-1]["name"], content[-1]["input"]) == ("Bash", scripted)
    assert message["stop_reason"] == "tool_use"
    _, events = post_stream(simulator_url, claude_code_body([question]), claude_code_headers(api_key))
    plain_content, plain_message = accumulate(events)
    assert plain_content[-1]["input"] != scripted

    def pieces(value: dict[str, Any]) -> int:
        return len(token_pieces(orjson.dumps(value).decode()))

    # The same reply but for the tool input, recounted.
    assert message["usage"]["output_tokens"] == (
        plain_message["usage"]["output_tokens"] - pieces(plain_content[-1]["input"]) + pieces(scripted)
    )

    headers["x-simulator-tool-input"] = "[1, 2]"
    refused, _ = post_stream(simulator_url, claude_code_body([question]), headers)
    assert refused.status_code == 400


def test_a_tool_named_only_in_a_reminder_is_not_called(simulator_url: str, api_key: str) -> None:
    """Claude Code adds ``<system-reminder>`` text blocks to user turns that name its tools; only what the
    user wrote decides whether the reply calls one."""
    reminder = {
        "type": "text",
        "text": "<system-reminder>Use the Agent or Bash tools when useful.</system-reminder>",
    }
    question = {"role": "user", "content": [reminder, {"type": "text", "text": "Say hello."}]}
    _, events = post_stream(simulator_url, claude_code_body([question]), claude_code_headers(api_key))
    content, message = accumulate(events)
    assert [block["type"] for block in content] == ["thinking", "text"]
    assert message["stop_reason"] == "end_turn"

    asked = {"role": "user", "content": [reminder, {"type": "text", "text": "Say hello; use Bash."}]}
    _, events = post_stream(simulator_url, claude_code_body([asked]), claude_code_headers(api_key))
    content, _ = accumulate(events)
    assert content[-1]["name"] == "Bash"


def test_a_system_message_between_turns_needs_its_beta(simulator_url: str, api_key: str) -> None:
    """Claude Code puts system messages between turns when it sends mid-conversation-system-2026-04-07 or
    per-turn-control-2026-07-01; without either the role is refused, as before."""
    turns = [
        {"role": "user", "content": [{"type": "text", "text": "Say hello."}]},
        {"role": "system", "content": "Answer in English."},
    ]
    with_beta = [*BETAS, "mid-conversation-system-2026-04-07"]
    response, events = post_stream(
        simulator_url, claude_code_body(turns), claude_code_headers(api_key, with_beta)
    )
    assert response.status_code == 200, events
    _, message = accumulate(events)
    assert message["stop_reason"] == "end_turn"

    refused = httpx2.post(
        f"{simulator_url}/v1/messages?beta=true",
        content=orjson.dumps(claude_code_body(turns)),
        headers=claude_code_headers(api_key),
        timeout=10,
    )
    assert refused.status_code == 400
    assert refused.json()["error"]["message"] == "messages.1.role: Input should be 'user' or 'assistant'"

"""Server tools (web search, web fetch, code execution): the API runs them itself, within one reply.

A reply that uses one carries a ``server_tool_use`` block (id ``srvtoolu_…``) and the tool's result block
(``web_search_tool_result``, ``web_fetch_tool_result``, ``code_execution_tool_result`` or, from the
``code_execution_20250825`` tool on, ``bash_code_execution_tool_result``), before the text that uses it;
usage counts the searches and fetches, and code execution names its container.

When the simulator uses one, deterministically: when ``tool_choice`` names it (or is ``any`` with no
custom tool), or when the last user turn asks for it: it names the tool, or says "search" (web search),
holds a URL (web fetch), or says "calculate" or "run code" (code execution). Not right after a tool
result, so that tool loops end, nor when the request ends with the assistant's own turn (a paused turn sent
back to be resumed).
"""

from __future__ import annotations

import base64
import random
import re
from collections.abc import Callable
from typing import Any

import orjson

from claudegate.simulator.plan import PlannedBlock
from claudegate.wire.tokens import token_pieces

__all__ = ["citations_of", "is_server_tool", "server_tool_blocks"]

_URL = re.compile(r"https?://[^\s<>\"')\]]+")
_ASKS = {
    "web_search": ("web_search", "search"),
    "web_fetch": ("web_fetch",),
    "code_execution": ("code_execution", "calculate", "run code"),
}
# Whole words only: "research" does not ask for a search.
_ASKING = {
    family: re.compile(r"\b(" + "|".join(re.escape(word) for word in words) + r")\b", re.IGNORECASE)
    for family, words in _ASKS.items()
}
_SITES = ("docs", "news", "wiki", "blog", "forum", "reference")


def _family(tool: dict[str, Any]) -> str | None:
    """``web_search``, ``web_fetch`` or ``code_execution`` for a server tool entry, else None."""
    kind = tool.get("type")
    if not isinstance(kind, str):
        return None
    family, _, version = kind.rpartition("_")
    return family if family in _ASKS and version.isdigit() else None


def is_server_tool(tool: dict[str, Any]) -> bool:
    return _family(tool) is not None


def server_tool_blocks(
    body: dict[str, Any],
    last_user_text: str,
    after_tool_result: bool,
    rng: random.Random,
    prose: Callable[[int], str],
) -> tuple[list[PlannedBlock], bool]:
    """The server tool calls of a reply and their results, and whether the request offered any."""
    offered = [tool for tool in body.get("tools") or [] if isinstance(tool, dict) and is_server_tool(tool)]
    if not offered:
        return [], False
    choice = body.get("tool_choice") or {"type": "auto"}
    custom = [tool for tool in body.get("tools") or [] if not is_server_tool(tool)]
    if choice.get("type") == "tool":
        chosen = [tool for tool in offered if tool.get("name") == choice.get("name")]
    elif choice.get("type") == "any" and not custom:
        chosen = [next((t for t in offered if _asked(t, last_user_text)), offered[0])]
    elif choice.get("type") == "none" or after_tool_result or _continues_a_turn(body):
        chosen = []
    else:
        chosen = [tool for tool in offered if _asked(tool, last_user_text)]
    blocks: list[PlannedBlock] = []
    for tool in chosen:
        blocks += _call(tool, last_user_text, rng, prose)
    return blocks, True


def _continues_a_turn(body: dict[str, Any]) -> bool:
    """Whether the request ends with the assistant's turn (a paused turn sent back, or a prefill): the
    reply goes on from there, with the tool calls already in it."""
    messages = body.get("messages") or []
    return bool(messages) and messages[-1].get("role") == "assistant"


def _asked(tool: dict[str, Any], text: str) -> bool:
    family = _family(tool)
    if family is None:
        return False
    if family == "web_fetch" and _URL.search(text):
        return True
    return _ASKING[family].search(text) is not None


def _call(
    tool: dict[str, Any], text: str, rng: random.Random, prose: Callable[[int], str]
) -> list[PlannedBlock]:
    tool_id = "srvtoolu_01" + rng.randbytes(11).hex()[:22]
    family = _family(tool)
    tool_input: dict[str, Any]
    result: dict[str, Any]
    if family == "web_search":
        name, tool_input = "web_search", {"query": _query(text)}
        result = {"type": "web_search_tool_result", "tool_use_id": tool_id, "content": _results(rng, prose)}
    elif family == "web_fetch":
        found = _URL.search(text)
        url = found.group(0) if found else "https://example.com/"
        name, tool_input = "web_fetch", {"url": url}
        document = {
            "type": "document",
            "source": {"type": "text", "media_type": "text/plain", "data": prose(120)},
            "title": prose(6).rstrip("."),
            "citations": None,
        }
        content = {"type": "web_fetch_result", "url": url, "content": document}
        result = {"type": "web_fetch_tool_result", "tool_use_id": tool_id, "content": content}
    elif tool.get("type") == "code_execution_20250522":
        name, tool_input = "code_execution", {"code": "print(6 * 7)"}
        outcome: dict[str, Any] = {"stdout": "42\n", "stderr": "", "return_code": 0, "content": []}
        result = {
            "type": "code_execution_tool_result",
            "tool_use_id": tool_id,
            "content": {"type": "code_execution_result", **outcome},
        }
    else:  # code execution from 20250825 on runs shell commands
        name, tool_input = "bash_code_execution", {"command": "python3 -c 'print(6 * 7)'"}
        outcome = {"stdout": "42\n", "stderr": "", "return_code": 0, "content": []}
        result = {
            "type": "bash_code_execution_tool_result",
            "tool_use_id": tool_id,
            "content": {"type": "bash_code_execution_result", **outcome},
        }
    use = PlannedBlock(
        "server_tool_use",
        pieces=token_pieces(orjson.dumps(tool_input).decode()),
        tool_id=tool_id,
        tool_name=name,
        tool_input=tool_input,
    )
    return [use, PlannedBlock("whole", whole=result)]


def _query(text: str) -> str:
    words = text.split()
    return " ".join(words[:12]) or "latest news"


def _results(rng: random.Random, prose: Callable[[int], str]) -> list[dict[str, Any]]:
    results = []
    for index in range(3):
        title = prose(6).rstrip(".")
        slug = "-".join(title.lower().split()[:4])
        results.append(
            {
                "type": "web_search_result",
                "url": f"https://{_SITES[rng.randrange(len(_SITES))]}.example.com/{slug}",
                "title": title,
                "encrypted_content": base64.b64encode(rng.randbytes(48)).decode(),
                "page_age": f"{index + 1 + rng.randrange(9)} days ago",
            }
        )
    return results


def citations_of(blocks: list[PlannedBlock], rng: random.Random) -> list[dict[str, Any]]:
    """What the answer after web searches cites: the first result of each search."""
    citations: list[dict[str, Any]] = []
    for block in blocks:
        if block.whole is None or block.whole["type"] != "web_search_tool_result":
            continue
        first = block.whole["content"][0]
        citations.append(
            {
                "type": "web_search_result_location",
                "url": first["url"],
                "title": first["title"],
                "encrypted_index": base64.b64encode(rng.randbytes(24)).decode(),
                "cited_text": first["title"] + ".",
            }
        )
    return citations

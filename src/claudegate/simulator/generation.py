"""Deterministic replies: the same request always gets the same content.

Replies are built from pieces that are exactly one token each for ``claudegate.wire.tokens`` (a word with
its leading space, a punctuation mark, a paragraph break), so the output token count is the number of
pieces and anyone counting the streamed text arrives at the same figure.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import random
from typing import Any

import orjson

from claudegate.errors import InvalidRequestError
from claudegate.simulator.plan import TOOL_KINDS, PlannedBlock, ReplyPlan
from claudegate.simulator.prompt import Prompt
from claudegate.simulator.schema_values import SchemaTooLargeError, value_for_schema
from claudegate.simulator.server_tools import citations_of, server_tool_blocks
from claudegate.wire.tokens import count_text_tokens, token_pieces

__all__ = [
    "REDACTED_THINKING_TRIGGER",
    "PlannedBlock",
    "ReplyPlan",
    "plan_reply",
    "request_seed",
    "structured_output_schema",
    "with_tool_input",
]

# Every word has at most eight letters, so that " word" is exactly one token; a longer one would make the
# streamed token count (one per piece) disagree with the count of the text. tests/unit checks this.
_WORD_TEXT = (
    "the of and to in is it that for on as with was be by this are or at from but not have an they which "
    "one you were all we can her has there been if more when will would who so no out up into than them "
    "time some could these two may then first any like now my such make over our even most made after "
    "also did many before must through back years where much your way well down should because each just "
    "those people how too little state good very world still own see men work long get here between both "
    "life being under never day same another know while last might great old year off come since against "
    "go came right used take three small large next early young key few public bad able model token "
    "answer stream cache prompt request reply limit bucket minute second queue budget cost usage system"
)
_WORDS: tuple[str, ...] = tuple(_WORD_TEXT.split())
_SPACED = tuple(" " + word for word in _WORDS)
_CAPITALISED = tuple(word.capitalize() for word in _WORDS)

_MIN_REPLY_TOKENS = 12
_REPLY_SPREAD = 48
_SIGNATURE_BYTES = 48
# Anthropic's documented test string: a request whose prompt holds it gets its thinking redacted.
REDACTED_THINKING_TRIGGER = (
    "ANTHROPIC_MAGIC_STRING_TRIGGER_REDACTED_THINKING_"
    "46C9A13E193C177646C7398A98432ECCCE4C1253D5E2D82641AC0E52CC2876CB"
)


def request_seed(body: dict[str, Any]) -> int:
    """A seed from everything that shapes the reply's content (not max_tokens or stream)."""
    shaping = {k: body.get(k) for k in ("model", "system", "messages", "tools", "tool_choice", "thinking")}
    if isinstance(shaping["thinking"], dict):
        # Whether thinking is shown changes what the client sees, not what the model thinks.
        shaping["thinking"] = {k: v for k, v in shaping["thinking"].items() if k != "display"}
    digest = hashlib.blake2b(orjson.dumps(shaping, option=orjson.OPT_SORT_KEYS), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def structured_output_schema(body: dict[str, Any]) -> tuple[dict[str, Any], str] | None:
    """The JSON schema the reply's text must follow, and where the request gave it: ``output_config.format``,
    or the older beta ``output_format``."""
    output_config = body.get("output_config") or {}
    where = "output_config.format" if output_config.get("format") else "output_format"
    found = output_config.get("format") or body.get("output_format")
    if not isinstance(found, dict) or found.get("type") != "json_schema":
        return None
    schema = found.get("schema")
    return (schema, f"{where}.schema") if isinstance(schema, dict) else None


def plan_reply(
    body: dict[str, Any], prompt: Prompt, *, seed: int, reply_tokens: int | None = None
) -> ReplyPlan:
    """The full reply to a validated request: its blocks, stop reason and output token count."""
    rng = random.Random(seed)
    max_tokens: int = body["max_tokens"]
    prefill = _prefill_tokens(body["messages"])
    if reply_tokens is not None and prefill:
        # A reply that continues a prefilled assistant turn (a client continuing a reply cut by max_tokens)
        # writes only what the whole answer still lacks.
        reply_tokens = max(1, reply_tokens - prefill)
    blocks: list[PlannedBlock] = []

    thinking = body.get("thinking") or {}
    if thinking.get("type") in ("enabled", "adaptive"):
        limit = thinking.get("budget_tokens", 2048)
        words = _sentences(rng, min(limit, 20 + rng.randrange(40)))
        signature = base64.b64encode(rng.randbytes(_SIGNATURE_BYTES)).decode()
        if REDACTED_THINKING_TRIGGER in prompt.last_user_text:
            data = base64.b64encode(rng.randbytes(len(words) * 4)).decode()
            whole = {"type": "redacted_thinking", "data": data}
            blocks.append(PlannedBlock("whole", hidden_tokens=len(words), whole=whole))
        elif thinking.get("display") == "omitted":
            blocks.append(PlannedBlock("thinking", hidden_tokens=len(words), signature=signature))
        else:
            blocks.append(PlannedBlock("thinking", pieces=words, signature=signature))

    server_blocks, server_tools = server_tool_blocks(
        body,
        prompt.last_user_text,
        prompt.last_user_has_tool_result,
        rng,
        lambda tokens: "".join(_sentences(rng, tokens)),
    )
    blocks += server_blocks
    tool = _chosen_tool(body, prompt, rng)
    if tool is None or (body.get("tool_choice") or {}).get("type") not in ("any", "tool"):
        structured = structured_output_schema(body)
        if tool is not None:
            text = token_pieces(f"I'll use the {tool['name']} tool.")
        elif structured is not None:
            text = token_pieces(orjson.dumps(_value(*structured, rng)).decode())
        elif reply_tokens is not None:
            text = _exactly(_sentences(rng, reply_tokens), reply_tokens)
        else:
            length = _MIN_REPLY_TOKENS + rng.randrange(_REPLY_SPREAD)
            text = _sentences(rng, length + min(count_text_tokens(prompt.last_user_text), 600) // 3)
        cited = citations_of(server_blocks, rng) if structured is None and tool is None else []
        blocks.append(PlannedBlock("text", pieces=text, citations=cited or None))
    for used in (tool, *_parallel_tools(body, prompt, tool)) if tool is not None else ():
        where = f"tools.{body['tools'].index(used)}.input_schema"
        tool_input = _value(used["input_schema"], where, rng)
        chunks = token_pieces(orjson.dumps(tool_input).decode())
        tool_id = "toolu_01" + rng.randbytes(11).hex()[:22]
        blocks.append(
            PlannedBlock(
                "tool_use", pieces=chunks, tool_id=tool_id, tool_name=used["name"], tool_input=tool_input
            )
        )

    plan = _finish(blocks, max_tokens, body.get("stop_sequences") or [], tool is not None)
    plan.server_tools = server_tools
    plan.context_management = body.get("context_management") is not None
    return plan


def _value(schema: dict[str, Any], where: str, rng: random.Random) -> Any:
    try:
        return value_for_schema(schema, rng)
    except SchemaTooLargeError as error:
        raise InvalidRequestError(f"{where}: {error}") from None


def _finish(blocks: list[PlannedBlock], max_tokens: int, stop_sequences: list[str], tool: bool) -> ReplyPlan:
    """Cut the reply at a stop sequence or at max_tokens, whichever comes first."""
    for block in blocks:
        if block.kind != "text" or not stop_sequences:
            continue
        text = block.text
        found = [(text.find(s), s) for s in stop_sequences if s and s in text]
        if found:
            position, sequence = min(found)
            block.pieces = token_pieces(text[:position]) if position else []
            kept = blocks[: blocks.index(block) + 1]
            return _cut_to_budget(kept, max_tokens, "stop_sequence", sequence)
    return _cut_to_budget(blocks, max_tokens, "tool_use" if tool else "end_turn", None)


def _cut_to_budget(
    blocks: list[PlannedBlock], max_tokens: int, stop_reason: str, stop_sequence: str | None
) -> ReplyPlan:
    used = 0
    kept: list[PlannedBlock] = []
    for block in blocks:
        room = max_tokens - used
        if room <= 0:
            return ReplyPlan(kept, "max_tokens", None, used)
        # Every piece is one token (tests/unit/test_tokens.py holds us to it); hidden thinking counts too.
        cost = len(block.pieces) + block.hidden_tokens
        if cost > room:
            block.pieces = block.pieces[:room]
            block.hidden_tokens = min(block.hidden_tokens, room)
            if block.kind in TOOL_KINDS:
                block.tool_input = {}
            kept.append(block)
            return ReplyPlan(kept, "max_tokens", None, used + room)
        used += cost
        kept.append(block)
    return ReplyPlan(kept, stop_reason, stop_sequence, used)


def _sentences(rng: random.Random, tokens: int) -> list[str]:
    """At least ``tokens`` pieces of prose, ending at the end of a sentence."""
    pieces: list[str] = []
    draw = rng.random  # one float per choice: a third of the cost of rng.choice
    count = len(_WORDS)
    sentences_in_paragraph = 0
    while len(pieces) < tokens:
        length = 5 + int(draw() * 12)
        first = _CAPITALISED[int(draw() * count)]
        pieces.append(" " + first if pieces and pieces[-1] != "\n\n" else first)
        for position in range(1, length):
            pieces.append(_SPACED[int(draw() * count)])
            if position < length - 2 and draw() < 0.08:
                pieces.append(",")
        pieces.append(".")
        sentences_in_paragraph += 1
        if sentences_in_paragraph == 4 and len(pieces) < tokens:
            pieces.append("\n\n")
            sentences_in_paragraph = 0
    return pieces


def _prefill_tokens(messages: list[dict[str, Any]]) -> int:
    """The text tokens of a final assistant turn (a prefill), 0 without one."""
    last = messages[-1] if messages else {}
    if last.get("role") != "assistant":
        return 0
    content = last.get("content")
    if isinstance(content, str):
        return count_text_tokens(content)
    return sum(
        count_text_tokens(block.get("text", ""))
        for block in content or ()
        if isinstance(block, dict) and block.get("type") == "text"
    )


def _exactly(pieces: list[str], tokens: int) -> list[str]:
    """Prose cut to exactly ``tokens`` pieces (``x-simulator-reply-tokens``), ending with a full stop."""
    pieces = pieces[:tokens]
    if pieces and pieces[-1] != ".":
        pieces[-1] = "."
    return pieces


def _parallel_tools(body: dict[str, Any], prompt: Prompt, first: dict[str, Any]) -> list[dict[str, Any]]:
    """The other tools the last user turn names, used in the same reply (parallel tool use), unless the
    tool choice is not ``auto`` or disables parallel use."""
    choice = body.get("tool_choice") or {"type": "auto"}
    if choice["type"] != "auto" or choice.get("disable_parallel_tool_use") is True:
        return []
    asked = prompt.last_user_text.lower()
    return [t for t in prompt.custom_tools if t is not first and t["name"].lower() in asked]


def _chosen_tool(body: dict[str, Any], prompt: Prompt, rng: random.Random) -> dict[str, Any] | None:
    tools = prompt.custom_tools
    choice = body.get("tool_choice") or {"type": "auto"}
    if not tools or choice["type"] == "none":
        return None
    if choice["type"] == "tool":  # None when it names a server tool
        return next((t for t in tools if t["name"] == choice["name"]), None)
    if choice["type"] == "any":
        return tools[rng.randrange(len(tools))]
    # auto: use a tool when the last user turn names it, and not right after a tool result, so that
    # tool-running loops end with a text answer.
    if prompt.last_user_has_tool_result:
        return None
    asked = prompt.last_user_text.lower()
    return next((t for t in tools if t["name"].lower() in asked), None)


def with_tool_input(plan: ReplyPlan, body: dict[str, Any], tool_input: dict[str, Any]) -> ReplyPlan:
    """The same reply with its tool call's input replaced (``x-simulator-tool-input``), recounted; a reply
    without a tool call is returned as it is. The plan itself is shared between identical requests, so it
    is copied, never changed."""
    if not any(block.kind == "tool_use" for block in plan.blocks):
        return plan
    blocks = [
        dataclasses.replace(
            block, pieces=token_pieces(orjson.dumps(tool_input).decode()), tool_input=tool_input
        )
        if block.kind == "tool_use"
        else dataclasses.replace(block, pieces=list(block.pieces))
        for block in plan.blocks
    ]
    return _cut_to_budget(blocks, body["max_tokens"], plan.stop_reason, plan.stop_sequence)

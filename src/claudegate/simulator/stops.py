"""Replies that stop early, on request: ``refusal``, ``pause_turn`` and ``model_context_window_exceeded``.

The API ends a reply this way when a classifier steps in, when a long server-tool turn is paused for the
client to resume, or when the context window fills up. Clients must handle all three; the simulator
produces them per request (``x-simulator-fault: refusal[:CATEGORY]`` and the others) from the reply it
would have sent, cut as the API cuts it.
"""

from __future__ import annotations

import dataclasses

from claudegate.simulator.plan import TOOL_KINDS, PlannedBlock, ReplyPlan

__all__ = ["REFUSAL_CATEGORIES", "STOP_FAULTS", "stopped"]

STOP_FAULTS = frozenset({"refusal", "pause_turn", "model_context_window_exceeded"})
# RefusalStopDetails.category in the SDK's types.
REFUSAL_CATEGORIES = frozenset({"cyber", "bio", "frontier_llm", "reasoning_extraction", "general_harms"})
_EXPLANATION = "This request was stopped by a safety classifier; the simulator refuses it on request."


def stopped(plan: ReplyPlan, kind: str, argument: str | None = None) -> ReplyPlan:
    """``plan`` as a reply that stopped for ``kind`` (one of STOP_FAULTS); ``plan`` itself is unchanged."""
    if kind == "pause_turn":
        return _paused(plan)
    blocks = _halved(plan.blocks)
    details = None
    if kind == "refusal":
        first_tool = next((i for i, b in enumerate(blocks) if b.kind in TOOL_KINDS), len(blocks))
        blocks = blocks[:first_tool]  # a refused reply calls no tool
        details = {"type": "refusal", "category": argument, "explanation": _EXPLANATION}
    return _plan(plan, blocks, kind, details)


def _paused(plan: ReplyPlan) -> ReplyPlan:
    """A turn paused after its server tool calls, before the text that would use them; a reply without
    server tools pauses half way through."""
    last_server = max((i for i, b in enumerate(plan.blocks) if b.kind == "whole" and i > 0), default=None)
    if last_server is not None and plan.blocks[last_server - 1].kind == "server_tool_use":
        return _plan(plan, plan.blocks[: last_server + 1], "pause_turn", None)
    return _plan(plan, _halved(plan.blocks), "pause_turn", None)


def _halved(blocks: list[PlannedBlock]) -> list[PlannedBlock]:
    """The blocks up to half of the reply's output, the block cut there shortened (a cut tool call keeps
    no input)."""
    total = sum(len(b.pieces) + b.hidden_tokens for b in blocks)
    room = total // 2
    kept: list[PlannedBlock] = []
    for block in blocks:
        cost = len(block.pieces) + block.hidden_tokens
        if cost <= room:
            kept.append(block)
            room -= cost
            continue
        if room > 0 and block.whole is None:
            cut = dataclasses.replace(
                block, pieces=block.pieces[:room], hidden_tokens=min(block.hidden_tokens, room)
            )
            if cut.kind in TOOL_KINDS:
                cut.tool_input = {}
            kept.append(cut)
        break
    return kept


def _plan(
    plan: ReplyPlan, blocks: list[PlannedBlock], reason: str, details: dict[str, str | None] | None
) -> ReplyPlan:
    output = sum(len(b.pieces) + b.hidden_tokens for b in blocks)
    return ReplyPlan(
        blocks,
        reason,
        None,
        output,
        stop_details=details,
        server_tools=plan.server_tools,
        context_management=plan.context_management,
    )

"""A reply as planned before it is sent: its blocks, why it stopped and what it counts in usage."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["TOOL_KINDS", "PlannedBlock", "ReplyPlan"]

# Blocks whose input is streamed as partial JSON.
TOOL_KINDS = frozenset({"tool_use", "server_tool_use"})


@dataclass(slots=True)
class PlannedBlock:
    # "text", "thinking", "tool_use", "server_tool_use", or "whole": a block sent in one piece (redacted
    # thinking, a server tool's result), with no deltas.
    kind: str
    pieces: list[str] = field(default_factory=list)  # text, thinking text, or chunks of the tool input JSON
    hidden_tokens: int = 0  # thinking not shown (display "omitted", or redacted): billed all the same
    tool_id: str = ""
    tool_name: str = ""
    tool_input: dict[str, Any] = field(default_factory=dict)
    signature: str = ""
    whole: dict[str, Any] | None = None  # the block as sent, for kind "whole"
    citations: list[dict[str, Any]] | None = None  # of a text block that cites server tool results

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    @property
    def thinking_tokens(self) -> int:
        if self.kind == "thinking" or (self.whole is not None and self.whole["type"] == "redacted_thinking"):
            return len(self.pieces) + self.hidden_tokens
        return 0

    def to_api(self) -> dict[str, Any]:
        if self.whole is not None:
            return self.whole
        if self.kind == "text":
            if self.citations:
                return {"type": "text", "text": self.text, "citations": self.citations}
            return {"type": "text", "text": self.text}
        if self.kind == "thinking":
            return {"type": "thinking", "thinking": self.text, "signature": self.signature}
        return {"type": self.kind, "id": self.tool_id, "name": self.tool_name, "input": self.tool_input}


@dataclass(slots=True)
class ReplyPlan:
    blocks: list[PlannedBlock]
    stop_reason: str
    stop_sequence: str | None
    output_tokens: int
    stop_details: dict[str, Any] | None = None
    # Whether the request offered server tools: usage then reports their requests, used or not.
    server_tools: bool = False
    # Whether the request set context_management: the reply then reports the edits applied (none here).
    context_management: bool = False
    # Renderings that depend on the plan alone, kept with it: identical requests share one plan (the
    # engine's prepared-request cache), so each is encoded once. See reply.py.
    content_json: bytes | None = None
    sse_content: dict[int, tuple[bytes, bytes]] = field(default_factory=dict)

    @property
    def thinking_tokens(self) -> int:
        return sum(block.thinking_tokens for block in self.blocks)

    def server_requests(self, name: str) -> int:
        return sum(1 for b in self.blocks if b.kind == "server_tool_use" and b.tool_name == name)

    @property
    def container_id(self) -> str | None:
        """The code-execution container the reply ran in, named after its first code tool call."""
        for block in self.blocks:
            if block.kind == "server_tool_use" and block.tool_name.endswith("code_execution"):
                return "container_011C" + block.tool_id[-20:]
        return None

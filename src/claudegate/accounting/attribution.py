"""Attribution a client offers for cost tracking, read from its request headers.

Claude Code's gateway protocol (https://code.claude.com/docs/en/llm-gateway-protocol, "Request headers")
sends ``x-claude-code-session-id`` on every request, and ``x-claude-code-agent-id`` /
``x-claude-code-parent-agent-id`` on requests from the subagents it spawns, for a gateway to consume. The
usage record keeps them, so spend can be reported per session (``claudegate usage --group-by session``).
They are forwarded upstream as well, like every other end-to-end header.

A value is kept only if it looks like an identifier (printable ASCII, no spaces, at most 128 characters):
anything else is dropped, never stored.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import NamedTuple

__all__ = ["Attribution", "attribution_from_headers"]

SESSION_HEADER = b"x-claude-code-session-id"
AGENT_HEADER = b"x-claude-code-agent-id"
PARENT_AGENT_HEADER = b"x-claude-code-parent-agent-id"
_HEADERS = frozenset({SESSION_HEADER, AGENT_HEADER, PARENT_AGENT_HEADER})
_IDENTIFIER = re.compile(rb"[\x21-\x7e]{1,128}")


class Attribution(NamedTuple):
    session_id: str | None = None
    agent_id: str | None = None
    parent_agent_id: str | None = None


_NONE = Attribution()


def attribution_from_headers(headers: Sequence[tuple[bytes, bytes]]) -> Attribution:
    """The attribution in ``headers`` (lower-case names, as ASGI gives them)."""
    found: dict[bytes, str] | None = None
    for name, value in headers:
        if name in _HEADERS and _IDENTIFIER.fullmatch(value):
            if found is None:
                found = {}
            found[name] = value.decode("ascii")
    if found is None:
        return _NONE
    return Attribution(found.get(SESSION_HEADER), found.get(AGENT_HEADER), found.get(PARENT_AGENT_HEADER))

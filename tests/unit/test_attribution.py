"""Claude Code's attribution headers become the usage record's session and agent ids, when they are ids."""

from __future__ import annotations

from claudegate.accounting.attribution import Attribution, attribution_from_headers


def test_session_and_agents_are_read() -> None:
    headers = [
        (b"x-api-key", b"cg-secret"),
        (b"x-claude-code-session-id", b"3f2a9c1e-1111-2222-3333-444455556666"),
        (b"x-claude-code-agent-id", b"agent-7"),
        (b"x-claude-code-parent-agent-id", b"agent-1"),
    ]
    assert attribution_from_headers(headers) == Attribution(
        "3f2a9c1e-1111-2222-3333-444455556666", "agent-7", "agent-1"
    )
    assert attribution_from_headers([(b"x-api-key", b"cg-secret")]) == Attribution(None, None, None)


def test_what_is_not_an_identifier_is_never_kept() -> None:
    for value in (b"", b"a\x00b", b"two words", b"x" * 129, "caf\u00e9".encode(), b"tab\there"):
        assert attribution_from_headers([(b"x-claude-code-session-id", value)]).session_id is None
    assert attribution_from_headers([(b"x-claude-code-session-id", b"x" * 128)]).session_id == "x" * 128

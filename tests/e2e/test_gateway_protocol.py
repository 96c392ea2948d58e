"""Claude Code's gateway contract (https://code.claude.com/docs/en/llm-gateway-protocol): the attribution
it sends is kept on the usage record and reported per session; model discovery reads ``/v1/models`` with
either credential header. (That ``anthropic-*`` headers reach the upstream unchanged: test_paths.py.)"""

from __future__ import annotations

import uuid

import anthropic
import httpx2

from claudegate.store import GroupBy, Store
from tests.e2e.conftest import Stack, make_tenant
from tests.e2e.test_accounting import wait_for_records

MODEL = "claude-sonnet-4-6"
HELLO = [{"role": "user", "content": "Hello"}]


async def test_spend_is_recorded_and_reported_per_claude_code_session(stack: Stack) -> None:
    tenant = await make_tenant(stack.database_url, f"cc-{uuid.uuid4().hex[:8]}")
    session, other_session = str(uuid.uuid4()), str(uuid.uuid4())
    client = anthropic.AsyncAnthropic(base_url=stack.url, api_key=tenant.key, max_retries=0)
    main = {"x-claude-code-session-id": session}
    subagent = {**main, "x-claude-code-agent-id": "agent-7", "x-claude-code-parent-agent-id": "agent-1"}
    await client.messages.create(model=MODEL, max_tokens=30, messages=HELLO, extra_headers=main)  # type: ignore[arg-type]
    async with client.messages.stream(
        model=MODEL, max_tokens=30, messages=HELLO, extra_headers=subagent
    ) as s:  # type: ignore[arg-type]
        await s.get_final_message()
    await client.messages.create(
        model=MODEL,
        max_tokens=30,
        messages=HELLO,
        extra_headers={"x-claude-code-session-id": other_session},  # type: ignore[arg-type]
    )
    await client.messages.create(  # not an identifier: dropped, never stored
        model=MODEL,
        max_tokens=30,
        messages=HELLO,
        extra_headers={"x-claude-code-session-id": "a b" + "c" * 200},  # type: ignore[arg-type]
    )

    rows = await wait_for_records(stack.database_url, [tenant.key_id], 4)
    attribution = sorted(
        ((r["session_id"] or "", r["agent_id"], r["parent_agent_id"]) for r in rows), key=str
    )
    assert attribution == sorted(
        [
            (session, None, None),
            (session, "agent-7", "agent-1"),
            (other_session, None, None),
            ("", None, None),
        ],
        key=str,
    )

    store = await Store.open(stack.database_url, upgrade=False)
    try:
        report = await store.usage.report(group_by=GroupBy.SESSION, org_id=tenant.org_id)
    finally:
        await store.close()
    by_session = {row.group: row for row in report}
    assert by_session[session].requests == 2
    assert by_session[other_session].requests == 1
    assert by_session[None].requests == 1
    session_rows = [r for r in rows if r["session_id"] == session]
    assert by_session[session].output_tokens == sum(r["output_tokens"] for r in session_rows)


def test_model_discovery_reads_the_models_claude_code_keeps(stack: Stack) -> None:
    """``GET /v1/models?limit=1000`` with ``x-api-key`` (an API key or helper) or a bearer token
    (``ANTHROPIC_AUTH_TOKEN``, sent with the ``anthropic-version`` every Anthropic SDK request carries),
    answered in Anthropic's shape; Claude Code keeps ids beginning ``claude``."""
    bearer = {"authorization": f"Bearer {stack.org_a.key}", "anthropic-version": "2023-06-01"}
    for headers in ({"x-api-key": stack.org_a.key}, bearer):
        response = httpx2.get(f"{stack.url}/v1/models?limit=1000", headers=headers, follow_redirects=False)
        assert response.status_code == 200
        data = response.json()["data"]
        assert data
        assert all(entry["id"].startswith("claude") and entry["display_name"] for entry in data)
        assert MODEL in [entry["id"] for entry in data]
    assert httpx2.get(f"{stack.url}/v1/models?limit=1000").status_code == 401

"""What the in-process client sends for the SDK's keyword parameters (claudegate.client._params), and that
``import claudegate`` leaves the client and the SDK unimported until they are used."""

from __future__ import annotations

import subprocess
import sys

import anthropic
import orjson
import pytest
from anthropic.types import TextBlock

from claudegate.client._params import prepare

HELLO = [{"role": "user", "content": "Hello"}]


def headers(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    return {name.decode(): value.decode() for name, value in raw}


def test_parameters_left_out_or_omitted_are_not_sent() -> None:
    prepared = prepare(
        "/v1/messages",
        {
            "model": "m",
            "max_tokens": 5,
            "messages": HELLO,
            "system": anthropic.omit,
            "top_k": anthropic.NOT_GIVEN,
        },
    )
    assert orjson.loads(prepared.body) == {"model": "m", "max_tokens": 5, "messages": HELLO}
    assert prepared.fields == orjson.loads(prepared.body)
    assert headers(prepared.headers) == {
        "anthropic-version": "2023-06-01",
        "content-type": "application/json",
    }
    assert prepared.path_and_query == "/v1/messages"


def test_extra_body_wins_and_unknown_parameters_go_into_the_body() -> None:
    prepared = prepare(
        "/v1/messages",
        {"model": "m", "max_tokens": 5, "temperature": 0.2},
        extra_body={"max_tokens": 9, "x": 1},
    )
    assert orjson.loads(prepared.body) == {"model": "m", "max_tokens": 9, "temperature": 0.2, "x": 1}


def test_betas_header_query_and_extra_headers_as_the_sdk_sends_them() -> None:
    prepared = prepare(
        "/v1/messages",
        {"model": "m", "workspace_id": "wrk_1"},
        betas=["a-2025-01-01", "b-2025-02-02"],
        extra_headers={"X-Trace": "t1", "Anthropic-Version": "2023-01-01", "content-type": anthropic.omit},
        extra_query={"debug": "1"},
    )
    assert headers(prepared.headers) == {
        "anthropic-version": "2023-01-01",
        "anthropic-beta": "a-2025-01-01,b-2025-02-02",
        "anthropic-workspace-id": "wrk_1",
        "x-trace": "t1",
    }
    assert "workspace_id" not in orjson.loads(prepared.body)
    assert prepared.path_and_query == "/v1/messages?beta=true&debug=1"


def test_sdk_models_and_iterables_are_sent_as_json() -> None:
    block = TextBlock.construct(type="text", text="Hi", citations=None)
    messages = (
        {"role": role, "content": content} for role, content in [("user", "Hi"), ("assistant", [block])]
    )
    prepared = prepare("/v1/messages", {"model": "m", "messages": messages, "stop_sequences": ("a", "b")})
    assert orjson.loads(prepared.body) == {
        "model": "m",
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": [{"type": "text", "text": "Hi", "citations": None}]},
        ],
        "stop_sequences": ["a", "b"],
    }


def test_import_claudegate_leaves_the_client_and_the_sdk_for_later() -> None:
    code = "import sys, claudegate\nprint(sorted({'claudegate.client', 'anthropic'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert done.stdout.strip() == "[]"
    import claudegate
    from claudegate.client import AsyncClient, Client

    assert (claudegate.AsyncClient, claudegate.Client) == (AsyncClient, Client)


@pytest.mark.parametrize(
    "extra", [{"x-note": "a\r\nx-api-key: sk-other"}, {"x-bad\nname": "v"}, {"x-nul": "a\0b"}]
)
def test_a_header_that_would_forge_another_is_refused_before_the_call_is_made(extra: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="CR, LF or NUL"):
        prepare("/v1/messages", {"model": "m", "max_tokens": 5, "messages": HELLO}, extra_headers=extra)

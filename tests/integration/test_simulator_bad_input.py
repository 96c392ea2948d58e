"""Bad input to the simulator gets Anthropic's 400 with a message that says what to fix, never a 500.

Besides the cases users have hit, hypothesis rewrites one part of a rich, valid request at a time (a field,
a list item, a nested block) with a value of any JSON type, or drops it, and sends the result: whatever it
builds, the answer is a 2xx or a 4xx in the API's envelope.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from claudegate.simulator.app import create_app
from tests.request_fuzz import HEADER_TEXT, HEADERS, JSON_VALUES, PATHS, VALID, at, look_alikes, rewritten


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(create_app(), raise_server_exceptions=False) as test_client:
        yield test_client


def answer(
    client: TestClient, body: Any, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    response = client.post("/v1/messages", content=json.dumps(body), headers={**HEADERS, **(headers or {})})
    assert response.status_code < 500, response.text
    return response.status_code, response.json()


def invalid_request(status: int, reply: dict[str, Any]) -> str:
    assert status == 400, reply
    assert reply["type"] == "error"
    assert reply["error"]["type"] == "invalid_request_error"
    message: str = reply["error"]["message"]
    return message


def test_the_valid_request_is_answered(client: TestClient) -> None:
    status, reply = answer(client, VALID)
    assert status == 200, reply
    assert reply["type"] == "message"


@pytest.mark.parametrize(
    ("change", "headers", "message"),
    [
        ({"max_tokens": "20"}, {}, "max_tokens: Input should be a valid integer"),
        ({"max_tokens": 20.0}, {}, "max_tokens: Input should be a valid integer"),
        ({"max_tokens": True}, {}, "max_tokens: Input should be a valid integer"),
        ({"max_tokens": -1}, {}, "max_tokens: Input should be greater than or equal to 0"),
        ({"max_tokens": 99999999999999999999999}, {}, "max_tokens: Input should be a valid integer"),
        ({"temperature": "0.5"}, {}, "temperature: Input should be a valid number"),
        ({"stream": "true"}, {}, "stream: Input should be a valid boolean"),
        ({"thinking": {"type": "enabled", "budget_tokens": "2048"}}, {}, "thinking.budget_tokens:"),
        ({}, {"x-simulator-reply-tokens": "99999999999999999999999"}, "x-simulator-reply-tokens: "),
        ({}, {"x-simulator-reply-tokens": "-5"}, "x-simulator-reply-tokens: expected a whole number"),
    ],
)
def test_wrong_types_are_a_400_that_names_the_field(
    client: TestClient, change: dict[str, Any], headers: dict[str, str], message: str
) -> None:
    status, reply = answer(client, {**VALID, "thinking": None, **change}, headers)
    assert invalid_request(status, reply).startswith(message)


def test_a_huge_reply_token_count_says_the_limit(client: TestClient) -> None:
    status, reply = answer(client, VALID, {"x-simulator-reply-tokens": "99999999999999999999999"})
    assert "use at most 1000000" in invalid_request(status, reply)


def test_a_header_of_non_ascii_digits_is_refused(client: TestClient) -> None:
    raw = [(name.encode(), value.encode()) for name, value in HEADERS.items()]
    response = client.post(
        "/v1/messages", content=json.dumps(VALID), headers=[*raw, (b"x-simulator-reply-tokens", b"\xb2")]
    )
    assert invalid_request(response.status_code, response.json()).startswith("x-simulator-reply-tokens")


def test_max_tokens_zero_warms_the_cache_without_a_reply(client: TestClient) -> None:
    """The API documents ``max_tokens: 0`` as a prompt-cache warm-up: no content, no output tokens."""
    status, reply = answer(client, {**VALID, "thinking": None, "max_tokens": 0})
    assert status == 200, reply
    assert reply["content"] == []
    assert reply["usage"]["output_tokens"] == 0


@settings(
    max_examples=500,
    deadline=None,
    derandomize=True,  # the same examples on every run: a failure here is a bug, never bad luck
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(path=st.sampled_from(PATHS), data=st.data(), drop=st.booleans())
def test_any_part_of_the_request_rewritten_is_never_a_server_error(
    client: TestClient, path: tuple[str | int, ...], data: st.DataObject, drop: bool
) -> None:
    value = data.draw(st.sampled_from(look_alikes(at(path))) | JSON_VALUES)
    status, reply = answer(client, rewritten(path, value, drop))
    if status >= 400:
        assert reply["type"] == "error"
        assert reply["error"]["message"]


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(body=JSON_VALUES)
def test_any_json_body_is_never_a_server_error(client: TestClient, body: Any) -> None:
    status, reply = answer(client, body)
    assert status == 400
    assert reply["error"]["type"] == "invalid_request_error"


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    name=st.sampled_from(
        ["x-simulator-reply-tokens", "x-simulator-fault", "anthropic-beta", "anthropic-version"]
    ),
    value=HEADER_TEXT,
)
def test_any_header_value_is_never_a_server_error(client: TestClient, name: str, value: str) -> None:
    raw = [(key.encode(), item.encode()) for key, item in HEADERS.items() if key != name]
    response = client.post(
        "/v1/messages",
        content=json.dumps({**VALID, "thinking": None}),
        headers=[*raw, (name.encode(), value.strip(" \t").encode("latin-1"))],
    )
    assert response.status_code < 500, response.text


def test_a_schema_with_no_finite_value_is_a_400_naming_it(client: TestClient) -> None:
    endless = {"type": "object", "properties": {"next": {"$ref": "#"}}, "required": ["next"]}
    body = {
        **VALID,
        "thinking": None,
        "output_config": {"format": {"type": "json_schema", "schema": endless}},
    }
    status, reply = answer(client, body)
    assert invalid_request(status, reply).startswith("output_config.format.schema: ")
    tool = {"name": "loop", "input_schema": endless}
    body = {**VALID, "thinking": None, "tools": [VALID["tools"][1], tool], "tool_choice": {"type": "any"}}
    status, reply = answer(client, body)
    assert invalid_request(status, reply).startswith("tools.1.input_schema: ")

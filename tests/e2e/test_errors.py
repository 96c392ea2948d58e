"""Errors and the edges of the API: the SDK raises the same exception for an error through the gateway as
for the upstream's own; errors the gateway makes itself say so (``x-claudegate-origin: gateway``), come in
Anthropic's envelope and are never a 500; headers and paths Claude Code relies on pass through."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import anthropic
import httpx2
import orjson
import pytest
import zstandard
from anthropic.types import MessageParam
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.e2e.conftest import Stack
from tests.request_fuzz import HEADERS as FUZZ_HEADERS
from tests.request_fuzz import JSON_VALUES, PATHS, at, look_alikes, rewritten

MODEL = "claude-sonnet-4-6"
HELLO: list[MessageParam] = [{"role": "user", "content": "Hello"}]
ORIGIN = "x-claudegate-origin"
VERSION = {"anthropic-version": "2023-06-01"}


def clients(stack: Stack) -> tuple[anthropic.Anthropic, anthropic.Anthropic]:
    return (
        anthropic.Anthropic(base_url=stack.url, api_key=stack.org_a.key, max_retries=0),
        anthropic.Anthropic(base_url=stack.simulator_url, api_key=f"sk-{uuid.uuid4().hex}", max_retries=0),
    )


def raised(client: anthropic.Anthropic, **params: Any) -> anthropic.APIStatusError:
    with pytest.raises(anthropic.APIStatusError) as caught:
        client.messages.create(**{"model": MODEL, "max_tokens": 50, "messages": HELLO, **params})
    return caught.value


def fault(kind: str) -> dict[str, Any]:
    return {"extra_headers": {"x-simulator-fault": kind}}


@pytest.mark.parametrize(
    ("params", "status", "exception"),
    [
        pytest.param(
            {"extra_body": {"temperature": 5.0}}, 400, anthropic.BadRequestError, id="400-validation"
        ),
        pytest.param({"messages": []}, 400, anthropic.BadRequestError, id="400-no-messages"),
        pytest.param({"model": "claude-nonexistent-9"}, 404, anthropic.NotFoundError, id="404-model"),
        pytest.param(
            {"extra_headers": {"anthropic-beta": "no such beta"}},
            400,
            anthropic.BadRequestError,
            id="400-beta",
        ),
        pytest.param(fault("rate_limit:3"), 429, anthropic.RateLimitError, id="429"),
        pytest.param(fault("server_error"), 500, anthropic.InternalServerError, id="500"),
        pytest.param(fault("timeout"), 504, anthropic.GatewayTimeoutError, id="504"),
        pytest.param(fault("overloaded"), 529, anthropic.OverloadedError, id="529"),
        pytest.param(fault("billing"), 402, anthropic.PaymentRequiredError, id="402"),
        pytest.param(fault("permission"), 403, anthropic.PermissionDeniedError, id="403"),
        pytest.param(
            fault("midstream_error:overloaded_error"), 529, anthropic.OverloadedError, id="midstream-json"
        ),
    ],
)
def test_upstream_errors_raise_the_same_exception(
    stack: Stack, params: dict[str, Any], status: int, exception: type[anthropic.APIStatusError]
) -> None:
    gateway, direct = clients(stack)
    through, straight = raised(gateway, **params), raised(direct, **params)
    assert type(through) is type(straight) is exception
    assert through.status_code == straight.status_code == status
    assert through.body["error"] == straight.body["error"]  # type: ignore[index]
    # The upstream made this error: the gateway relays it, with the upstream's request id, as its own.
    assert ORIGIN not in through.response.headers
    assert through.request_id is not None
    assert through.request_id.startswith("req_011C")
    if status == 429:
        assert through.response.headers["retry-after"] == straight.response.headers["retry-after"] == "3"
        assert "anthropic-ratelimit-requests-limit" in through.response.headers


@pytest.mark.parametrize(
    "change", [{"max_tokens": -1}, {"max_tokens": "20"}, {"model": 4}, {"stream": "yes"}], ids=str
)
def test_a_wrong_field_is_refused_before_admission_in_the_upstreams_words(
    stack: Stack, change: dict[str, Any]
) -> None:
    """The fields the gateway reads to admit a call are checked before it is admitted (nothing is counted
    against the key's limits), and refused with the error the upstream would have given."""
    gateway, direct = clients(stack)
    through, straight = raised(gateway, extra_body=change), raised(direct, extra_body=change)
    assert type(through) is type(straight) is anthropic.BadRequestError
    assert through.body["error"] == straight.body["error"]  # type: ignore[index]
    assert through.response.headers[ORIGIN] == "gateway"


def test_oversize_body_is_413(stack: Stack) -> None:
    gateway, direct = clients(stack)
    huge = [{"role": "user", "content": "x" * (33 * 1024 * 1024)}]
    through, straight = raised(gateway, messages=huge), raised(direct, messages=huge)
    assert type(through) is type(straight) is anthropic.ContentTooLargeError
    assert through.body["error"]["type"] == straight.body["error"]["type"] == "request_too_large"  # type: ignore[index]
    # The gateway refused it without sending 33 MB upstream.
    assert through.response.headers[ORIGIN] == "gateway"


def test_midstream_error_raises_the_same_exception(stack: Stack) -> None:
    gateway, direct = clients(stack)
    caught = []
    for client in (gateway, direct):
        received: list[str] = []
        with pytest.raises(anthropic.APIStatusError) as error:  # noqa: PT012 - the error comes while iterating
            events = client.messages.create(
                model=MODEL,
                max_tokens=400,
                messages=HELLO,
                stream=True,
                extra_headers={"x-simulator-fault": "midstream_error:overloaded_error"},
            )
            received.extend(event.type for event in events)
        assert "content_block_delta" in received
        caught.append(error.value)
    assert type(caught[0]) is type(caught[1])
    assert caught[0].body == caught[1].body


# -- Keys -------------------------------------------------------------------------------------------------


def test_missing_key_is_401_from_the_gateway(stack: Stack) -> None:
    response = httpx2.post(f"{stack.url}/v1/messages", json={"model": MODEL}, headers=VERSION)
    assert response.status_code == 401
    assert response.headers[ORIGIN] == "gateway"
    assert response.json()["type"] == "error"
    assert response.json()["error"]["type"] == "authentication_error"
    direct = httpx2.post(f"{stack.simulator_url}/v1/messages", json={"model": MODEL}, headers=VERSION)
    assert direct.status_code == 401
    assert direct.json()["error"]["type"] == "authentication_error"


@pytest.mark.parametrize("which", ["unknown", "malformed", "revoked", "upstream-key"])
@pytest.mark.parametrize("route", ["messages", "count_tokens", "models", "batches"])
def test_bad_keys_are_401_from_the_gateway(stack: Stack, which: str, route: str) -> None:
    key = {
        "unknown": "cg-" + "A" * 40,
        "malformed": "not-a-key",
        "revoked": stack.revoked_key,
        "upstream-key": "sk-test",  # the gateway's own upstream key is no gateway key
    }[which]
    client = anthropic.Anthropic(base_url=stack.url, api_key=key, max_retries=0)
    calls: dict[str, Callable[[], object]] = {
        "messages": lambda: client.messages.create(model=MODEL, max_tokens=20, messages=HELLO),
        "count_tokens": lambda: client.messages.count_tokens(model=MODEL, messages=HELLO),
        "models": client.models.list,
        "batches": client.messages.batches.list,
    }
    with pytest.raises(anthropic.AuthenticationError) as caught:
        calls[route]()
    assert caught.value.response.headers[ORIGIN] == "gateway"
    assert caught.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]


def test_bearer_token_works_like_x_api_key(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    client = anthropic.Anthropic(base_url=stack.url, auth_token=stack.org_a.key, max_retries=0)
    message = client.messages.create(model=MODEL, max_tokens=50, messages=HELLO)
    assert message.content
    assert client.messages.count_tokens(model=MODEL, messages=HELLO).input_tokens > 0


# -- What the gateway answers itself ----------------------------------------------------------------------


def gateway_error(response: httpx2.Response, status: int, error_type: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers[ORIGIN] == "gateway"
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == error_type
    assert body["error"]["message"]
    assert body["request_id"] == response.headers["x-claudegate-request-id"]


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/messages/count_tokens", "/v1/messages/batches"])
@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        pytest.param(b'{"model": "claude', "application/json", id="broken-json"),
        pytest.param(b"\xff\xfe\x00", "application/json", id="not-utf8"),
        pytest.param(b"[1, 2]", "application/json", id="not-an-object"),
        pytest.param(b"", "application/json", id="empty"),
        pytest.param(b"model=claude", "application/x-www-form-urlencoded", id="form"),
        pytest.param(b'{"model": "claude-sonnet-4-6"}', "text/plain", id="text-plain"),
    ],
)
def test_unreadable_bodies_get_the_gateways_400(
    stack: Stack, path: str, body: bytes, content_type: str
) -> None:
    headers = {"x-api-key": stack.org_a.key, "content-type": content_type, **VERSION}
    gateway_error(httpx2.post(stack.url + path, content=body, headers=headers), 400, "invalid_request_error")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v2/messages"),
        ("GET", "/"),
        ("POST", "/v1/messages/batches/msgbatch_x/unknown"),
        ("DELETE", "/v1/complete/../../etc/passwd"),
    ],
)
def test_unknown_routes_get_the_gateways_404(stack: Stack, method: str, path: str) -> None:
    response = httpx2.request(method, stack.url + path, headers={"x-api-key": stack.org_a.key, **VERSION})
    gateway_error(response, 404, "not_found_error")


def test_wrong_method_is_a_405_like_the_simulators_never_a_500(stack: Stack) -> None:
    headers = {"x-api-key": stack.org_a.key, **VERSION}
    for method, path in (("GET", "/v1/messages"), ("PUT", "/v1/messages/batches"), ("POST", "/v1/models")):
        response = httpx2.request(method, stack.url + path, headers=headers)
        assert response.status_code == 405
        assert response.headers[ORIGIN] == "gateway"
        assert response.json()["error"]["type"] == "invalid_request_error"
        assert f"Method {method} is not allowed on {path}; use" in response.json()["error"]["message"]
        direct = httpx2.request(method, stack.simulator_url + path, headers=headers)
        assert direct.status_code == 405


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/console/static/missing.js", 404),
        ("POST", "/console/static/console.js", 405),
        ("GET", "/admin", 404),
        ("POST", "/health", 405),
        ("DELETE", "/openapi.json", 405),
    ],
)
def test_paths_beside_the_api_answer_in_its_envelope_never_a_500(
    stack: Stack, method: str, path: str, status: int
) -> None:
    response = httpx2.request(method, stack.url + path, headers={"authorization": "Bearer not-a-token"})
    assert response.status_code == status, response.text
    error_type = "not_found_error" if status == 404 else "invalid_request_error"
    assert response.json()["error"]["type"] == error_type


def test_batch_of_another_shape_is_not_found(stack: Stack) -> None:
    client = anthropic.Anthropic(base_url=stack.url, api_key=stack.org_a.key, max_retries=0)
    with pytest.raises(anthropic.NotFoundError) as caught:
        client.messages.batches.retrieve("msgbatch_does_not_exist")
    assert caught.value.response.headers[ORIGIN] == "gateway"


# -- Pass-through ------------------------------------------------------------------------------------------


def test_upstream_headers_reach_the_client(stack: Stack) -> None:
    gateway, _ = clients(stack)
    raw = gateway.messages.with_raw_response.create(model=MODEL, max_tokens=50, messages=HELLO)
    headers = raw.headers
    assert headers["request-id"].startswith("req_011C")
    assert raw.parse()._request_id == headers["request-id"]
    assert headers["x-claudegate-request-id"].startswith("req_cg_")
    for kind in ("requests", "input-tokens", "output-tokens", "tokens"):
        for part in ("limit", "remaining", "reset"):
            assert f"anthropic-ratelimit-{kind}-{part}" in headers
    assert ORIGIN not in headers

    with gateway.messages.with_streaming_response.create(
        model=MODEL,
        max_tokens=50,
        messages=HELLO,
        stream=True,
    ) as streamed:
        assert streamed.headers["request-id"].startswith("req_011C")
        assert streamed.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert "anthropic-ratelimit-tokens-remaining" in streamed.headers
        assert b"event: message_stop" in streamed.read()


def test_connectivity_check_needs_no_key(stack: Stack) -> None:
    """Claude Code's first call: ``HEAD /api/hello`` without any key."""
    head = httpx2.head(f"{stack.url}/api/hello")
    assert head.status_code == 200
    assert ORIGIN not in head.headers
    get = httpx2.get(f"{stack.url}/api/hello")
    assert get.status_code == 200


CLAUDE_CODE_BETAS = [
    "claude-code-20250219",
    "interleaved-thinking-2025-05-14",
    "context-management-2025-06-27",
    "thinking-token-count-2026-05-13",
    "advanced-tool-use-2025-11-20",
    "effort-2025-11-24",
]


def claude_code_request() -> dict[str, Any]:
    """A request shaped like Claude Code's (reference section 11), trimmed to a few KB."""
    schema = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": {"command": {"type": "string", "description": "The command to run"}},
        "required": ["command"],
        "additionalProperties": False,
    }
    return {
        "model": MODEL,
        "max_tokens": 32000,
        "stream": True,
        "thinking": {"type": "adaptive", "display": "omitted"},
        "output_config": {"effort": "high"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "metadata": {"user_id": '{"device_id":"d1","session_id":"s1"}'},
        "system": [
            {"type": "text", "text": "You are Claude Code."},
            {
                "type": "text",
                "text": "Tools are described below. " * 40,
                "cache_control": {"type": "ephemeral"},
            },
            {"type": "text", "text": "Be concise.", "cache_control": {"type": "ephemeral"}},
        ],
        "tools": [
            {"name": "Bash", "description": "Run a shell command", "input_schema": schema},
            {"name": "Read", "description": "Read a file", "input_schema": schema, "defer_loading": True},
        ],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "List the files here."}]}],
    }


def test_claude_code_beta_requests_work(stack: Stack) -> None:
    headers = {
        "x-api-key": stack.org_a.key,
        "anthropic-beta": ",".join(CLAUDE_CODE_BETAS),
        "anthropic-dangerous-direct-browser-access": "true",
        "x-app": "cli",
        "accept-encoding": "gzip, deflate, br, zstd",
        **VERSION,
    }
    body = claude_code_request()
    with httpx2.stream("POST", f"{stack.url}/v1/messages?beta=true", json=body, headers=headers) as response:
        assert response.status_code == 200, response.read()
        # The gateway answers in the best coding offered, zstd; httpx decodes zstd only with backports.zstd
        # on this Python, so the body is read raw and decoded here.
        assert response.headers["content-encoding"] == "zstd"
        raw = b"".join(response.iter_raw())
    text = zstandard.ZstdDecompressor().decompressobj().decompress(raw)
    assert text.startswith(b"event: message_start")
    assert b"event: message_stop" in text

    # The SDK's beta namespace sends the same query string; replies match the upstream's.
    gateway, direct = clients(stack)
    params: dict[str, Any] = {
        "model": MODEL,
        "max_tokens": 300,
        "messages": HELLO,
        "betas": CLAUDE_CODE_BETAS,
    }
    through = gateway.beta.messages.create(**params)
    straight = direct.beta.messages.create(**params)
    assert through.model_dump(exclude={"id"}) == straight.model_dump(exclude={"id"})
    with gateway.beta.messages.stream(**params) as stream:
        final = stream.get_final_message()
    assert final.content[0].text == through.content[0].text  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "content_type", ["Application/JSON", "application/json; charset=utf-8", "application/json;charset=UTF-8"]
)
def test_json_content_type_is_matched_as_a_media_type(stack: Stack, content_type: str) -> None:
    headers = {"x-api-key": stack.org_a.key, "content-type": content_type, **VERSION}
    body = {"model": MODEL, "max_tokens": 20, "messages": HELLO}
    response = httpx2.post(f"{stack.url}/v1/messages", content=orjson.dumps(body), headers=headers)
    assert response.status_code == 200, response.text


def test_json_lookalike_content_type_is_refused(stack: Stack) -> None:
    headers = {"x-api-key": stack.org_a.key, "content-type": "application/jsonl", **VERSION}
    body = orjson.dumps({"model": MODEL, "max_tokens": 20, "messages": HELLO})
    gateway_error(
        httpx2.post(f"{stack.url}/v1/messages", content=body, headers=headers), 400, "invalid_request_error"
    )


# -- Bad input ---------------------------------------------------------------------------------------------


@settings(
    max_examples=60,  # a real call per example: enough to cross every kind of field, bounded in time
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(path=st.sampled_from(PATHS), data=st.data(), drop=st.booleans())
def test_bad_input_through_the_gateway_is_a_4xx_never_a_5xx(
    stack: Stack, path: tuple[str | int, ...], data: st.DataObject, drop: bool
) -> None:
    value = data.draw(st.sampled_from(look_alikes(at(path))) | JSON_VALUES)
    body = rewritten(path, value, drop)
    headers = {**FUZZ_HEADERS, "x-api-key": stack.org_a.key, "x-simulator-reply-tokens": "5"}
    response = httpx2.post(f"{stack.url}/v1/messages", content=json.dumps(body), headers=headers, timeout=30)
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert response.json()["type"] == "error"


@pytest.mark.parametrize("value", ["99999999999999999999999", "0", "-5", "soon"])
def test_a_deadline_header_out_of_range_is_not_a_server_error(stack: Stack, value: str) -> None:
    headers = {"x-api-key": stack.org_a.key, "x-claudegate-deadline-ms": value, **VERSION}
    body = {"model": MODEL, "max_tokens": 20, "messages": HELLO}
    response = httpx2.post(f"{stack.url}/v1/messages", json=body, headers=headers)
    if value.isdigit() and int(value) > 0:
        assert response.status_code == 200, response.text
    else:
        gateway_error(response, 400, "invalid_request_error")

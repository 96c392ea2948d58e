"""Every error the simulator answers, as the official SDK surfaces it: exception class, status, error type,
request id and a message that names what to fix; faults on demand; retries the SDK makes on its own."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx2
import orjson
import pytest

from claudegate.simulator.settings import FaultRate
from tests.integration.simulator_support import (
    HELLO,
    MODEL,
    async_client,
    ledger,
    simulator,
    sync_client,
    unique_key,
)

FAULT = "x-simulator-fault"
# 2.x names the 402 class; older SDKs surface 402 as a plain APIStatusError.
PAYMENT_REQUIRED: type[anthropic.APIStatusError] = getattr(
    anthropic, "PaymentRequiredError", anthropic.APIStatusError
)


@pytest.fixture
def client(simulator_url: str) -> Iterator[anthropic.Anthropic]:
    with sync_client(simulator_url) as sdk:
        yield sdk


def read_stream(
    client: anthropic.Anthropic, headers: dict[str, str], received: list[str], max_tokens: int = 500
) -> None:
    """Stream a reply into ``received`` until it ends, or fails."""
    with client.messages.stream(
        model=MODEL, max_tokens=max_tokens, messages=HELLO, extra_headers=headers
    ) as s:
        received.extend(s.text_stream)


async def read_stream_async(aclient: anthropic.AsyncAnthropic, headers: dict[str, str]) -> None:
    async with aclient.messages.stream(
        model=MODEL, max_tokens=500, messages=HELLO, extra_headers=headers
    ) as s:
        async for _ in s.text_stream:
            pass


def call_with_fault(client: anthropic.Anthropic, fault: str, *, stream: bool) -> None:
    if stream:
        read_stream(client, {FAULT: fault}, [], max_tokens=5)
    else:
        client.messages.create(model=MODEL, max_tokens=5, messages=HELLO, extra_headers={FAULT: fault})


def assert_envelope(error: anthropic.APIStatusError, status: int, error_type: str) -> None:
    assert error.status_code == status
    assert error.type == error_type
    assert isinstance(error.body, dict)
    assert error.body["type"] == "error"
    assert error.body["error"]["type"] == error_type
    assert error.request_id is not None
    assert error.request_id.startswith("req_")
    assert error.body["request_id"] == error.request_id


# -- 400 --------------------------------------------------------------------------------------------------

BAD_REQUESTS: list[tuple[str, dict[str, Any], str]] = [
    ("negative-max-tokens", {"max_tokens": -1}, "max_tokens: Input should be greater than or equal to 0"),
    # An explicit timeout lifts the SDK's own "streaming is required" check, so the request reaches the API.
    ("max-tokens-above-model", {"max_tokens": 10_000_000, "timeout": 30}, "max_tokens: 10000000 > 128000"),
    # SDK 2.x dropped the sampling parameters from create(); clients still send them.
    (
        "temperature",
        {"extra_body": {"temperature": 1.5}},
        "temperature: Input should be less than or equal to 1",
    ),
    (
        "role",
        {"messages": [{"role": "system", "content": "x"}]},
        "messages.0.role: Input should be 'user' or",
    ),
    ("no-messages", {"messages": []}, "messages: at least one message is required"),
    (
        "block-type",
        {"messages": [{"role": "user", "content": [{"type": "txt", "text": "x"}]}]},
        "messages.0.content",
    ),
    (
        "missing-text",
        {"messages": [{"role": "user", "content": [{"type": "text"}]}]},
        "messages.0.content.0.text: Field required",
    ),
    ("misspelt-param", {"extra_body": {"temprature": 0.5}}, "temprature: Extra inputs are not permitted"),
    (
        "tool-choice-unknown",
        {
            "tools": [{"name": "a", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "tool", "name": "b"},
        },
        "tool_choice.tool.name",
    ),
    (
        "tool-schema-type",
        {"tools": [{"name": "a", "input_schema": {"type": "array"}}]},
        "tools.0.custom.input_schema.type",
    ),
    (
        "orphan-tool-result",
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": "toolu_x", "content": "1"}],
                }
            ]
        },
        "tool_use_id",
    ),
    (
        "thinking-budget",
        {"thinking": {"type": "enabled", "budget_tokens": 100}},
        "thinking.enabled.budget_tokens",
    ),
    (
        "cache-ttl",
        {"system": [{"type": "text", "text": "x", "cache_control": {"type": "ephemeral", "ttl": "2h"}}]},
        "system.0.cache_control.ttl",
    ),
]


@pytest.mark.parametrize(
    ("overrides", "message"), [c[1:] for c in BAD_REQUESTS], ids=[c[0] for c in BAD_REQUESTS]
)
def test_bad_request_raises_bad_request_error_naming_the_field(
    client: anthropic.Anthropic, overrides: dict[str, Any], message: str
) -> None:
    request: dict[str, Any] = {"model": MODEL, "max_tokens": 100, "messages": HELLO, **overrides}
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(**request)
    assert_envelope(caught.value, 400, "invalid_request_error")
    assert message in caught.value.body["error"]["message"]


def test_bad_headers_and_bodies_are_400_too(simulator_url: str, client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError, match="anthropic-version"):
        client.messages.create(
            model=MODEL, max_tokens=5, messages=HELLO, extra_headers={"anthropic-version": "v1"}
        )
    with pytest.raises(anthropic.BadRequestError, match="Unsupported beta header: no_such_beta"):
        client.beta.messages.create(model=MODEL, max_tokens=5, messages=HELLO, betas=["no_such_beta"])
    with pytest.raises(anthropic.BadRequestError, match="x-simulator-fault: unknown fault 'meltdown'"):
        client.messages.create(model=MODEL, max_tokens=5, messages=HELLO, extra_headers={FAULT: "meltdown"})

    response = httpx2.post(
        f"{simulator_url}/v1/messages",
        content=b'{"model": "claude-sonnet-4-6", "max_tokens": ',
        headers={"x-api-key": "k", "anthropic-version": "2023-06-01", "content-type": "application/json"},
    )
    assert response.status_code == 400
    assert "error parsing the body" in response.json()["error"]["message"]


async def test_async_client_raises_the_same_classes(simulator_url: str) -> None:
    async with async_client(simulator_url) as aclient:
        with pytest.raises(anthropic.BadRequestError):
            await aclient.messages.create(model=MODEL, max_tokens=-1, messages=HELLO)
        with pytest.raises(anthropic.OverloadedError):
            await aclient.messages.create(
                model=MODEL, max_tokens=5, messages=HELLO, extra_headers={FAULT: "overloaded"}
            )
        with pytest.raises(anthropic.NotFoundError):
            await aclient.models.retrieve("claude-nope")


# -- 401, 404, 405, 413 -----------------------------------------------------------------------------------


def test_missing_api_key_is_401(simulator_url: str) -> None:
    response = httpx2.post(
        f"{simulator_url}/v1/messages",
        json={"model": MODEL, "max_tokens": 5, "messages": HELLO},
        headers={"anthropic-version": "2023-06-01"},
    )
    assert response.status_code == 401
    body = response.json()
    assert body["type"] == "error"
    assert body["error"] == {"type": "authentication_error", "message": "x-api-key header is required"}
    assert response.headers["request-id"] == body["request_id"]


def test_bearer_token_is_accepted_like_an_api_key(simulator_url: str) -> None:
    with anthropic.Anthropic(
        base_url=simulator_url, auth_token="oauth-token", api_key=None, max_retries=0
    ) as client:
        assert client.messages.create(model=MODEL, max_tokens=5, messages=HELLO).usage.output_tokens == 5


@pytest.fixture(scope="module")
def restricted_url() -> Iterator[str]:
    with simulator(api_keys=frozenset({"sk-good"}), max_body_bytes=4096) as url:
        yield url


def test_wrong_api_key_raises_authentication_error(restricted_url: str) -> None:
    with (
        sync_client(restricted_url, api_key="sk-bad") as client,
        pytest.raises(anthropic.AuthenticationError) as caught,
    ):
        client.messages.create(model=MODEL, max_tokens=5, messages=HELLO)
    assert_envelope(caught.value, 401, "authentication_error")
    with sync_client(restricted_url, api_key="sk-good") as client:
        assert client.messages.create(model=MODEL, max_tokens=5, messages=HELLO).content


def test_body_over_the_limit_raises_413(restricted_url: str) -> None:
    with (
        sync_client(restricted_url, api_key="sk-good") as client,
        pytest.raises(anthropic.APIStatusError) as caught,
    ):
        client.messages.create(
            model=MODEL, max_tokens=5, messages=[{"role": "user", "content": "x" * 10_000}]
        )
    assert isinstance(caught.value, anthropic.ContentTooLargeError)  # the SDK's class for 413
    assert_envelope(caught.value, 413, "request_too_large")


def test_unknown_model_and_route_raise_not_found(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as caught:
        client.messages.create(model="claude-nope-9", max_tokens=5, messages=HELLO)
    assert_envelope(caught.value, 404, "not_found_error")
    assert "claude-nope-9" in caught.value.message

    with pytest.raises(anthropic.NotFoundError) as caught:
        client.get("/v1/no/such/route", cast_to=object)
    assert_envelope(caught.value, 404, "not_found_error")

    with pytest.raises(anthropic.NotFoundError):
        client.models.retrieve("claude-nope-9")
    with pytest.raises(anthropic.NotFoundError):
        client.messages.batches.retrieve("msgbatch_01nothere")


def test_wrong_method_gets_an_error_envelope(simulator_url: str) -> None:
    response = httpx2.get(f"{simulator_url}/v1/messages", headers={"x-api-key": "k"})
    assert response.status_code == 405
    assert response.json()["error"]["type"] == "invalid_request_error"


# -- faults as error responses ----------------------------------------------------------------------------

FAULT_ERRORS: list[tuple[str, type[anthropic.APIStatusError], int, str]] = [
    ("billing", PAYMENT_REQUIRED, 402, "billing_error"),
    ("permission", anthropic.PermissionDeniedError, 403, "permission_error"),
    ("rate_limit:3", anthropic.RateLimitError, 429, "rate_limit_error"),
    ("server_error", anthropic.InternalServerError, 500, "api_error"),
    ("timeout", anthropic.InternalServerError, 504, "timeout_error"),
    ("overloaded", anthropic.OverloadedError, 529, "overloaded_error"),
]


@pytest.mark.parametrize(
    ("fault", "error_class", "status", "error_type"), FAULT_ERRORS, ids=[f[0] for f in FAULT_ERRORS]
)
@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_fault_raises_the_sdk_class_for_its_status(
    client: anthropic.Anthropic,
    fault: str,
    error_class: type[anthropic.APIStatusError],
    status: int,
    error_type: str,
    stream: bool,
) -> None:
    with pytest.raises(error_class) as caught:
        call_with_fault(client, fault, stream=stream)
    assert type(caught.value) is error_class or error_class is anthropic.InternalServerError
    assert_envelope(caught.value, status, error_type)
    if status == 429:
        assert caught.value.response.headers["retry-after"] == "3"
        assert caught.value.response.headers["anthropic-ratelimit-requests-limit"]
    if status == 504:
        assert isinstance(
            caught.value, getattr(anthropic, "GatewayTimeoutError", anthropic.InternalServerError)
        )


def test_sdk_waits_for_retry_after_then_succeeds(simulator_url: str) -> None:
    key = unique_key()
    with sync_client(simulator_url, api_key=key, max_retries=2) as client:
        started = time.perf_counter()
        message = client.messages.create(
            model=MODEL,
            max_tokens=20,
            messages=HELLO,
            extra_headers={FAULT: "rate_limit:1;times=1"},
        )
        elapsed = time.perf_counter() - started
    assert message.content
    assert elapsed >= 0.95  # the SDK slept the 1 s the 429 asked for
    assert elapsed < 5
    charged = ledger(simulator_url, key)
    assert [(e["status"], e["error_type"]) for e in charged] == [(429, "rate_limit_error"), (200, None)]
    assert charged[0]["output_tokens"] == 0
    assert charged[1]["output_tokens"] == message.usage.output_tokens
    assert charged[1]["request_id"] == message._request_id


async def test_async_sdk_retries_overloaded_with_backoff(simulator_url: str) -> None:
    key = unique_key()
    async with async_client(simulator_url, api_key=key, max_retries=2) as aclient:
        message = await aclient.messages.create(
            model=MODEL,
            max_tokens=20,
            messages=HELLO,
            extra_headers={FAULT: "overloaded;times=1"},
        )
    assert message.content
    assert [e["status"] for e in ledger(simulator_url, key)] == [529, 200]


def test_slow_fault_delays_the_reply(client: anthropic.Anthropic) -> None:
    started = time.perf_counter()
    client.messages.create(model=MODEL, max_tokens=5, messages=HELLO, extra_headers={FAULT: "slow:0.2"})
    assert time.perf_counter() - started >= 0.2


# -- faults during a reply -------------------------------------------------------------------------------


@pytest.mark.parametrize("error_type", ["overloaded_error", "api_error"])
def test_midstream_error_reaches_the_sdk_after_some_text(simulator_url: str, error_type: str) -> None:
    key = unique_key()
    received: list[str] = []
    with sync_client(simulator_url, api_key=key) as client, pytest.raises(anthropic.APIStatusError) as caught:
        read_stream(client, {FAULT: f"midstream_error:{error_type}"}, received)
    assert received, "some text arrives before the error"
    error = caught.value
    assert error.status_code == 200  # the stream had already begun
    assert error.type == error_type
    assert error.body["error"]["type"] == error_type
    (entry,) = ledger(simulator_url, key)
    assert entry["completed"] is False
    assert entry["error_type"] == error_type
    assert 0 < entry["output_tokens"] <= len("".join(received))


@pytest.mark.parametrize("reply_tokens", [0, 1, 2])
def test_midstream_error_strikes_even_a_very_short_reply(simulator_url: str, reply_tokens: int) -> None:
    headers = {FAULT: "midstream_error", "x-simulator-reply-tokens": str(reply_tokens)}
    received: list[str] = []
    with sync_client(simulator_url) as client, pytest.raises(anthropic.APIStatusError) as caught:
        read_stream(client, headers, received)
    assert caught.value.type == "overloaded_error"
    assert len(received) == min(reply_tokens, 1)  # text first, when there is any


async def test_async_midstream_error_is_not_retried(simulator_url: str) -> None:
    key = unique_key()
    async with async_client(simulator_url, api_key=key, max_retries=2) as aclient:
        with pytest.raises(anthropic.APIStatusError) as caught:
            await read_stream_async(aclient, {FAULT: "midstream_error"})
    assert caught.value.type == "overloaded_error"
    assert len(ledger(simulator_url, key)) == 1


def test_midstream_error_without_a_stream_is_an_error_response(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.InternalServerError) as caught:
        client.messages.create(
            model=MODEL, max_tokens=50, messages=HELLO, extra_headers={FAULT: "midstream_error:api_error"}
        )
    assert_envelope(caught.value, 500, "api_error")


def test_dropped_connection_is_a_connection_error(simulator_url: str) -> None:
    key = unique_key()
    with sync_client(simulator_url, api_key=key) as client, pytest.raises(anthropic.APIConnectionError):
        client.messages.create(
            model=MODEL, max_tokens=50, messages=HELLO, extra_headers={FAULT: "drop_connection"}
        )
    (entry,) = ledger(simulator_url, key)
    assert entry["completed"] is False

    with sync_client(simulator_url, api_key=key, max_retries=2) as client:  # connection errors are retried
        message = client.messages.create(
            model=MODEL, max_tokens=50, messages=[{"role": "user", "content": "again"}],
            extra_headers={FAULT: "drop_connection;times=1"},
        )  # fmt: skip
    assert message.content


def test_dropped_connection_breaks_a_stream_after_some_text(simulator_url: str) -> None:
    received: list[str] = []
    # The SDK does not wrap a transport error met while iterating a stream: httpx's own error arrives.
    with (
        sync_client(simulator_url) as client,
        pytest.raises((anthropic.APIConnectionError, httpx2.TransportError)),
    ):
        read_stream(client, {FAULT: "drop_connection"}, received)
    assert received


# -- random faults -----------------------------------------------------------------------------------------


def test_random_faults_strike_at_their_rate(simulator_url: str) -> None:
    with simulator(faults=(FaultRate("overloaded", 0.5),), seed=7) as url, sync_client(url) as client:
        outcomes = []
        for _ in range(40):
            try:
                client.messages.create(model=MODEL, max_tokens=5, messages=HELLO)
                outcomes.append("ok")
            except anthropic.OverloadedError:
                outcomes.append("529")
        assert 8 <= outcomes.count("529") <= 32
        # A header still scripts a request exactly, random rates notwithstanding.
        with pytest.raises(anthropic.PermissionDeniedError):
            client.messages.create(
                model=MODEL, max_tokens=5, messages=HELLO, extra_headers={FAULT: "permission"}
            )


def test_ledger_can_be_read_and_cleared() -> None:
    with simulator() as url, sync_client(url) as client:
        before = time.time()
        client.messages.create(model=MODEL, max_tokens=5, messages=HELLO)
        after = time.time()
        entries = ledger(url)
        assert len(entries) == 1
        assert before <= entries[0]["received_at"] <= after  # when the request arrived, in Unix time
        assert httpx2.delete(f"{url}/_simulator/ledger").status_code == 204
        assert ledger(url) == []
        assert orjson.loads(httpx2.get(f"{url}/_simulator/ledger").content) == []

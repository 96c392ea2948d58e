"""describe_call: the one set of rules every front door applies to a call's body, deadline, priority,
stickiness and model policy."""

from __future__ import annotations

import dataclasses
import json
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from claudegate.config import Settings
from claudegate.errors import InvalidRequestError, RequestTooLargeError
from claudegate.keys import Identity, TenantSettings
from claudegate.pipeline.describe import (
    LONGEST_DEADLINE_S,
    MAX_BODY_BYTES,
    bare_call,
    describe_call,
    requested_deadline,
)
from claudegate.pipeline.policies import DEFAULT_POLICIES, PolicyBook
from claudegate.pipeline.request import CallRequest
from claudegate.pipeline.routing import CONVERSATION_HEADER, DEADLINE_HEADER
from claudegate.pipeline.sink import RawHeaders

NOW = 1_000.0
VALID: dict[str, Any] = {
    "model": "claude-sonnet-4-6",
    "max_tokens": 20,
    "messages": [{"role": "user", "content": "Hi"}],
}


@pytest.fixture(autouse=True)
def frozen_monotonic(monkeypatch: pytest.MonkeyPatch) -> None:
    """Deadlines are read as offsets from a fixed now."""
    monkeypatch.setattr("claudegate.pipeline.routing.time", SimpleNamespace(monotonic=lambda: NOW))


def identity(*, deadline_ms: int | None = None, priority: int = 0) -> Identity:
    return Identity(
        org_id=1,
        org_name="acme",
        user_id=None,
        user_name=None,
        key_id=7,
        key_name="k",
        settings=TenantSettings(deadline_ms=deadline_ms, priority=priority),
    )


def describe(
    fields: dict[str, Any],
    *,
    who: Identity | None = None,
    settings: Settings | None = None,
    headers: RawHeaders | None = None,
    **options: Any,
) -> CallRequest:
    return describe_call(
        fields,
        json.dumps(fields).encode(),  # the standard library's: it writes integers of any size
        identity=who or identity(),
        settings=settings or Settings(default_deadline_s=30.0),
        policies=PolicyBook(DEFAULT_POLICIES),
        upstreams=options.pop("upstreams", 1),
        headers=headers or [],
        **options,
    )


def test_a_valid_body_is_described_as_sent() -> None:
    call = describe({**VALID, "stream": True}, request_id="req_1")
    assert (call.model, call.max_tokens, call.stream, call.request_id) == (
        "claude-sonnet-4-6",
        20,
        True,
        "req_1",
    )
    assert orjson.loads(call.body) == {**VALID, "stream": True}
    assert (call.policy, call.fallbacks, call.sticky_key, call.api) == (None, (), None, "anthropic")


def test_a_call_without_a_request_id_gets_a_new_one() -> None:
    first, second = describe(VALID), describe(VALID)
    assert first.request_id.startswith("req_cg_")
    assert first.request_id != second.request_id


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"model": None}, "model: Input should be a valid string"),
        ({"model": ""}, "model: Input should be a valid string"),
        ({"model": 4}, "model: Input should be a valid string"),
        ({"max_tokens": "20"}, "max_tokens: Input should be a valid integer"),
        ({"max_tokens": 20.0}, "max_tokens: Input should be a valid integer"),
        ({"max_tokens": True}, "max_tokens: Input should be a valid integer"),
        ({"max_tokens": 2**64}, "max_tokens: Input should be a valid integer"),
        ({"max_tokens": -1}, "max_tokens: Input should be greater than or equal to 0"),
        ({"stream": "true"}, "stream: Input should be a valid boolean"),
    ],
)
def test_a_wrong_field_is_refused_in_the_apis_words(change: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequestError, match=f"^{message}$"):
        describe({**VALID, **change})


@pytest.mark.parametrize("missing", ["model", "max_tokens"])
def test_a_missing_field_is_refused(missing: str) -> None:
    with pytest.raises(InvalidRequestError, match=f"^{missing}: Field required$"):
        describe({name: value for name, value in VALID.items() if name != missing})


def test_a_body_over_the_limit_is_refused_as_too_large() -> None:
    fields = {**VALID, "system": "x" * MAX_BODY_BYTES}
    with pytest.raises(RequestTooLargeError):
        describe(fields)


def test_a_nul_is_refused_only_in_a_body_that_will_be_stored() -> None:
    fields = {**VALID, "messages": [{"role": "user", "content": "a\x00b"}]}
    assert describe(fields).model == "claude-sonnet-4-6"
    with pytest.raises(InvalidRequestError, match="NUL"):
        describe(fields, stored=True)


def test_the_deadline_is_the_callers_then_the_keys_then_the_settings() -> None:
    assert describe(VALID).deadline == NOW + 30.0
    assert describe(VALID, who=identity(deadline_ms=2_500)).deadline == NOW + 2.5
    assert describe(VALID, who=identity(deadline_ms=2_500), deadline_s=4.0).deadline == NOW + 4.0
    header = [(DEADLINE_HEADER, b"1500")]
    assert describe(VALID, who=identity(deadline_ms=2_500), headers=header).deadline == NOW + 1.5
    # The header the caller sent counts even when it is not forwarded (OpenAI's door, the chat API).
    assert describe(VALID, asked=header).deadline == NOW + 1.5


def test_a_deadline_longer_than_a_day_is_a_day() -> None:
    assert describe(VALID, deadline_s=float("inf")).deadline == NOW + LONGEST_DEADLINE_S
    huge = [(DEADLINE_HEADER, b"99999999999999999999999")]
    assert describe(VALID, headers=huge).deadline == NOW + LONGEST_DEADLINE_S


@pytest.mark.parametrize("value", [b"0", b"-5", b"soon", b"1.5"])
def test_a_bad_deadline_header_is_refused(value: bytes) -> None:
    with pytest.raises(
        InvalidRequestError, match="x-claudegate-deadline-ms: expected a positive whole number"
    ):
        describe(VALID, headers=[(DEADLINE_HEADER, value)])


@pytest.mark.parametrize("value", [0, -1.0, float("nan"), True, "5"])
def test_a_bad_deadline_argument_is_refused(value: Any) -> None:
    with pytest.raises(InvalidRequestError, match="deadline_s: expected a positive number of seconds"):
        requested_deadline(value, [])


def test_the_priority_is_the_callers_else_the_keys() -> None:
    assert describe(VALID, who=identity(priority=3)).priority == 3
    assert describe(VALID, who=identity(priority=3), priority=9).priority == 9


def test_a_policy_name_is_sent_as_its_first_model_with_the_rest_as_fallbacks() -> None:
    call = describe({**VALID, "model": "deep"})
    assert (call.policy, call.model, call.fallbacks) == ("deep", "claude-opus-4-6", ("claude-sonnet-4-6",))
    assert orjson.loads(call.body)["model"] == "claude-opus-4-6"


def test_stickiness_is_kept_only_with_several_upstreams() -> None:
    asked = [(CONVERSATION_HEADER, b"conv-1")]
    settings = Settings(sticky="conversation")
    assert describe(VALID, settings=settings, headers=asked).sticky_key is None
    assert describe(VALID, settings=settings, headers=asked, upstreams=2).sticky_key == "conv-1"
    assert describe(VALID, settings=settings, sticky="chat:1", upstreams=2).sticky_key == "chat:1"
    assert describe(VALID, settings=settings, sticky="chat:1").sticky_key is None


def test_a_described_call_is_frozen() -> None:
    call = describe(VALID)
    with pytest.raises(dataclasses.FrozenInstanceError):
        call.model = "other"  # type: ignore[misc]


def test_a_bare_call_is_what_a_refusal_records() -> None:
    call = bare_call(identity(), "req_2", api="openai")
    assert (call.request_id, call.body, call.model, call.api) == ("req_2", b"", None, "openai")


def test_a_bare_call_names_the_model_its_body_named() -> None:
    fields = {"model": "claude-sonnet-4-6", "max_tokens": "20"}
    call = bare_call(identity(), "req_3", fields=fields, policies=PolicyBook(DEFAULT_POLICIES))
    assert (call.model, call.policy) == ("claude-sonnet-4-6", None)


def test_a_bare_call_of_a_policy_names_the_policy_and_its_first_model() -> None:
    call = bare_call(identity(), "req_4", fields={"model": "fast"}, policies=PolicyBook(DEFAULT_POLICIES))
    assert (call.model, call.policy) == (DEFAULT_POLICIES["fast"][0], "fast")


@pytest.mark.parametrize("model", [None, 42, "", "has space", "nul\x00", "x" * 129, ["claude-sonnet-4-6"]])
def test_a_bare_call_names_no_model_when_the_body_named_none_fit_to_record(model: Any) -> None:
    call = bare_call(identity(), "req_5", fields={"model": model}, policies=PolicyBook(DEFAULT_POLICIES))
    assert (call.model, call.policy) == (None, None)

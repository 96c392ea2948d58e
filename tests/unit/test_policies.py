"""Model policies: the built-in chains, the operator's own, and what a call naming one is sent with."""

from __future__ import annotations

import orjson
import pytest

from claudegate.keys import Identity
from claudegate.pipeline.policies import DEFAULT_POLICIES, PolicyBook, apply_policy, with_model
from claudegate.pipeline.request import CallRequest
from claudegate.wire.models import default_catalog


def call_for(model: str, identity: Identity) -> CallRequest:
    body = orjson.dumps({"model": model, "max_tokens": 10, "messages": [{"role": "user", "content": "Hi"}]})
    return CallRequest(
        identity=identity, request_id="req_1", body=body, model=model, max_tokens=10, deadline=0
    )


@pytest.fixture
def identity() -> Identity:
    return Identity.__new__(Identity)  # apply_policy reads nothing of it


def test_the_operator_replaces_and_adds_policies() -> None:
    book = PolicyBook.from_settings({"deep": ["claude-opus-4-8"], "cheap": ["claude-haiku-4-5"]})
    assert book.chain("deep") == ("claude-opus-4-8",)
    assert book.chain("cheap") == ("claude-haiku-4-5",)
    assert book.chain("fast") == DEFAULT_POLICIES["fast"]
    assert book.chain("claude-sonnet-4-6") is None
    with pytest.raises(ValueError, match="names no model"):
        PolicyBook.from_settings({"empty": []})


def test_a_call_naming_a_policy_is_sent_with_its_first_model(identity: Identity) -> None:
    call = apply_policy(call_for("deep", identity), PolicyBook(DEFAULT_POLICIES))
    assert (call.policy, call.model, call.fallbacks) == ("deep", "claude-opus-4-6", ("claude-sonnet-4-6",))
    assert orjson.loads(call.body)["model"] == "claude-opus-4-6"
    assert orjson.loads(call.body)["messages"] == [{"role": "user", "content": "Hi"}]


def test_a_call_naming_a_model_is_left_as_it_is(identity: Identity) -> None:
    call = call_for("claude-sonnet-4-6", identity)
    body = call.body
    call = apply_policy(call, PolicyBook(DEFAULT_POLICIES))
    assert (call.policy, call.model, call.fallbacks, call.body) == (None, "claude-sonnet-4-6", (), body)


def test_a_policys_context_window_is_its_smallest_models() -> None:
    book = PolicyBook.from_settings({"mixed": ["claude-opus-5", "claude-sonnet-4-6"]})
    catalog = default_catalog()
    sonnet = catalog.resolve("claude-sonnet-4-6")
    assert sonnet is not None
    assert book.context_window("mixed", catalog) == sonnet.context_window
    assert book.context_window("claude-nonesuch", catalog) is None
    assert with_model(b'{"model":"a","x":1}', "b") == b'{"model":"b","x":1}'

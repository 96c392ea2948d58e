"""The models API and every model the installed SDK lists, through the SDK with strict response validation."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import anthropic
import pytest

from claudegate.wire.models import default_catalog
from tests.sdk_models import sdk_model_ids


@pytest.fixture(scope="module")
def strict(simulator_url: str) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(
        base_url=simulator_url, api_key="sk-models", max_retries=0, _strict_response_validation=True
    ) as client:
        yield client


@pytest.mark.parametrize("model", sdk_model_ids())
def test_every_sdk_model_answers_a_message_and_a_stream(strict: anthropic.Anthropic, model: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the SDK warns about deprecated models
        message = strict.messages.create(
            model=model, max_tokens=16, messages=[{"role": "user", "content": "Hello"}]
        )
        with strict.messages.stream(
            model=model, max_tokens=16, messages=[{"role": "user", "content": "Hello"}]
        ) as stream:
            final = stream.get_final_message()
    expected = default_catalog().resolve(model)
    assert expected is not None
    assert message.model == final.model == expected.id
    assert message.content
    assert final.content
    assert final.usage.output_tokens > 0


def test_the_list_has_every_sdk_model_and_the_fields_the_sdk_reads(strict: anthropic.Anthropic) -> None:
    listed = {model.id: model for model in strict.models.list(limit=1000)}
    for name in sdk_model_ids():
        info = default_catalog().resolve(name)
        assert info is not None
        assert info.id in listed
    opus = listed["claude-opus-4-5-20251101"]
    assert opus.lifecycle == "deprecated"
    assert opus.retires_at is not None
    assert opus.retires_at.year == 2027
    fable = listed["claude-fable-5-2"]
    assert fable.lifecycle == "active"
    assert fable.deprecated_at is None
    assert fable.max_input_tokens == 1_000_000
    assert fable.max_tokens == 128_000
    assert fable.capabilities is not None
    assert fable.capabilities.thinking.types.adaptive.supported
    assert fable.line == "fable"
    assert all(model.lifecycle != "retired" for model in listed.values())


def test_the_lifecycle_filter_lists_retired_models_only_when_asked(strict: anthropic.Anthropic) -> None:
    retired = [model.id for model in strict.models.list(lifecycle=["retired"])]
    assert "claude-sonnet-4-5-20250929" in retired
    assert all(strict.models.retrieve(model_id).lifecycle == "retired" for model_id in retired)
    both = {model.lifecycle for model in strict.models.list(lifecycle=["deprecated", "retired"], limit=1000)}
    assert both == {"deprecated", "retired"}


def test_a_retired_model_is_described_but_not_served(strict: anthropic.Anthropic) -> None:
    model = strict.models.retrieve("claude-sonnet-4-5")
    assert (model.id, model.lifecycle) == ("claude-sonnet-4-5-20250929", "retired")
    assert model.retires_at is not None
    assert model.deprecated_at is not None
    with pytest.raises(anthropic.NotFoundError, match="was retired on 2026-11-30"):
        strict.messages.create(
            model="claude-sonnet-4-5", max_tokens=5, messages=[{"role": "user", "content": "Hi"}]
        )


def test_an_unknown_lifecycle_stage_is_a_400(strict: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError, match="lifecycle"):
        strict.models.list(extra_query={"lifecycle[]": "sunset"})


def test_fast_mode_and_region_are_reported_in_usage(strict: anthropic.Anthropic) -> None:
    message = strict.messages.create(
        model="claude-opus-4-6",
        max_tokens=8,
        messages=[{"role": "user", "content": "Hi"}],
        speed="fast",
        inference_geo="us",
    )
    assert (message.usage.speed, message.usage.inference_geo) == ("fast", "us")


def test_the_beta_models_api_reads_the_same_catalogue(strict: anthropic.Anthropic) -> None:
    # client.beta.models sends ?beta=true and the betas header; its BetaModelInfo validates the same fields.
    listed = [model.id for model in strict.beta.models.list(betas=["some-feature-2027-01-01"])]
    assert listed == [model.id for model in strict.models.list()]
    assert strict.beta.models.retrieve("claude-opus-4-5").lifecycle == "deprecated"

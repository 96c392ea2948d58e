"""OpenAI Chat Completions requests as the Anthropic Messages requests they become."""

from __future__ import annotations

from typing import Any

import pytest

from claudegate.openai import DEFAULT_MAX_TOKENS, UnsupportedParameterError, translate_request
from claudegate.openai.request import JSON_OBJECT_INSTRUCTION
from claudegate.wire.models import default_catalog

CATALOG = default_catalog()
EPHEMERAL = {"type": "ephemeral"}


def translate(**request: Any) -> dict[str, Any]:
    request.setdefault("model", "claude-sonnet-4-6")
    request.setdefault("messages", [{"role": "user", "content": "Hi"}])
    return translate_request(request, CATALOG).body


def uncached(value: Any) -> Any:
    """The body without its automatic cache breakpoints, for comparing content."""
    if isinstance(value, dict):
        return {k: uncached(v) for k, v in value.items() if k != "cache_control"}
    if isinstance(value, list):
        return [uncached(v) for v in value]
    return value


def test_a_plain_request_keeps_its_model_and_gets_the_documented_default_max_tokens() -> None:
    body = translate(model="claude-haiku-4-5")
    assert body["model"] == "claude-haiku-4-5"  # aliases go through as they are
    assert body["max_tokens"] == DEFAULT_MAX_TOKENS
    assert uncached(body["messages"]) == [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]
    assert "stream" not in body


def test_system_and_developer_messages_become_the_system_prompt_in_order() -> None:
    body = translate(
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "developer", "content": [{"type": "text", "text": "Use English."}]},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "How are you?"},
        ]
    )
    assert uncached(body["system"]) == [
        {"type": "text", "text": "Be brief."},
        {"type": "text", "text": "Use English."},
    ]
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]


def test_automatic_breakpoints_mark_the_system_prompt_the_previous_turn_and_the_new_message() -> None:
    body = translate(
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "How are you?"},
        ]
    )
    assert body["system"][-1]["cache_control"] == EPHEMERAL
    assert body["messages"][1]["content"][-1]["cache_control"] == EPHEMERAL
    assert body["messages"][2]["content"][-1]["cache_control"] == EPHEMERAL
    assert "cache_control" not in body["messages"][0]["content"][-1]


def test_images_from_data_urls_and_web_urls() -> None:
    body = translate(
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Compare"},
                    {"type": "image_url", "image_url": {"url": "data:image/PNG;base64,AAAA"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg", "detail": "low"}},
                ],
            }
        ]
    )
    blocks = uncached(body["messages"][0]["content"])
    assert blocks[1] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"},
    }
    assert blocks[2] == {"type": "image", "source": {"type": "url", "url": "https://example.com/a.jpg"}}


def test_an_inline_pdf_becomes_a_document() -> None:
    body = translate(
        messages=[
            {
                "role": "user",
                "content": [{"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBE"}}],
            }
        ]
    )
    assert uncached(body["messages"][0]["content"]) == [
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"}}
    ]


def test_tool_calls_and_parallel_results_become_tool_use_and_one_turn_of_results() -> None:
    body = translate(
        messages=[
            {"role": "user", "content": "Weather in Oslo and Rome?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "w", "arguments": '{"c":"Oslo"}'},
                    },
                    {
                        "id": "call_2",
                        "type": "function",
                        "function": {"name": "w", "arguments": '{"c":"Rome"}'},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "cold"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "warm"}]},
            {"role": "user", "content": "Which is nicer?"},
        ]
    )
    assert uncached(body["messages"][1:]) == [
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "call_1", "name": "w", "input": {"c": "Oslo"}},
                {"type": "tool_use", "id": "call_2", "name": "w", "input": {"c": "Rome"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "cold"},
                {
                    "type": "tool_result",
                    "tool_use_id": "call_2",
                    "content": [{"type": "text", "text": "warm"}],
                },
                {"type": "text", "text": "Which is nicer?"},
            ],
        },
    ]


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        ("auto", None, {"type": "auto"}),
        ("none", None, {"type": "none"}),
        ("required", None, {"type": "any"}),
        ({"type": "function", "function": {"name": "w"}}, None, {"type": "tool", "name": "w"}),
        ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        (None, None, None),
    ],
)
def test_tool_choice(choice: Any, parallel: bool | None, expected: dict[str, Any] | None) -> None:
    request: dict[str, Any] = {
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "w",
                    "description": "Weather",
                    "parameters": {"type": "object", "properties": {"c": {"type": "string"}}},
                    "strict": True,
                },
            }
        ]
    }
    if choice is not None:
        request["tool_choice"] = choice
    if parallel is not None:
        request["parallel_tool_calls"] = parallel
    body = translate(**request)
    assert body.get("tool_choice") == expected
    assert uncached(body["tools"]) == [
        {
            "name": "w",
            "description": "Weather",
            "input_schema": {"type": "object", "properties": {"c": {"type": "string"}}},
            "strict": True,
        }
    ]


def test_sampling_stop_and_user() -> None:
    body = translate(temperature=0.2, top_p=0.9, stop="END", user="u-1", seed=7, max_completion_tokens=99)
    assert (body["temperature"], body["top_p"], body["stop_sequences"]) == (0.2, 0.9, ["END"])
    assert body["metadata"] == {"user_id": "u-1"}
    assert body["max_tokens"] == 99
    assert "seed" not in body


def test_metadata_user_id_is_used_when_user_is_absent() -> None:
    assert translate(metadata={"user_id": "u-2", "app": "x"})["metadata"] == {"user_id": "u-2"}


def test_json_schema_becomes_structured_output_and_json_object_an_instruction() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    body = translate(response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}})
    assert body["output_config"] == {"format": {"type": "json_schema", "schema": schema}}
    body = translate(response_format={"type": "json_object"})
    assert body["system"][-1]["text"] == JSON_OBJECT_INSTRUCTION
    assert "output_config" not in body


def test_reasoning_effort_on_a_model_with_adaptive_thinking() -> None:
    body = translate(model="claude-sonnet-4-6", reasoning_effort="high")
    assert body["thinking"] == {"type": "adaptive", "display": "summarized"}
    assert body["output_config"] == {"effort": "high"}
    assert "thinking" not in translate(model="claude-sonnet-4-6", reasoning_effort="none")


def test_reasoning_effort_on_an_older_model_takes_a_budget_inside_max_tokens() -> None:
    body = translate(model="claude-sonnet-4-5", reasoning_effort="medium")
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 8192}
    assert body["max_tokens"] == 8192 + DEFAULT_MAX_TOKENS
    body = translate(model="claude-sonnet-4-5", reasoning_effort="high", max_completion_tokens=5000)
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 2500}
    assert body["max_tokens"] == 5000
    with pytest.raises(UnsupportedParameterError) as raised:
        translate(model="claude-sonnet-4-5", reasoning_effort="low", max_tokens=1000)
    assert raised.value.param == "max_completion_tokens"


def test_thinking_is_left_off_for_the_reply_to_tool_results() -> None:
    body = translate(
        reasoning_effort="high",
        messages=[
            {"role": "user", "content": "Weather?"},
            {
                "role": "assistant",
                "tool_calls": [{"id": "c", "type": "function", "function": {"name": "w", "arguments": "{}"}}],
            },
            {"role": "tool", "tool_call_id": "c", "content": "sunny"},
        ],
    )
    assert "thinking" not in body


def test_stream_options() -> None:
    translated = translate_request(
        {
            "model": "claude-sonnet-4-6",
            "messages": [{"role": "user", "content": "Hi"}],
            "stream": True,
            "stream_options": {"include_usage": True},
        },
        CATALOG,
    )
    assert translated.stream
    assert translated.include_usage
    assert translated.body["stream"] is True


@pytest.mark.parametrize(
    ("request_fields", "param"),
    [
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"top_logprobs": 3}, "logprobs"),
        ({"audio": {"voice": "alloy"}}, "audio"),
        ({"modalities": ["text", "audio"]}, "modalities"),
        ({"presence_penalty": 0.5}, "presence_penalty"),
        ({"logit_bias": {"50256": -100}}, "logit_bias"),
        ({"store": True}, "store"),
        ({"functions": []}, "functions"),
        ({"temperature": 1.5}, "temperature"),
        ({"model": ""}, "model"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "system", "content": "only"}]}, "messages"),
        ({"messages": [{"role": "function", "content": "x", "name": "f"}]}, "messages[0].role"),
        (
            {"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]},
            "messages[0].content[0]",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x"}}]}
                ]
            },
            "messages[0].content[0].image_url.url",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "file", "file": {"file_id": "file-1"}}]}]},
            "messages[0].content[0].file",
        ),
        ({"response_format": {"type": "grammar"}}, "response_format.type"),
        ({"tools": [{"type": "custom", "custom": {"name": "x"}}]}, "tools[0].type"),
        ({"reasoning_effort": "extreme"}, "reasoning_effort"),
    ],
)
def test_what_cannot_be_translated_is_refused_naming_it(request_fields: dict[str, Any], param: str) -> None:
    with pytest.raises(UnsupportedParameterError) as raised:
        translate(**request_fields)
    assert raised.value.param == param
    assert raised.value.status == 400
    assert raised.value.message.startswith(param)


def test_ignored_parameters_are_accepted() -> None:
    body = translate(seed=1, prompt_cache_key="k", service_tier="auto", store=False, n=1, presence_penalty=0)
    assert set(body) == {"model", "messages", "max_tokens"}


def test_tool_call_arguments_must_be_a_json_object() -> None:
    with pytest.raises(UnsupportedParameterError) as raised:
        translate(
            messages=[
                {"role": "user", "content": "x"},
                {
                    "role": "assistant",
                    "tool_calls": [
                        {"id": "c", "type": "function", "function": {"name": "w", "arguments": "{"}}
                    ],
                },
            ]
        )
    assert raised.value.param == "messages[1].tool_calls[0].function.arguments"

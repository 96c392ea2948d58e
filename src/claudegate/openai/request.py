"""An OpenAI Chat Completions request as an Anthropic Messages request.

Parameters and how they map (``messages``: see messages.py):

- ``model``: Claude ids and aliases, as they are;
- ``max_completion_tokens`` (or the older ``max_tokens``) → ``max_tokens``; when neither is given,
  ``DEFAULT_MAX_TOKENS`` (capped by the model's own limit), plus the thinking budget with
  ``reasoning_effort``;
- ``temperature`` (Claude takes 0 to 1, OpenAI 0 to 2: above 1 is refused), ``top_p``, ``stop`` →
  ``stop_sequences``, ``user`` (or ``metadata.user_id``, or ``safety_identifier``) → ``metadata.user_id``;
- ``tools`` (functions) → tools with ``input_schema`` (and ``strict``); ``tool_choice`` ``auto`` / ``none``
  / ``required`` (→ ``any``) / a named function (→ ``tool``); ``parallel_tool_calls: false`` →
  ``disable_parallel_tool_use``;
- ``response_format``: ``json_schema`` → structured outputs (``output_config.format``); ``json_object`` →
  an instruction appended to the system prompt (Claude has no schema-less JSON mode);
- ``reasoning_effort`` → extended thinking: adaptive thinking with ``output_config.effort`` on models from
  Claude Opus 4.6 on, a thinking budget (``THINKING_BUDGETS``) on older ones. While the reply to a tool result
  is requested, thinking is left off: Claude needs the previous turn's signed thinking back, which an OpenAI
  client does not keep;
- ``seed``, ``prompt_cache_key``, ``service_tier`` and ``store: false`` are accepted and ignored (Claude has
  no seed, and caches by prefix).

Anything else that changes the reply (``n`` > 1, ``logprobs``, ``audio``, penalties, ``logit_bias``,
``store: true``, …) is refused with a 400 that names it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from claudegate.chat.caching import place_breakpoints
from claudegate.openai.errors import UnsupportedParameterError
from claudegate.openai.messages import translate_messages
from claudegate.wire.models import ModelCatalog

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "JSON_OBJECT_INSTRUCTION",
    "THINKING_BUDGETS",
    "TranslatedRequest",
    "translate_request",
]

DEFAULT_MAX_TOKENS: Final = 4096
# Thinking budgets for models that take ``budget_tokens`` (the API's minimum is 1024).
THINKING_BUDGETS: Final = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 16384, "xhigh": 32768}
# Effort levels for models with adaptive thinking.
_EFFORTS: Final = {"minimal": "low", "low": "low", "medium": "medium", "high": "high", "xhigh": "xhigh"}
# The first model with adaptive thinking and effort (Claude Opus 4.6); models released since have them too.
_ADAPTIVE_SINCE: Final = "2026-02-05"
JSON_OBJECT_INSTRUCTION: Final = (
    "Respond with a single valid JSON object and nothing else: no prose, no code fences."
)

_IGNORED: Final = frozenset({"seed", "prompt_cache_key", "prompt_cache_retention", "service_tier"})
_HANDLED: Final = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "stop",
        "user",
        "safety_identifier",
        "metadata",
        "stream",
        "stream_options",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
        "reasoning_effort",
        "n",
        "logprobs",
        "top_logprobs",
        "presence_penalty",
        "frequency_penalty",
        "logit_bias",
        "store",
        "modalities",
        "audio",
    }
)


@dataclass(frozen=True, slots=True)
class TranslatedRequest:
    body: dict[str, Any]  # the Anthropic Messages request
    model: str
    max_tokens: int
    stream: bool
    include_usage: bool  # stream_options.include_usage: end the stream with a usage chunk


def _bad(param: str, message: str) -> UnsupportedParameterError:
    return UnsupportedParameterError(param, f"{param}: {message}")


def translate_request(request: dict[str, Any], catalog: ModelCatalog) -> TranslatedRequest:
    """The Anthropic request for an OpenAI one; UnsupportedParameterError (400) for what cannot be said."""
    _refuse_untranslatable(request)
    model = request.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("model", "a model name is required (a Claude model id or alias)")
    system, messages = translate_messages(request.get("messages"))
    body: dict[str, Any] = {"model": model, "messages": messages}

    info = catalog.resolve(model)
    max_tokens = _max_tokens(request)
    effort = request.get("reasoning_effort")
    thinking_budget = 0
    if effort is not None and effort != "none":
        if effort not in THINKING_BUDGETS:
            raise _bad("reasoning_effort", f"expected one of none, {', '.join(THINKING_BUDGETS)}")
        if not _continues_tool_call(messages):
            if info is not None and info.created_at >= _ADAPTIVE_SINCE:
                body["thinking"] = {"type": "adaptive", "display": "summarized"}
                body["output_config"] = {"effort": _EFFORTS[effort]}
            else:
                thinking_budget = THINKING_BUDGETS[effort]
    if max_tokens is None:
        max_tokens = DEFAULT_MAX_TOKENS + thinking_budget
        if info is not None:
            max_tokens = min(max_tokens, info.max_output_tokens)
        thinking_budget = min(thinking_budget, max_tokens - DEFAULT_MAX_TOKENS // 2)
    elif thinking_budget:
        # OpenAI's limit counts reasoning too: the budget leaves half the client's limit for the answer.
        thinking_budget = min(thinking_budget, max_tokens // 2)
    if thinking_budget:
        if thinking_budget < 1024:  # the API's minimum
            raise _bad("max_completion_tokens", "must be at least 2048 with reasoning_effort on this model")
        body["thinking"] = {"type": "enabled", "budget_tokens": thinking_budget}
    body["max_tokens"] = max_tokens

    _sampling(request, body)
    _tools(request, body)
    instruction = _response_format(request.get("response_format"), body)
    if instruction:
        system.append({"type": "text", "text": instruction})
    if system:
        body["system"] = system
    stream = request.get("stream") is True
    if stream:
        body["stream"] = True
    options = request.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise _bad("stream_options", "expected an object")
    include_usage = stream and bool((options or {}).get("include_usage"))
    # Cache breakpoints as the chat API places them: repeated conversations read their history from the cache.
    place_breakpoints(body)
    return TranslatedRequest(
        body=body, model=model, max_tokens=max_tokens, stream=stream, include_usage=include_usage
    )


def _refuse_untranslatable(request: dict[str, Any]) -> None:
    for name in request:
        if name not in _HANDLED and name not in _IGNORED:
            raise _bad(name, "this parameter is not supported by the Claude translation of Chat Completions")
    n = request.get("n")
    if n is not None and n != 1:
        raise _bad("n", "only one choice per request (n = 1) is supported")
    if request.get("logprobs") or request.get("top_logprobs"):
        raise _bad("logprobs", "Claude does not return log probabilities")
    for penalty in ("presence_penalty", "frequency_penalty"):
        if request.get(penalty):
            raise _bad(penalty, "Claude has no presence or frequency penalties; leave it out or at 0")
    if request.get("logit_bias"):
        raise _bad("logit_bias", "Claude does not support logit biases")
    if request.get("store"):
        raise _bad("store", "stored completions are not supported")
    if request.get("audio") is not None:
        raise _bad("audio", "audio output is not supported by Claude")
    modalities = request.get("modalities")
    if modalities is not None and modalities != ["text"]:
        raise _bad("modalities", "only text output is supported")


def _max_tokens(request: dict[str, Any]) -> int | None:
    for name in ("max_completion_tokens", "max_tokens"):
        value = request.get(name)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise _bad(name, "expected a positive whole number")
        return value
    return None


def _continues_tool_call(messages: list[dict[str, Any]]) -> bool:
    """Whether the request asks for the reply to tool results (its last turn carries them)."""
    last = messages[-1]
    return last["role"] == "user" and any(block["type"] == "tool_result" for block in last["content"])


def _sampling(request: dict[str, Any], body: dict[str, Any]) -> None:
    temperature = request.get("temperature")
    if temperature is not None:
        if not isinstance(temperature, int | float) or not 0 <= temperature <= 1:
            raise _bad("temperature", "Claude takes a temperature from 0 to 1")
        body["temperature"] = temperature
    top_p = request.get("top_p")
    if top_p is not None:
        body["top_p"] = top_p
    stop = request.get("stop")
    if isinstance(stop, str):
        body["stop_sequences"] = [stop]
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        if stop:
            body["stop_sequences"] = stop
    elif stop is not None:
        raise _bad("stop", "expected a string or a list of strings")
    metadata = request.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise _bad("metadata", "expected an object of strings")
    user = request.get("user") or request.get("safety_identifier") or (metadata or {}).get("user_id")
    if user is not None:
        if not isinstance(user, str):
            raise _bad("user", "expected a string")
        body["metadata"] = {"user_id": user}


def _tools(request: dict[str, Any], body: dict[str, Any]) -> None:
    tools = request.get("tools")
    if tools:
        if not isinstance(tools, list):
            raise _bad("tools", "expected a list of function tools")
        body["tools"] = [_tool(tool, f"tools[{index}]") for index, tool in enumerate(tools)]
    choice = request.get("tool_choice")
    parallel = request.get("parallel_tool_calls")
    translated: dict[str, Any] | None
    if choice is None:
        translated = {"type": "auto"} if parallel is False and tools else None
    elif choice in ("auto", "none"):
        translated = {"type": choice}
    elif choice == "required":
        translated = {"type": "any"}
    elif isinstance(choice, dict) and choice.get("type") == "function":
        name = (choice.get("function") or {}).get("name")
        if not isinstance(name, str):
            raise _bad("tool_choice.function.name", "the name of the function to call is required")
        translated = {"type": "tool", "name": name}
    else:
        raise _bad("tool_choice", "expected 'auto', 'none', 'required' or a named function")
    if translated is not None:
        if parallel is False and translated["type"] != "none":
            translated["disable_parallel_tool_use"] = True
        body["tool_choice"] = translated


def _tool(tool: Any, where: str) -> dict[str, Any]:
    if not isinstance(tool, dict) or tool.get("type") != "function":
        raise _bad(f"{where}.type", "only function tools are supported")
    function = tool.get("function")
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(function, dict) or not isinstance(name, str):
        raise _bad(f"{where}.function.name", "a function name is required")
    schema = function.get("parameters") or {"type": "object", "properties": {}}
    translated: dict[str, Any] = {"name": name, "input_schema": schema}
    if function.get("description"):
        translated["description"] = function["description"]
    if function.get("strict"):
        translated["strict"] = True
    return translated


def _response_format(response_format: Any, body: dict[str, Any]) -> str | None:
    """Structured outputs for ``json_schema``; the system instruction to add for ``json_object``."""
    if response_format is None:
        return None
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return JSON_OBJECT_INSTRUCTION
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise _bad("response_format.json_schema.schema", "a JSON schema is required")
        body.setdefault("output_config", {})["format"] = {"type": "json_schema", "schema": schema}
        return None
    raise _bad("response_format.type", "expected 'text', 'json_object' or 'json_schema'")

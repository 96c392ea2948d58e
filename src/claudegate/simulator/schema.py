"""The Messages request body as the API validates it, with the API's own error wording.

The real API answers bad input with pydantic-style messages (``messages.0.role: Input should be 'user' or
'assistant'``), so the simulator validates with pydantic too and formats the first error the same way.
Top-level fields are closed (a misspelled parameter is an error, as it is upstream); nested objects stay
open, because new fields appear there first and clients send them before simulators hear of them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = [
    "CacheControl",
    "ContentBlock",
    "CountTokensRequest",
    "DocumentBlock",
    "ImageBlock",
    "Message",
    "MessagesRequest",
    "TextBlock",
    "ThinkingConfig",
    "ToolChoice",
    "ToolResultBlock",
    "ToolUseBlock",
    "format_validation_error",
]


class _Open(BaseModel):
    # Strict: the API takes JSON types as they are ("20" is not a number of tokens), and the simulator goes
    # on to read the body it validated, so a coerced value would reach code that expects the real type.
    model_config = ConfigDict(extra="allow", frozen=True, strict=True)


class CacheControl(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    type: Literal["ephemeral"]
    ttl: Literal["5m", "1h"] = "5m"


class TextBlock(_Open):
    type: Literal["text"]
    text: str
    cache_control: CacheControl | None = None
    citations: list[dict[str, Any]] | None = None


class Base64Source(_Open):
    type: Literal["base64"]
    media_type: str
    data: str


class UrlSource(_Open):
    type: Literal["url"]
    url: str


class FileSource(_Open):
    type: Literal["file"]
    file_id: str


class TextSource(_Open):
    type: Literal["text"]
    media_type: Literal["text/plain"] = "text/plain"
    data: str


class ContentSource(_Open):
    type: Literal["content"]
    content: str | list[Annotated[TextBlock | ImageBlock, Field(discriminator="type")]]


ImageSource = Annotated[Base64Source | UrlSource | FileSource, Field(discriminator="type")]
DocumentSource = Annotated[
    Base64Source | UrlSource | FileSource | TextSource | ContentSource, Field(discriminator="type")
]


class ImageBlock(_Open):
    type: Literal["image"]
    source: ImageSource
    cache_control: CacheControl | None = None


class DocumentBlock(_Open):
    type: Literal["document"]
    source: DocumentSource
    title: str | None = None
    context: str | None = None
    cache_control: CacheControl | None = None


class ToolUseBlock(_Open):
    type: Literal["tool_use"]
    id: str
    name: str
    input: dict[str, Any]
    cache_control: CacheControl | None = None


class ToolResultItem(_Open):
    """A tool result's block of a kind with no model here (search_result, tool_reference, …)."""

    type: Literal["search_result", "tool_reference", "browser_state"]


ToolResultContent = Annotated[
    TextBlock | ImageBlock | DocumentBlock | ToolResultItem, Field(discriminator="type")
]


class ToolResultBlock(_Open):
    type: Literal["tool_result"]
    tool_use_id: str
    content: str | list[ToolResultContent] | None = None
    is_error: bool | None = None
    cache_control: CacheControl | None = None


class ThinkingBlock(_Open):
    type: Literal["thinking"]
    thinking: str
    signature: str


class RedactedThinkingBlock(_Open):
    type: Literal["redacted_thinking"]
    data: str


class ServerBlock(_Open):
    """Blocks produced by server tools that clients send back unchanged in later turns."""

    type: Literal[
        "server_tool_use",
        "web_search_tool_result",
        "web_fetch_tool_result",
        "code_execution_tool_result",
        "bash_code_execution_tool_result",
        "text_editor_code_execution_tool_result",
        "tool_search_tool_result",
        "search_result",
        "container_upload",
        "mcp_tool_use",
        "mcp_tool_result",
        "compaction",
        "tool_reference",
        "advisor_tool_result",
    ]
    cache_control: CacheControl | None = None


ContentBlock = Annotated[
    TextBlock
    | ImageBlock
    | DocumentBlock
    | ToolUseBlock
    | ToolResultBlock
    | ThinkingBlock
    | RedactedThinkingBlock
    | ServerBlock,
    Field(discriminator="type"),
]


class Message(_Open):
    # "system" only with the beta mid-conversation-system-…; the app refuses it without (``system_turns``).
    role: Literal["user", "assistant", "system"]
    content: str | list[ContentBlock]


class ToolChoiceAuto(_Open):
    type: Literal["auto"]
    disable_parallel_tool_use: bool | None = None


class ToolChoiceAny(_Open):
    type: Literal["any"]
    disable_parallel_tool_use: bool | None = None


class ToolChoiceTool(_Open):
    type: Literal["tool"]
    name: str
    disable_parallel_tool_use: bool | None = None


class ToolChoiceNone(_Open):
    type: Literal["none"]


ToolChoice = Annotated[
    ToolChoiceAuto | ToolChoiceAny | ToolChoiceTool | ToolChoiceNone, Field(discriminator="type")
]


class ThinkingEnabled(_Open):
    type: Literal["enabled"]
    budget_tokens: int
    display: Literal["summarized", "omitted", "updates"] | None = None


class ThinkingDisabled(_Open):
    type: Literal["disabled"]


class ThinkingAdaptive(_Open):
    type: Literal["adaptive"]
    display: Literal["summarized", "omitted", "updates"] | None = None


ThinkingConfig = Annotated[ThinkingEnabled | ThinkingDisabled | ThinkingAdaptive, Field(discriminator="type")]


class JsonOutputFormat(_Open):
    type: Literal["json_schema"]
    json_schema: dict[str, Any] = Field(alias="schema")


class OutputConfig(_Open):
    effort: Literal["low", "medium", "high", "xhigh", "max"] | None = None
    format: JsonOutputFormat | None = None


class Metadata(_Open):
    user_id: str | None = None


class _RequestFields(BaseModel):
    """Fields shared by ``/v1/messages`` and ``/v1/messages/count_tokens``."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    model: str
    messages: list[Message]
    system: str | list[TextBlock] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: ToolChoice | None = None
    thinking: ThinkingConfig | None = None
    cache_control: CacheControl | None = None
    output_config: OutputConfig | None = None
    output_format: JsonOutputFormat | None = None  # before output_config.format, under a beta header
    context_management: dict[str, Any] | None = None
    mcp_servers: list[dict[str, Any]] | None = None
    container: str | dict[str, Any] | None = None
    speed: Literal["standard", "fast"] | None = None
    diagnostics: dict[str, Any] | None = None
    compaction: dict[str, Any] | None = None


class CountTokensRequest(_RequestFields):
    pass


class MessagesRequest(_RequestFields):
    max_tokens: int = Field(ge=0)
    temperature: float | None = Field(default=None, ge=0.0, le=1.0)
    top_p: float | None = Field(default=None, ge=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=0)
    stop_sequences: list[str] | None = None
    stream: bool | None = None
    metadata: Metadata | None = None
    service_tier: Literal["auto", "standard_only"] | None = None
    inference_geo: str | None = None
    billing_policy: dict[str, Any] | None = None
    fallbacks: list[dict[str, Any]] | dict[str, Any] | None = None
    fallback_credit_token: str | None = None
    thread: dict[str, Any] | None = None


_TYPE_BRANCHES = frozenset({"str", "int", "float", "bool", "dict", "list", "none"})


def _visible_location(loc: tuple[str | int, ...], body: Any) -> str:
    """The error's location as the API names it: field names and list positions only.

    pydantic also puts union branch names ("str", "list[...]") and discriminator tags ("text") into a
    location; walking the request body along the location tells those apart from real keys.
    """
    parts: list[str] = []
    node: Any = body
    tag_skipped = False
    for part in loc:
        if isinstance(part, int):
            parts.append(str(part))
            node = node[part] if isinstance(node, list) and part < len(node) else None
            tag_skipped = False
        elif isinstance(node, dict) and part in node:
            parts.append(part)
            node = node[part]
            tag_skipped = False
        elif isinstance(node, dict) and node.get("type") == part and not tag_skipped:
            tag_skipped = True  # the discriminator's tag, not a field
        elif part.isidentifier() and part not in _TYPE_BRANCHES:
            parts.append(part)  # a missing field
            node = None
    return ".".join(parts)


def format_validation_error(error: ValidationError, body: Any) -> str:
    """The API's wording for the most specific problem in a validation error."""
    errors = error.errors(include_url=False)
    best = max(errors, key=lambda e: len(e["loc"]))
    location = _visible_location(best["loc"], body)
    message = "Extra inputs are not permitted" if best["type"] == "extra_forbidden" else best["msg"]
    return f"{location}: {message}" if location else message

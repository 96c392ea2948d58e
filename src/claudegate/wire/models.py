"""The Claude model catalogue (``data/models.toml``), loaded once and shared by gateway and simulator.

What other parts read:

- :meth:`ModelCatalog.resolve` turns an id or alias into a :class:`ModelInfo` (None when unknown);
- :attr:`ModelInfo.rate_class` names the rate-limit pool (one limits lane per class);
- :attr:`ModelInfo.lifecycle` is ``active``, ``deprecated`` or ``retired`` (retired models are described but
  not served);
- :meth:`ModelInfo.to_api` is the model as ``GET /v1/models`` returns it, in the SDK's ``ModelInfo`` shape;
- :meth:`ModelCatalog.listed` is the list ``GET /v1/models`` pages through, filtered by lifecycle.
"""

from __future__ import annotations

import functools
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Final, Literal, cast

__all__ = [
    "DEFAULT_LIFECYCLES",
    "LIFECYCLES",
    "Capabilities",
    "Lifecycle",
    "ModelCatalog",
    "ModelInfo",
    "default_catalog",
]

Lifecycle = Literal["active", "deprecated", "retired"]
LIFECYCLES: Final[tuple[Lifecycle, ...]] = ("active", "deprecated", "retired")
# What GET /v1/models lists when ``lifecycle`` is not given (the SDK's ModelListParams documents this).
DEFAULT_LIFECYCLES: Final[frozenset[str]] = frozenset({"active", "deprecated"})

_FEATURES: Final = ("batch", "citations", "code_execution", "image_input", "pdf_input", "structured_outputs")
_SERVER_TOOLS: Final = {"web_search": "web_search", "code_execution": "code_execution_tool"}
_THINKING: Final = ("adaptive", "between_tools", "disabled", "enabled")
_EFFORT: Final = ("low", "medium", "high", "max")
_CONTEXT_MANAGEMENT: Final = ("clear_thinking_20251015", "clear_tool_uses_20250919", "compact_20260112")


@dataclass(frozen=True, slots=True)
class Capabilities:
    """A capability profile: the supported features, thinking types, effort levels and context edits."""

    features: frozenset[str] = frozenset()
    thinking: frozenset[str] = frozenset({"disabled"})
    effort: frozenset[str] = frozenset()
    context_management: frozenset[str] = frozenset()

    def to_api(self) -> dict[str, Any]:
        """The ``capabilities`` tree of the SDK's ``ModelCapabilities``: every known key present."""

        def flag(supported: bool) -> dict[str, bool]:
            return {"supported": supported}

        tree: dict[str, Any] = {name: flag(name in self.features) for name in _FEATURES}
        tools = {tool: flag(feature in self.features) for tool, feature in _SERVER_TOOLS.items()}
        tree["server_tools"] = {"supported": any(t["supported"] for t in tools.values()), **tools}
        tree["thinking"] = {
            "supported": bool(self.thinking - {"disabled"}),
            "types": {name: flag(name in self.thinking) for name in _THINKING},
        }
        effort: dict[str, Any] = {"supported": bool(self.effort)}
        effort |= {level: flag(level in self.effort) for level in _EFFORT}
        effort["xhigh"] = flag("xhigh" in self.effort)
        tree["effort"] = effort
        context: dict[str, Any] = {"supported": bool(self.context_management)}
        context |= {edit: flag(edit in self.context_management) for edit in _CONTEXT_MANAGEMENT}
        tree["context_management"] = context
        return tree


@dataclass(frozen=True, slots=True)
class ModelInfo:
    id: str
    display_name: str
    created_at: str
    rate_class: str
    context_window: int
    max_output_tokens: int
    min_cache_tokens: int
    aliases: tuple[str, ...] = field(default=())
    line: str | None = None
    lifecycle: Lifecycle = "active"
    deprecated_at: str | None = None
    retires_at: str | None = None
    capabilities: Capabilities = field(default_factory=Capabilities)

    @property
    def served(self) -> bool:
        """False for a retired model: inference naming it fails."""
        return self.lifecycle != "retired"

    def to_api(self) -> dict[str, Any]:
        """The model as ``GET /v1/models`` describes it (the SDK's ``ModelInfo``)."""
        return {
            "type": "model",
            "id": self.id,
            "display_name": self.display_name,
            "created_at": self.created_at,
            "line": self.line,
            "lifecycle": self.lifecycle,
            "deprecated_at": self.deprecated_at,
            "retires_at": self.retires_at,
            "max_input_tokens": self.context_window,
            "max_tokens": self.max_output_tokens,
            "capabilities": self.capabilities.to_api(),
        }


class ModelCatalog:
    """Models in the order ``GET /v1/models`` lists them (newest first), with alias resolution."""

    __slots__ = ("_by_name", "models")

    def __init__(self, models: list[ModelInfo]) -> None:
        self.models = sorted(models, key=lambda m: m.created_at, reverse=True)
        self._by_name: dict[str, ModelInfo] = {}
        for model in self.models:
            self._by_name[model.id] = model
            for alias in model.aliases:
                self._by_name[alias] = model

    def resolve(self, name: str) -> ModelInfo | None:
        """The model an id or alias names (whatever its lifecycle), or None when it is unknown."""
        return self._by_name.get(name)

    def names(self) -> frozenset[str]:
        """Every id and alias the catalogue knows."""
        return frozenset(self._by_name)

    def listed(self, lifecycles: Iterable[str] = DEFAULT_LIFECYCLES) -> list[ModelInfo]:
        """The models ``GET /v1/models`` lists for a ``lifecycle`` filter, newest first."""
        wanted = frozenset(lifecycles)
        return [model for model in self.models if model.lifecycle in wanted]

    def index_of(self, model_id: str) -> int | None:
        for position, model in enumerate(self.models):
            if model.id == model_id:
                return position
        return None

    @classmethod
    def from_toml(cls, text: str) -> ModelCatalog:
        data = tomllib.loads(text)
        profiles = {name: _profile(row) for name, row in data.get("capabilities", {}).items()}
        return cls([_model(row, profiles) for row in data["model"]])


def _profile(row: Mapping[str, Any]) -> Capabilities:
    return Capabilities(
        features=frozenset(row.get("features", ())),
        thinking=frozenset(row.get("thinking", ("disabled",))),
        effort=frozenset(row.get("effort", ())),
        context_management=frozenset(row.get("context_management", ())),
    )


def _model(row: Mapping[str, Any], profiles: Mapping[str, Capabilities]) -> ModelInfo:
    lifecycle = row.get("lifecycle", "active")
    if lifecycle not in LIFECYCLES:
        raise ValueError(
            f"models.toml: {row['id']}: lifecycle must be one of {LIFECYCLES}, not {lifecycle!r}"
        )
    profile = row.get("capabilities")
    if profile is not None and profile not in profiles:
        raise ValueError(f"models.toml: {row['id']}: no [capabilities.{profile}] table")
    return ModelInfo(
        id=row["id"],
        display_name=row["display_name"],
        created_at=row["created_at"],
        rate_class=row["rate_class"],
        context_window=int(row["context_window"]),
        max_output_tokens=int(row["max_output_tokens"]),
        min_cache_tokens=int(row["min_cache_tokens"]),
        aliases=tuple(row.get("aliases", ())),
        line=row.get("line"),
        lifecycle=cast("Lifecycle", lifecycle),
        deprecated_at=row.get("deprecated_at"),
        retires_at=row.get("retires_at"),
        capabilities=profiles[profile] if profile is not None else Capabilities(),
    )


@functools.cache
def default_catalog() -> ModelCatalog:
    text = resources.files("claudegate.data").joinpath("models.toml").read_text(encoding="utf-8")
    return ModelCatalog.from_toml(text)

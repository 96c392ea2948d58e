"""The Claude model catalogue (``data/models.toml``), loaded once and shared by gateway and simulator."""

from __future__ import annotations

import functools
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

__all__ = ["ModelCatalog", "ModelInfo", "default_catalog"]


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

    def to_api(self) -> dict[str, Any]:
        """The model as ``GET /v1/models`` describes it."""
        return {
            "type": "model",
            "id": self.id,
            "display_name": self.display_name,
            "created_at": self.created_at,
            "max_input_tokens": self.context_window,
            "max_tokens": self.max_output_tokens,
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
        """The model an id or alias names, or None when it is unknown."""
        return self._by_name.get(name)

    def index_of(self, model_id: str) -> int | None:
        for position, model in enumerate(self.models):
            if model.id == model_id:
                return position
        return None

    @classmethod
    def from_toml(cls, text: str) -> ModelCatalog:
        data = tomllib.loads(text)
        models = [
            ModelInfo(
                id=row["id"],
                display_name=row["display_name"],
                created_at=row["created_at"],
                rate_class=row["rate_class"],
                context_window=int(row["context_window"]),
                max_output_tokens=int(row["max_output_tokens"]),
                min_cache_tokens=int(row["min_cache_tokens"]),
                aliases=tuple(row.get("aliases", ())),
            )
            for row in data["model"]
        ]
        return cls(models)


@functools.cache
def default_catalog() -> ModelCatalog:
    text = resources.files("claudegate.data").joinpath("models.toml").read_text(encoding="utf-8")
    return ModelCatalog.from_toml(text)

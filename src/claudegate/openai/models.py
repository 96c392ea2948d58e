"""``GET /v1/models`` in OpenAI's shape: the Claude models the gateway knows, ids as Claude names them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from claudegate.wire.models import ModelCatalog, ModelInfo

__all__ = ["model_list", "model_object"]


def model_object(model: ModelInfo) -> dict[str, Any]:
    created = int(datetime.fromisoformat(model.created_at.replace("Z", "+00:00")).timestamp())
    return {"id": model.id, "object": "model", "created": created, "owned_by": "anthropic"}


def model_list(catalog: ModelCatalog) -> bytes:
    """``{"object": "list", "data": [...]}``, newest first: the models listed by default (not retired)."""
    return orjson.dumps({"object": "list", "data": [model_object(model) for model in catalog.listed()]})

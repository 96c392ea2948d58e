"""``messages.parse`` with a Pydantic model, as the SDK's: the schema goes out as the output format, the reply
comes back with ``parsed_output``."""

from __future__ import annotations

from pathlib import Path

import pydantic
import pytest

from claudegate import AsyncClient
from tests.e2e.test_inprocess_client import client_settings


class Weather(pydantic.BaseModel):
    city: str
    celsius: int


async def test_parse_gives_the_reply_as_the_model(simulator_url: str, tmp_path: Path) -> None:
    async with AsyncClient(settings=client_settings(simulator_url, tmp_path), org="parse") as client:
        message = await client.messages.parse(
            model="claude-sonnet-4-6",
            max_tokens=400,
            messages=[{"role": "user", "content": "The weather in Paris, as JSON."}],
            output_format=Weather,
        )
        text = message.content[0].text  # type: ignore[union-attr]
        assert isinstance(message.parsed_output, Weather)
        assert message.parsed_output == Weather.model_validate_json(text)
        with pytest.raises(TypeError, match="output_format must be a type"):
            await client.messages.parse(
                model="claude-sonnet-4-6",
                max_tokens=10,
                messages=[],
                output_format={"type": "object"},  # type: ignore[arg-type]
            )

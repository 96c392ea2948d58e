"""The price table: what a call cost, from its token counts (``data/prices.toml`` plus an optional override).

Prices are exact decimals (TOML floats are parsed straight to :class:`~decimal.Decimal`), so a report adds up
to the cent. A model without a row is *unpriced*: :meth:`PriceTable.cost` returns None, never zero, so a
report can say how many calls it could not cost instead of under-reporting.

Lookup order for a model name: its own row; then, through the model catalogue, the dated id an alias names
and the aliases of a dated id; then the name with a trailing ``-YYYYMMDD`` snapshot date removed (a snapshot
the catalogue does not know yet is priced like its alias).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any, Final

from claudegate.wire.models import ModelCatalog, default_catalog

__all__ = ["ModelPrice", "PriceTable", "PriceTableError", "UsageTokens"]

_PER_MILLION: Final = Decimal(1_000_000)
_PRICE_FIELDS: Final = ("input", "output", "cache_write_5m", "cache_write_1h", "cache_read")
_SNAPSHOT_DATE: Final = re.compile(r"-\d{8}$")


class PriceTableError(ValueError):
    """A price file is malformed; the message names the file, the row and what is wrong."""


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """USD per million tokens, and the fraction taken off for Message Batches (0.5 = half price)."""

    input: Decimal
    output: Decimal
    cache_write_5m: Decimal
    cache_write_1h: Decimal
    cache_read: Decimal
    batch_discount: Decimal


@dataclass(frozen=True, slots=True)
class UsageTokens:
    """Token counts as Anthropic's ``usage`` reports them.

    ``cache_creation_input_tokens`` is the total written to the cache; ``cache_creation_1h_input_tokens`` is
    the part of it written with the 1-hour TTL (``usage.cache_creation.ephemeral_1h_input_tokens``); the rest
    was written with the 5-minute TTL.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_1h_input_tokens: int = 0


class PriceTable:
    """Model prices with alias/snapshot fallback. Build with :meth:`load`; changed only whole, by
    :meth:`replace_with` (a live reload), so every lookup sees one table or the other."""

    __slots__ = ("_catalog", "_prices")

    def __init__(self, prices: Mapping[str, ModelPrice], *, catalog: ModelCatalog | None = None) -> None:
        self._prices = dict(prices)
        self._catalog = catalog if catalog is not None else default_catalog()

    @classmethod
    def load(cls, override_file: Path | None = None, *, catalog: ModelCatalog | None = None) -> PriceTable:
        """The built-in table, with the rows of ``override_file`` (same format) replacing or adding rows."""
        builtin = resources.files("claudegate.data").joinpath("prices.toml").read_text(encoding="utf-8")
        prices = _parse(builtin, "built-in prices.toml")
        if override_file is not None:
            try:
                text = override_file.read_text(encoding="utf-8")
            except OSError as exc:
                raise PriceTableError(f"cannot read price file {override_file}: {exc}") from None
            prices.update(_parse(text, str(override_file)))
        return cls(prices, catalog=catalog)

    def replace_with(self, other: PriceTable) -> None:
        self._prices = other._prices  # one assignment: lookups in flight see the old table or the new

    @property
    def models(self) -> list[str]:
        """The model names that have a row of their own."""
        return sorted(self._prices)

    def price(self, model: str) -> ModelPrice | None:
        """The price row for a model id or alias, or None if it is unpriced."""
        found = self._prices.get(model)
        if found is not None:
            return found
        info = self._catalog.resolve(model)
        if info is not None:
            for name in (info.id, *info.aliases):
                found = self._prices.get(name)
                if found is not None:
                    return found
        undated = _SNAPSHOT_DATE.sub("", model)
        if undated != model:
            return self.price(undated)
        return None

    def cost(self, model: str, usage: UsageTokens, *, batch: bool) -> Decimal | None:
        """The cost of one call in USD, or None when the model has no price."""
        price = self.price(model)
        if price is None:
            return None
        one_hour = usage.cache_creation_1h_input_tokens
        five_minutes = max(usage.cache_creation_input_tokens - one_hour, 0)
        total = (
            usage.input_tokens * price.input
            + usage.output_tokens * price.output
            + five_minutes * price.cache_write_5m
            + one_hour * price.cache_write_1h
            + usage.cache_read_input_tokens * price.cache_read
        ) / _PER_MILLION
        if batch:
            total *= 1 - price.batch_discount
        return total


def _parse(text: str, source: str) -> dict[str, ModelPrice]:
    try:
        data = tomllib.loads(text, parse_float=Decimal)
    except tomllib.TOMLDecodeError as exc:
        raise PriceTableError(f"{source} is not valid TOML: {exc}") from None
    unknown = set(data) - {"defaults", "models"}
    if unknown:
        raise PriceTableError(
            f"{source}: unknown tables {sorted(unknown)}; expected [defaults] and [models.*]"
        )
    defaults = data.get("defaults", {})
    default_discount = _decimal(
        defaults.get("batch_discount", Decimal("0.5")), source, "defaults.batch_discount"
    )
    prices: dict[str, ModelPrice] = {}
    for model, row in data.get("models", {}).items():
        if not isinstance(row, dict):
            raise PriceTableError(f"{source}: models.{model} must be a table of prices")
        prices[model] = _row(row, default_discount, source, model)
    return prices


def _row(row: dict[str, Any], default_discount: Decimal, source: str, model: str) -> ModelPrice:
    missing = [name for name in _PRICE_FIELDS if name not in row]
    if missing:
        raise PriceTableError(f"{source}: models.{model} lacks {', '.join(missing)}")
    extra = set(row) - {*_PRICE_FIELDS, "batch_discount"}
    if extra:
        raise PriceTableError(f"{source}: models.{model} has unknown fields {sorted(extra)}")
    values = {name: _decimal(row[name], source, f"models.{model}.{name}") for name in _PRICE_FIELDS}
    discount = _decimal(row.get("batch_discount", default_discount), source, f"models.{model}.batch_discount")
    if discount > 1:
        raise PriceTableError(f"{source}: models.{model}.batch_discount must be between 0 and 1")
    return ModelPrice(batch_discount=discount, **values)


def _decimal(value: object, source: str, where: str) -> Decimal:
    # Integers arrive as int (``input = 5``) and fractions as Decimal; bools are ints in Python: reject them.
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise PriceTableError(f"{source}: {where} must be a number, got {value!r}")
    number = Decimal(value)
    if number < 0:
        raise PriceTableError(f"{source}: {where} must not be negative")
    return number

"""The price table: what a call cost, from its usage (``data/prices.toml`` plus an optional override).

Prices are exact decimals (TOML floats are parsed straight to :class:`~decimal.Decimal`), so a report adds up
to the cent. A model without a row is *unpriced*: :meth:`PriceTable.cost` returns None, never zero, so a
report can say how many calls it could not cost instead of under-reporting. So is a fast-mode call on a model
whose row has no fast-mode multiplier.

Pricing rules, applied in this order (``data/prices.toml`` documents the fields):

1. tokens at the row's prices, cache writes split by TTL;
2. long context: above the row's threshold of total input, input-side and output prices are multiplied;
3. fast mode (``usage.speed == "fast"``): the row's ``fast`` multiplier;
4. data residency (``usage.inference_geo``): the row's multiplier for that region, 1 otherwise;
5. Message Batches: the batch discount;
6. server-tool fees per request (``usage.server_tool_use``), added undiscounted.

Lookup order for a model name: its own row; then, through the model catalogue, the dated id an alias names
and the aliases of a dated id; then the name with a trailing ``-YYYYMMDD`` snapshot date removed (a snapshot
the catalogue does not know yet is priced like its alias).
"""

from __future__ import annotations

import logging
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any, Final

from claudegate.wire.models import ModelCatalog, default_catalog
from claudegate.wire.usage_tap import Usage

__all__ = ["LongContext", "ModelPrice", "PriceTable", "PriceTableError", "UsageTokens"]

logger = logging.getLogger(__name__)

# The usage a price is computed from. One type with the wire's: whatever the reply reported is costed.
UsageTokens = Usage

_PER_MILLION: Final = Decimal(1_000_000)
_PRICE_FIELDS: Final = ("input", "output", "cache_write_5m", "cache_write_1h", "cache_read")
_OPTIONAL_FIELDS: Final = frozenset(
    {"batch_discount", "fast", "data_residency", "long_context", "basis", "assumed_from", "source", "as_of"}
)
_BASES: Final = ("published", "third-party", "assumed")
_SNAPSHOT_DATE: Final = re.compile(r"-\d{8}$")


class PriceTableError(ValueError):
    """A price file is malformed; the message names the file, the row and what is wrong."""


@dataclass(frozen=True, slots=True)
class LongContext:
    """Above ``above`` tokens of total input: input-side prices times ``input``, output times ``output``."""

    above: int
    input: Decimal
    output: Decimal


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """USD per million tokens, the modifiers that apply to the model, and where the numbers come from."""

    input: Decimal
    output: Decimal
    cache_write_5m: Decimal
    cache_write_1h: Decimal
    cache_read: Decimal
    batch_discount: Decimal
    fast: Decimal | None = None
    data_residency: Mapping[str, Decimal] = field(default_factory=dict)
    long_context: LongContext | None = None
    basis: str = "published"
    assumed_from: str | None = None
    source: str | None = None
    as_of: str | None = None


class PriceTable:
    """Model prices with alias/snapshot fallback. Build with :meth:`load`; changed only whole, by
    :meth:`replace_with` (a live reload), so every lookup sees one table or the other (it also remembers
    which unpriced server tools it has already warned about)."""

    __slots__ = ("_catalog", "_prices", "_tool_fees", "_unknown_tools")

    def __init__(
        self,
        prices: Mapping[str, ModelPrice],
        *,
        catalog: ModelCatalog | None = None,
        tool_fees: Mapping[str, Decimal] | None = None,
    ) -> None:
        self._prices = dict(prices)
        self._catalog = catalog if catalog is not None else default_catalog()
        self._tool_fees = dict(tool_fees or {})
        self._unknown_tools: set[str] = set()

    @classmethod
    def load(cls, override_file: Path | None = None, *, catalog: ModelCatalog | None = None) -> PriceTable:
        """The built-in table, with the rows of ``override_file`` (same format) replacing or adding rows."""
        builtin = resources.files("claudegate.data").joinpath("prices.toml").read_text(encoding="utf-8")
        prices, fees = _parse(builtin, "built-in prices.toml")
        if override_file is not None:
            try:
                text = override_file.read_text(encoding="utf-8")
            except OSError as exc:
                raise PriceTableError(f"cannot read price file {override_file}: {exc}") from None
            more_prices, more_fees = _parse(text, str(override_file))
            prices.update(more_prices)
            fees.update(more_fees)
        return cls(prices, catalog=catalog, tool_fees=fees)

    @property
    def tool_fees(self) -> Mapping[str, Decimal]:
        """USD per server-tool request, by tool name (``web_search``, ``web_fetch``)."""
        return dict(self._tool_fees)

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

    def cost(self, model: str, usage: Usage, *, batch: bool) -> Decimal | None:
        """The cost of one call in USD, or None when it cannot be priced (see the module docstring)."""
        price = self.price(model)
        if price is None:
            return None
        one_hour = usage.cache_creation_1h_input_tokens
        five_minutes = max(usage.cache_creation_input_tokens - one_hour, 0)
        input_side = (
            usage.input_tokens * price.input
            + five_minutes * price.cache_write_5m
            + one_hour * price.cache_write_1h
            + usage.cache_read_input_tokens * price.cache_read
        )
        output_side = usage.output_tokens * price.output
        long_context = price.long_context
        if long_context is not None and usage.total_input_tokens > long_context.above:
            input_side *= long_context.input
            output_side *= long_context.output
        total = (input_side + output_side) / _PER_MILLION
        if usage.speed == "fast":
            if price.fast is None:
                return None  # no known fast-mode price: unpriced, rather than costed at the standard rate
            total *= price.fast
        if usage.inference_geo is not None:
            total *= price.data_residency.get(usage.inference_geo, Decimal(1))
        if batch:
            total *= 1 - price.batch_discount
        return total + self._server_tool_fees(usage)

    def _server_tool_fees(self, usage: Usage) -> Decimal:
        fees = Decimal(0)
        for tool, requests in usage.server_tool_requests.items():
            fee = self._tool_fees.get(tool)
            if fee is None:
                if requests and tool not in self._unknown_tools:
                    self._unknown_tools.add(tool)
                    logger.warning(
                        "usage reports %s server-tool requests, which the price table has no fee for; "
                        "add it under [server_tools] in the prices file",
                        tool,
                    )
                continue
            fees += requests * fee
        return fees


def _parse(text: str, source: str) -> tuple[dict[str, ModelPrice], dict[str, Decimal]]:
    try:
        data = tomllib.loads(text, parse_float=Decimal)
    except tomllib.TOMLDecodeError as exc:
        raise PriceTableError(f"{source} is not valid TOML: {exc}") from None
    unknown = set(data) - {"defaults", "models", "server_tools"}
    if unknown:
        raise PriceTableError(
            f"{source}: unknown tables {sorted(unknown)}; expected [defaults], [server_tools] and [models.*]"
        )
    defaults = data.get("defaults", {})
    default_discount = _decimal(
        defaults.get("batch_discount", Decimal("0.5")), source, "defaults.batch_discount"
    )
    fees = {
        tool: _decimal(fee, source, f"server_tools.{tool}")
        for tool, fee in data.get("server_tools", {}).items()
        if tool not in ("source", "as_of")
    }
    prices: dict[str, ModelPrice] = {}
    for model, row in data.get("models", {}).items():
        if not isinstance(row, dict):
            raise PriceTableError(f"{source}: models.{model} must be a table of prices")
        prices[model] = _row(row, default_discount, source, model)
    return prices, fees


def _row(row: dict[str, Any], default_discount: Decimal, source: str, model: str) -> ModelPrice:
    where = f"{source}: models.{model}"
    missing = [name for name in _PRICE_FIELDS if name not in row]
    if missing:
        raise PriceTableError(f"{where} lacks {', '.join(missing)}")
    extra = set(row) - {*_PRICE_FIELDS, *_OPTIONAL_FIELDS}
    if extra:
        raise PriceTableError(f"{where} has unknown fields {sorted(extra)}")
    values = {name: _decimal(row[name], source, f"models.{model}.{name}") for name in _PRICE_FIELDS}
    discount = _decimal(row.get("batch_discount", default_discount), source, f"models.{model}.batch_discount")
    if discount > 1:
        raise PriceTableError(f"{where}.batch_discount must be between 0 and 1")
    basis = row.get("basis", "published")
    if basis not in _BASES:
        raise PriceTableError(f"{where}.basis must be one of {', '.join(_BASES)}, not {basis!r}")
    if basis == "assumed" and not row.get("assumed_from"):
        raise PriceTableError(f"{where}: an assumed price must name the model it copies in assumed_from")
    fast = row.get("fast")
    residency = row.get("data_residency", {})
    if not isinstance(residency, dict):
        raise PriceTableError(f"{where}.data_residency must be a table such as {{ us = 1.1 }}")
    return ModelPrice(
        batch_discount=discount,
        fast=_decimal(fast, source, f"models.{model}.fast") if fast is not None else None,
        data_residency={
            geo: _decimal(v, source, f"models.{model}.data_residency.{geo}") for geo, v in residency.items()
        },
        long_context=_long_context(row.get("long_context"), source, model),
        basis=basis,
        assumed_from=row.get("assumed_from"),
        source=row.get("source"),
        as_of=str(row["as_of"]) if "as_of" in row else None,
        **values,
    )


def _long_context(value: object, source: str, model: str) -> LongContext | None:
    if value is None:
        return None
    where = f"models.{model}.long_context"
    if not isinstance(value, dict) or set(value) != {"above", "input", "output"}:
        raise PriceTableError(f"{source}: {where} must be {{ above = N, input = x, output = y }}")
    above = _decimal(value["above"], source, f"{where}.above")
    return LongContext(
        above=int(above),
        input=_decimal(value["input"], source, f"{where}.input"),
        output=_decimal(value["output"], source, f"{where}.output"),
    )


def _decimal(value: object, source: str, where: str) -> Decimal:
    # Integers arrive as int (``input = 5``) and fractions as Decimal; bools are ints in Python: reject them.
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise PriceTableError(f"{source}: {where} must be a number, got {value!r}")
    number = Decimal(value)
    if number < 0:
        raise PriceTableError(f"{source}: {where} must not be negative")
    return number

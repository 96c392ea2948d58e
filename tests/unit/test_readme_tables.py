"""README's model and price table is the catalogue's and the price table's: regenerate it after changing the
data with ``.venv/bin/python -m tests.unit.test_readme_tables`` and paste it under "Models and prices"."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from claudegate.accounting.prices import PriceTable
from claudegate.wire.models import ModelInfo, default_catalog

README = Path(__file__).resolve().parents[2] / "README.md"


def _number(value: Decimal) -> str:
    return format(value.normalize(), "f")


def _tokens(count: int) -> str:
    if count >= 1_000_000 and count % 1_000_000 == 0:
        return f"{count // 1_000_000}M"
    return f"{count // 1000}k" if count % 1000 == 0 else f"{count:,}"


def _lifecycle(model: ModelInfo) -> str:
    date = (model.retires_at or "")[:10]
    if model.lifecycle == "deprecated":
        return f"deprecated (retires {date})"
    return f"retired {date}" if model.lifecycle == "retired" else "active"


def model_table() -> str:
    prices = PriceTable.load()
    lines = [
        "| model (aliases) | lifecycle | lane | context / max output | input | 5m write | 1h write "
        "| cache read | output | fast | price basis, as of |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for model in default_catalog().models:
        price = prices.price(model.id)
        assert price is not None, model.id
        names = f"`{model.id}`" + (f" (`{'`, `'.join(model.aliases)}`)" if model.aliases else "")
        basis = price.basis + (f" (as `{price.assumed_from}`)" if price.assumed_from else "")
        cells = [
            names,
            _lifecycle(model),
            f"`{model.rate_class}`",
            f"{_tokens(model.context_window)} / {_tokens(model.max_output_tokens)}",
            *(
                _number(value)
                for value in (price.input, price.cache_write_5m, price.cache_write_1h, price.cache_read)
            ),
            _number(price.output),
            f"{_number(price.fast)}x" if price.fast is not None else "–",
            f"{basis}, {price.as_of}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def test_the_readme_table_is_the_catalogue() -> None:
    assert model_table() in README.read_text(encoding="utf-8"), (
        "README's model table is out of date: regenerate it with "
        "`.venv/bin/python -m tests.unit.test_readme_tables`"
    )


if __name__ == "__main__":
    print(model_table())

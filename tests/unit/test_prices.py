from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from claudegate.accounting.prices import PriceTable, PriceTableError, UsageTokens


@pytest.fixture(scope="module")
def prices() -> PriceTable:
    return PriceTable.load()


# Each expected cost is worked out by hand from data/prices.toml (USD per million tokens).
CASES = [
    # 1000 * 3 + 500 * 15 = 10,500 per million
    ("claude-sonnet-4-5", UsageTokens(input_tokens=1000, output_tokens=500), False, "0.0105"),
    # a dated snapshot without a row of its own falls back to its alias
    ("claude-sonnet-4-5-20250929", UsageTokens(input_tokens=1000, output_tokens=500), False, "0.0105"),
    # 200*1 + (1000-400)*1.25 + 400*2 + 5000*0.10 + 100*5 = 200 + 750 + 800 + 500 + 500 = 2750
    (
        "claude-haiku-4-5",
        UsageTokens(
            input_tokens=200,
            output_tokens=100,
            cache_creation_input_tokens=1000,
            cache_creation_1h_input_tokens=400,
            cache_read_input_tokens=5000,
        ),
        False,
        "0.00275",
    ),
    # the same call through Message Batches: half of everything
    (
        "claude-haiku-4-5-20251001",
        UsageTokens(
            input_tokens=200,
            output_tokens=100,
            cache_creation_input_tokens=1000,
            cache_creation_1h_input_tokens=400,
            cache_read_input_tokens=5000,
        ),
        True,
        "0.001375",
    ),
    # an alias whose row is under the dated id: 1,000,000 * 15 + 1000 * 75 per million
    ("claude-opus-4-1", UsageTokens(input_tokens=1_000_000, output_tokens=1000), False, "15.075"),
    # claude-sonnet-4-0 names claude-sonnet-4-20250514: 1000 * 15 per million
    ("claude-sonnet-4-0", UsageTokens(output_tokens=1000), False, "0.015"),
    # one cache-read token of Haiku 3 in a batch: 0.03 * 0.5 per million
    ("claude-3-haiku-20240307", UsageTokens(cache_read_input_tokens=1), True, "0.000000015"),
    # a snapshot the catalogue does not know yet is priced like its alias: 100 * 5 per million
    ("claude-opus-4-7-20260416", UsageTokens(input_tokens=100), False, "0.0005"),
    # Opus 4 list price: 2000 * 18.75 (5-minute cache write) per million
    ("claude-opus-4-20250514", UsageTokens(cache_creation_input_tokens=2000), False, "0.0375"),
    # Sonnet 5: 10,000 * 2 + 10,000 * 10 = 120,000 per million
    ("claude-sonnet-5", UsageTokens(input_tokens=10_000, output_tokens=10_000), False, "0.12"),
    # a call that used no tokens costs exactly nothing (and is priced, not unpriced)
    ("claude-opus-5", UsageTokens(), False, "0"),
]


@pytest.mark.parametrize(("model", "usage", "batch", "expected"), CASES)
def test_cost(prices: PriceTable, model: str, usage: UsageTokens, batch: bool, expected: str) -> None:
    assert prices.cost(model, usage, batch=batch) == Decimal(expected)


@pytest.mark.parametrize("model", ["claude-haiku-5-5", "claude-sonnet-5-5-20270101", "gpt-4o", ""])
def test_unknown_models_are_unpriced_not_free(prices: PriceTable, model: str) -> None:
    assert prices.price(model) is None
    assert prices.cost(model, UsageTokens(input_tokens=1000), batch=False) is None


def test_every_catalogue_model_with_a_list_price_is_priced(prices: PriceTable) -> None:
    for model in ["claude-opus-4-5-20251101", "claude-haiku-4-5-20251001", "claude-sonnet-4-6"]:
        assert prices.price(model) is not None, model


def test_override_file_replaces_and_adds_rows(tmp_path: Path) -> None:
    override = tmp_path / "prices.toml"
    override.write_text(
        """
[models."claude-sonnet-5"]
input = 1
output = 4
cache_write_5m = 1.25
cache_write_1h = 2
cache_read = 0.1

[models."claude-haiku-5-5"]
input = 0.5
output = 2.5
cache_write_5m = 0.625
cache_write_1h = 1
cache_read = 0.05
batch_discount = 0.4
"""
    )
    table = PriceTable.load(override)
    usage = UsageTokens(input_tokens=1_000_000, output_tokens=1_000_000)
    assert table.cost("claude-sonnet-5", usage, batch=False) == Decimal(5)
    # 0.5 + 2.5 = 3, with 40% off in a batch = 1.8
    assert table.cost("claude-haiku-5-5", usage, batch=True) == Decimal("1.8")
    # rows the override does not mention keep their built-in price
    assert table.cost("claude-opus-5", usage, batch=False) == Decimal(30)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[models."m"]\ninput = 1\n', "models.m lacks output, cache_write_5m"),
        (
            '[models."m"]\ninput = -1\noutput = 1\ncache_write_5m = 1\ncache_write_1h = 1\ncache_read = 1\n',
            "models.m.input must not be negative",
        ),
        (
            '[models."m"]\ninput = "1"\noutput = 1\ncache_write_5m = 1\ncache_write_1h = 1\ncache_read = 1\n',
            "models.m.input must be a number",
        ),
        (
            '[models."m"]\ninput = 1\noutput = 1\ncache_write_5m = 1\ncache_write_1h = 1\ncache_read = 1\n'
            "cache_write = 2\n",
            "unknown fields",
        ),
        ("[model]\n", "unknown tables"),
        ("input = \n", "not valid TOML"),
    ],
)
def test_bad_override_files_say_what_to_fix(tmp_path: Path, text: str, message: str) -> None:
    override = tmp_path / "bad.toml"
    override.write_text(text)
    with pytest.raises(PriceTableError, match=message) as caught:
        PriceTable.load(override)
    assert str(override) in str(caught.value)


def test_missing_override_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(PriceTableError, match="cannot read price file"):
        PriceTable.load(tmp_path / "missing.toml")

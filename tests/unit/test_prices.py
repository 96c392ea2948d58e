from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from claudegate.accounting.prices import PriceTable, PriceTableError, UsageTokens
from claudegate.wire.models import default_catalog


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


@pytest.mark.parametrize("model", ["claude-haiku-9-9", "claude-sonnet-9-9-20270101", "gpt-4o", ""])
def test_unknown_models_are_unpriced_not_free(prices: PriceTable, model: str) -> None:
    assert prices.price(model) is None
    assert prices.cost(model, UsageTokens(input_tokens=1000), batch=False) is None


def test_every_catalogue_model_is_priced_with_a_date_and_a_source(prices: PriceTable) -> None:
    for model in default_catalog().models:
        price = prices.price(model.id)
        assert price is not None, f"{model.id} has no price row"
        assert price.as_of, f"{model.id}: the price row lacks as_of"
        assert price.source, f"{model.id}: the price row lacks source"
        assert price.basis in ("published", "third-party", "assumed")


def test_an_assumed_price_is_labelled_and_equals_the_sibling_it_names(prices: PriceTable) -> None:
    # claude-opus-5-5 has no published price here: priced like claude-opus-5, and it says so.
    assumed = prices.price("claude-opus-5-5")
    sibling = prices.price("claude-opus-5")
    assert assumed is not None
    assert sibling is not None
    assert (assumed.basis, assumed.assumed_from) == ("assumed", "claude-opus-5")
    assert (assumed.input, assumed.output, assumed.cache_read) == (
        sibling.input,
        sibling.output,
        sibling.cache_read,
    )


# -- the pricing rules beyond plain tokens, each worked out by hand ------------------------------------------


def test_fast_mode_multiplies_the_whole_call(prices: PriceTable) -> None:
    # Opus 4.6 fast mode is 6x: (1000 * 5 + 1000 * 25) * 6 = 180,000 per million
    usage = UsageTokens(input_tokens=1000, output_tokens=1000, speed="fast")
    assert prices.cost("claude-opus-4-6", usage, batch=False) == Decimal("0.18")
    standard = UsageTokens(input_tokens=1000, output_tokens=1000, speed="standard")
    assert prices.cost("claude-opus-4-6", standard, batch=False) == Decimal("0.03")


def test_fast_mode_on_a_model_without_a_fast_price_is_unpriced_not_standard(prices: PriceTable) -> None:
    usage = UsageTokens(input_tokens=1000, output_tokens=1000, speed="fast")
    assert prices.cost("claude-haiku-4-5", usage, batch=False) is None


def test_server_tool_requests_are_charged_per_request_on_top_of_tokens(prices: PriceTable) -> None:
    # 1000 * 3 + 100 * 15 = 4,500 per million = 0.0045; three searches at $0.01; fetches are free
    usage = UsageTokens(
        input_tokens=1000, output_tokens=100, server_tool_requests={"web_search": 3, "web_fetch": 2}
    )
    assert prices.cost("claude-sonnet-4-6", usage, batch=False) == Decimal("0.0345")
    # the search fee is not discounted in a batch: 0.00225 + 0.03
    assert prices.cost("claude-sonnet-4-6", usage, batch=True) == Decimal("0.03225")


def test_an_unknown_server_tool_is_kept_but_adds_no_fee(prices: PriceTable) -> None:
    usage = UsageTokens(input_tokens=1000, server_tool_requests={"time_travel": 4})
    assert prices.cost("claude-sonnet-4-6", usage, batch=False) == Decimal("0.003")


def test_data_residency_multiplies_by_the_region_rate(prices: PriceTable) -> None:
    # Sonnet 4.6 in the US: (1000 * 3 + 1000 * 15) * 1.1 = 19,800 per million
    us = UsageTokens(input_tokens=1000, output_tokens=1000, inference_geo="us")
    assert prices.cost("claude-sonnet-4-6", us, batch=False) == Decimal("0.0198")
    anywhere = UsageTokens(input_tokens=1000, output_tokens=1000, inference_geo="global")
    assert prices.cost("claude-sonnet-4-6", anywhere, batch=False) == Decimal("0.018")
    # models before 4.6 have no data-residency rate
    old = UsageTokens(input_tokens=1000, output_tokens=1000, inference_geo="us")
    assert prices.cost("claude-haiku-4-5", old, batch=False) == Decimal("0.006")


def test_long_prompts_cost_more_above_the_threshold_on_models_with_that_tier(prices: PriceTable) -> None:
    # Sonnet 4.5 above 200k input: input 2x (6), output 1.5x (22.5).
    at_threshold = UsageTokens(input_tokens=200_000, output_tokens=1000)
    assert prices.cost("claude-sonnet-4-5", at_threshold, batch=False) == Decimal("0.615")
    # 150k uncached + 60k read from cache = 210k input: 150,000*6 + 60,000*0.6 + 1000*22.5 = 958,500
    above = UsageTokens(input_tokens=150_000, cache_read_input_tokens=60_000, output_tokens=1000)
    assert prices.cost("claude-sonnet-4-5", above, batch=False) == Decimal("0.9585")
    # Sonnet 4.6 has the full window at the standard price: 210,000 * 3 + 1000 * 15 = 645,000
    flat = UsageTokens(input_tokens=210_000, output_tokens=1000)
    assert prices.cost("claude-sonnet-4-6", flat, batch=False) == Decimal("0.645")


def test_modifiers_stack(prices: PriceTable) -> None:
    # Opus 4.6, fast, in the US, in a batch: (1000 * 5 + 1000 * 25) * 6 * 1.1 * 0.5 = 99,000 per million
    usage = UsageTokens(input_tokens=1000, output_tokens=1000, speed="fast", inference_geo="us")
    assert prices.cost("claude-opus-4-6", usage, batch=True) == Decimal("0.099")


def test_an_override_can_add_a_fast_rate_a_region_and_a_server_tool_fee(tmp_path: Path) -> None:
    override = tmp_path / "prices.toml"
    override.write_text(
        """
[server_tools]
code_execution = 0.05

[models."claude-haiku-4-5"]
input = 1
output = 5
cache_write_5m = 1.25
cache_write_1h = 2
cache_read = 0.1
fast = 3
data_residency = { eu = 1.2 }
basis = "assumed"
assumed_from = "claude-haiku-4-5"
"""
    )
    table = PriceTable.load(override)
    # (1000 * 1 + 1000 * 5) * 3 * 1.2 + 2 * 0.05 = 0.0216 + 0.1
    usage = UsageTokens(
        input_tokens=1000,
        output_tokens=1000,
        speed="fast",
        inference_geo="eu",
        server_tool_requests={"code_execution": 2},
    )
    assert table.cost("claude-haiku-4-5", usage, batch=False) == Decimal("0.1216")


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

[models."claude-haiku-9-9"]
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
    assert table.cost("claude-haiku-9-9", usage, batch=True) == Decimal("1.8")
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
        (
            '[models."m"]\ninput = 1\noutput = 1\ncache_write_5m = 1\ncache_write_1h = 1\ncache_read = 1\n'
            'basis = "assumed"\n',
            "must name the model it copies",
        ),
        (
            '[models."m"]\ninput = 1\noutput = 1\ncache_write_5m = 1\ncache_write_1h = 1\ncache_read = 1\n'
            "long_context = { above = 5 }\n",
            "long_context must be",
        ),
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

"""The model catalogue keeps pace with the installed SDK: every model it lists is known, served, priced and
has a limits lane of its own; what GET /v1/models returns validates against the SDK's types."""

from __future__ import annotations

import anthropic
import pytest

from claudegate.accounting.prices import PriceTable
from claudegate.errors import InvalidRequestError
from claudegate.simulator.engine import check_betas, known_betas
from claudegate.wire.models import ModelCatalog, default_catalog
from claudegate.wire.models_api import lifecycle_filter
from tests.sdk_models import sdk_model_ids

SDK_MODELS = sdk_model_ids()
# Rate-limit pools Anthropic shares between models (shared/reference, rate limits: "Pools").
POOLED_CLASSES = {"opus-4", "sonnet-4"}


def test_the_sdk_lists_models() -> None:
    assert len(SDK_MODELS) >= 10  # the helper reads the SDK's literal, not an empty tuple


@pytest.mark.parametrize("model", SDK_MODELS)
def test_every_model_the_sdk_lists_is_in_the_catalogue_and_served(model: str) -> None:
    info = default_catalog().resolve(model)
    assert info is not None, f"the SDK lists {model}, data/models.toml does not: add it"
    assert info.served, f"{model} is listed by the SDK but marked retired"


@pytest.mark.parametrize("model", SDK_MODELS)
def test_every_model_the_sdk_lists_is_priced(model: str) -> None:
    assert PriceTable.load().price(model) is not None, f"{model} has no row in data/prices.toml"


def test_each_model_has_a_lane_of_its_own_unless_anthropic_pools_it() -> None:
    catalogue = default_catalog()
    by_class: dict[str, set[str]] = {}
    for model in SDK_MODELS:
        info = catalogue.resolve(model)
        assert info is not None
        by_class.setdefault(info.rate_class, set()).add(info.id)
    shared = {name for name, models in by_class.items() if len(models) > 1}
    assert shared <= POOLED_CLASSES, f"classes shared without a documented pool: {shared - POOLED_CLASSES}"
    assert "unknown" not in by_class
    assert by_class["opus-4"] >= {"claude-opus-4-6", "claude-opus-4-7", "claude-opus-4-8"}
    assert catalogue.resolve("claude-opus-5-5") is not None
    assert len({catalogue.resolve(m).rate_class for m in ("claude-opus-5", "claude-opus-5-5")}) == 2  # type: ignore[union-attr]


@pytest.mark.parametrize("model", default_catalog().models, ids=lambda m: m.id)
def test_every_model_validates_as_the_sdks_model_info(model: object) -> None:
    data = model.to_api()  # type: ignore[attr-defined]
    info = anthropic.types.ModelInfo.model_validate(data)
    assert info.lifecycle == data["lifecycle"]
    assert info.capabilities is not None
    assert set(data["capabilities"]) == set(anthropic.types.ModelCapabilities.model_fields)
    if info.lifecycle == "active":
        assert info.deprecated_at is None
        assert info.retires_at is None
    else:
        assert info.deprecated_at is not None
        assert info.retires_at is not None


def test_the_default_list_leaves_retired_models_out_and_the_filter_brings_them_back() -> None:
    catalogue = default_catalog()
    default = {m.id for m in catalogue.listed()}
    retired = {m.id for m in catalogue.listed(["retired"])}
    assert "claude-sonnet-4-5-20250929" in retired
    assert "claude-sonnet-4-5-20250929" not in default
    assert "claude-opus-4-5-20251101" in default  # deprecated models are still listed
    assert default | retired == {m.id for m in catalogue.models}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ([], {"active", "deprecated"}),
        ([("lifecycle[]", "retired")], {"retired"}),
        ([("lifecycle[]", "active"), ("lifecycle[]", "retired")], {"active", "retired"}),
        ([("lifecycle", "deprecated,retired")], {"deprecated", "retired"}),
        ([("limit", "5")], {"active", "deprecated"}),
    ],
)
def test_lifecycle_filter_reads_every_list_spelling(query: list[tuple[str, str]], expected: set[str]) -> None:
    assert lifecycle_filter(query) == expected


def test_an_unknown_lifecycle_stage_says_which_are_valid() -> None:
    with pytest.raises(InvalidRequestError, match="'active', 'deprecated' or 'retired', got 'beta'"):
        lifecycle_filter([("lifecycle[]", "beta")])


def test_a_catalogue_row_with_an_unknown_lifecycle_is_refused() -> None:
    row = (
        '[[model]]\nid = "m"\ndisplay_name = "M"\ncreated_at = "2026-01-01T00:00:00Z"\nrate_class = "m"\n'
        'context_window = 1\nmax_output_tokens = 1\nmin_cache_tokens = 1\nlifecycle = "sunset"\n'
    )
    with pytest.raises(ValueError, match="lifecycle must be one of"):
        ModelCatalog.from_toml(row)


# -- betas ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        "files-api-2025-04-14",
        "claude-code-20250219,interleaved-thinking-2025-05-14",
        "prompt-caching-scope-2026-01-05",  # released after the list in data/betas.txt was written
        " context-1m-2025-08-07 , fast-mode-2026-02-01 ",
        "warp_drive-2099-12-31",
    ],
)
def test_well_formed_betas_are_accepted_known_or_not(header: str) -> None:
    check_betas([header], known_betas())


@pytest.mark.parametrize(
    "header", ["files api", "files-api", "files-api-2025-4-14", "FILES-API-2025-04-14", "-2025-04-14", "a;b"]
)
def test_malformed_betas_are_refused(header: str) -> None:
    with pytest.raises(InvalidRequestError, match="Unsupported beta header"):
        check_betas(["claude-code-20250219", header], known_betas())


def test_every_beta_the_sdk_names_is_documented() -> None:
    import typing

    named = {
        arg
        for member in typing.get_args(anthropic.types.AnthropicBetaParam)
        for arg in typing.get_args(member)
        if isinstance(arg, str)
    }
    missing = named - known_betas()
    assert not missing, f"add to data/betas.txt: {sorted(missing)}"

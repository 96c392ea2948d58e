"""The token estimator: what a call is expected to use, before it is sent."""

from __future__ import annotations

import pytest

from claudegate.flow.estimator import TokenEstimator

MODEL = "claude-sonnet-4-5"


def test_before_any_reply_input_is_estimated_high_and_output_from_a_prior_capped_by_max_tokens() -> None:
    estimator = TokenEstimator()
    assert estimator.input_tokens(MODEL, 3000) == 1000  # 3 bytes a token: high for English text
    assert estimator.output_tokens(MODEL, 4096) == 320  # 256 expected, reserved with a quarter more
    assert estimator.output_tokens(MODEL, 100) == 100  # never more than the call may produce
    assert estimator.expected_output_tokens(MODEL, 4096) == 256


def test_replies_calibrate_the_model_they_came_from() -> None:
    estimator = TokenEstimator()
    estimator.observe(MODEL, body_bytes=4000, charged_input_tokens=1000, output_tokens=100)
    estimator.observe(MODEL, body_bytes=4000, charged_input_tokens=1000, output_tokens=300)
    assert estimator.input_tokens(MODEL, 8000) == 2000
    assert estimator.expected_output_tokens(MODEL, 4096) == 200
    assert estimator.output_tokens(MODEL, 4096) == 250
    assert estimator.expected_output_tokens("claude-haiku-4-5", 4096) == 256  # another model: untouched


def test_a_few_long_replies_move_the_output_estimate_little() -> None:
    estimator = TokenEstimator()
    for _ in range(50):
        estimator.observe(MODEL, 1000, 300, 200)
    for _ in range(5):
        estimator.observe(MODEL, 1000, 300, 450)  # a streak of long replies, as a spread of lengths has
    # The average of the last 50 replies: 225. (An exponential average as quick as the window would have
    # gone to 368, and every reservation with it.)
    assert estimator.expected_output_tokens(MODEL, 4096) == pytest.approx(225)


def test_the_output_estimate_follows_a_new_workload_within_its_window() -> None:
    estimator = TokenEstimator()
    for _ in range(50):
        estimator.observe(MODEL, 1000, 300, 400)
    for _ in range(50):
        estimator.observe(MODEL, 1000, 300, 100)
    assert estimator.expected_output_tokens(MODEL, 4096) == pytest.approx(100)

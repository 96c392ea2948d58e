"""Usage is read whole: the fields that change the price get attributes, everything else is kept."""

from __future__ import annotations

from claudegate.wire.usage_tap import Usage, UsageTap


def test_price_fields_and_unknown_fields_are_all_read() -> None:
    usage = Usage()
    usage.update(
        {
            "input_tokens": 10,
            "output_tokens": 5,
            "speed": "fast",
            "inference_geo": "us",
            "service_tier": "standard",
            "server_tool_use": {"web_search_requests": 2, "web_fetch_requests": 0, "note": "x"},
            "output_tokens_details": {"thinking_tokens": 3},
            "carbon_grams": 0.4,
        }
    )
    assert (usage.input_tokens, usage.output_tokens, usage.speed, usage.inference_geo) == (
        10,
        5,
        "fast",
        "us",
    )
    assert usage.server_tool_requests == {"web_search": 2, "web_fetch": 0}
    assert usage.extra == {
        "service_tier": "standard",
        "output_tokens_details": {"thinking_tokens": 3},
        "carbon_grams": 0.4,
    }
    assert usage.details() == {
        "service_tier": "standard",
        "output_tokens_details": {"thinking_tokens": 3},
        "carbon_grams": 0.4,
        "speed": "fast",
        "inference_geo": "us",
        "server_tool_use": {"web_search_requests": 2, "web_fetch_requests": 0},
    }


def test_a_stream_keeps_what_message_start_said_and_takes_the_deltas_totals() -> None:
    tap = UsageTap()
    tap.feed(
        b'event: message_start\ndata: {"type":"message_start","message":{"model":"claude-opus-4-6",'
        b'"usage":{"input_tokens":7,"output_tokens":1,"speed":"fast","inference_geo":"us"}}}\n\n'
        b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"},'
        b'"usage":{"output_tokens":9,"server_tool_use":{"web_search_requests":1}}}\n\n'
    )
    usage = tap.finish()
    assert (usage.input_tokens, usage.output_tokens, usage.speed, usage.inference_geo) == (7, 9, "fast", "us")
    assert usage.server_tool_requests == {"web_search": 1}


def test_plain_token_usage_has_no_details() -> None:
    usage = Usage()
    usage.update({"input_tokens": 1, "output_tokens": 2, "cache_creation": {"ephemeral_1h_input_tokens": 0}})
    assert usage.details() is None


def test_usage_reads_back_what_it_reports() -> None:
    reported = {
        "input_tokens": 5,
        "output_tokens": 6,
        "cache_creation_input_tokens": 7,
        "cache_read_input_tokens": 8,
        "cache_creation": {"ephemeral_1h_input_tokens": 3},
        "speed": "fast",
        "service_tier": "standard",
        "server_tool_use": {"web_search_requests": 2},
    }
    usage = Usage.of(reported)
    assert Usage.of(usage.api_json()) == usage
    assert usage.api_json() == reported


def test_the_sum_of_two_calls_is_a_new_usage() -> None:
    first = Usage(input_tokens=10, output_tokens=100, cache_read_input_tokens=4, speed="fast")
    summed = first.plus(Usage(input_tokens=12, output_tokens=30, cache_creation_1h_input_tokens=2))
    assert (summed.input_tokens, summed.output_tokens, summed.cache_read_input_tokens) == (22, 130, 4)
    assert (summed.cache_creation_1h_input_tokens, summed.speed) == (2, "fast")
    assert (first.input_tokens, first.output_tokens) == (10, 100)  # a record holding it keeps what it said

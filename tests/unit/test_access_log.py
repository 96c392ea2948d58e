"""Log lines as an operator reads them: text key=value and JSON objects, flushed in batches but warnings at
once."""

from __future__ import annotations

import io
import json
import logging

from claudegate.accounting.access_log import (
    BatchingStreamHandler,
    JsonFormatter,
    TextFormatter,
    access_fields,
    log_with_fields,
)


class _Stream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.flushed = ""

    def flush(self) -> None:
        self.flushed = self.getvalue()


def _fields(**changes: object) -> dict[str, object]:
    fields = access_fields(
        request_id="req_cg_1",
        upstream_request_id=None,
        org="acme corp",
        user=None,
        key_id=7,
        model="claude-sonnet-4-6",
        upstream="main",
        status=200,
        error_type=None,
        input_tokens=12,
        output_tokens=34,
        cache_write_tokens=0,
        cache_read_tokens=5,
        cost_usd=0.00123456789,
        latency_ms=12.3456,
        ttft_ms=None,
        attempts=1,
        streamed=True,
    )
    return fields | changes


def _logger(stream: _Stream, formatter: logging.Formatter) -> logging.Logger:
    logger = logging.getLogger(f"test.access.{id(stream)}")
    logger.propagate = False
    handler = BatchingStreamHandler(stream, interval_s=3600)
    handler.setFormatter(formatter)
    logger.handlers = [handler]
    logger.setLevel(logging.INFO)
    return logger


def test_text_lines_are_key_value_pairs_with_quoted_spaces_and_no_empty_fields() -> None:
    stream = _Stream()
    log_with_fields(_logger(stream, TextFormatter()), logging.INFO, "call", _fields())
    line = stream.getvalue()
    assert " INFO test.access." in line
    assert (
        'call request_id=req_cg_1 org="acme corp" key_id=7 model=claude-sonnet-4-6 upstream=main status=200'
        in line
    )
    assert "cost_usd=0.001235 latency_ms=12.3 attempts=1 streamed=true\n" in line
    assert "user=" not in line
    assert "ttft_ms" not in line


def test_json_lines_hold_the_fields_at_the_top_level() -> None:
    stream = _Stream()
    log_with_fields(_logger(stream, JsonFormatter()), logging.INFO, "call", _fields(status=529))
    entry = json.loads(stream.getvalue())
    assert (entry["level"], entry["message"], entry["status"], entry["org"]) == (
        "info",
        "call",
        529,
        "acme corp",
    )
    assert entry["user"] is None
    assert entry["time"].endswith("Z")


def test_info_lines_wait_for_a_batch_but_warnings_and_close_flush_at_once() -> None:
    stream = _Stream()
    logger = _logger(stream, TextFormatter())
    logger.info("first")
    assert stream.flushed == ""
    logger.warning("second")
    assert "first" in stream.flushed
    assert "second" in stream.flushed
    logger.info("third")
    assert "third" not in stream.flushed
    logger.handlers[0].close()
    assert "third" in stream.flushed

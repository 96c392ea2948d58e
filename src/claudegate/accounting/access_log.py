"""Logging: one access line per call, and the process's log lines as text or JSON.

Levels mean something: ``info`` has one access line per call (logger ``claudegate.access``) and the start
and stop of services; ``debug`` adds each call's admission and upstream attempts (and, only with
``log_payloads``, its request body); ``warning`` keeps what needs attention. Keys, upstream keys and admin
tokens never reach a line: the access line names the key by its id.

The access line is built only when its logger is enabled for ``info``, and from the values the usage record
already holds, so it costs one ``LogRecord`` and one formatted line per call (a few microseconds; see
``benchmarks/RESULTS.md``). The JSON formatter is written here rather than taken from a library because it
is twenty lines and runs once per call: ``orjson`` does the work.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import Any, Final, TextIO

import orjson

__all__ = [
    "ACCESS_LOGGER",
    "BatchingStreamHandler",
    "JsonFormatter",
    "TextFormatter",
    "access_fields",
    "configure_logging",
    "log_with_fields",
]

ACCESS_LOGGER: Final = "claudegate.access"
_FIELDS_ATTRIBUTE: Final = "claudegate_fields"  # where a record carries its structured fields
_TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def access_fields(
    *,
    request_id: str,
    upstream_request_id: str | None,
    org: str,
    user: str | None,
    key_id: int | None,
    model: str | None,
    upstream: str | None,
    status: int,
    error_type: str | None,
    input_tokens: int,
    output_tokens: int,
    cache_write_tokens: int,
    cache_read_tokens: int,
    cost_usd: float | None,
    latency_ms: float,
    ttft_ms: float | None,
    attempts: int,
    streamed: bool,
) -> dict[str, Any]:
    """The fields of one access line, in the order a reader scans them."""
    return {
        "request_id": request_id,
        "upstream_request_id": upstream_request_id,
        "org": org,
        "user": user,
        "key_id": key_id,
        "model": model,
        "upstream": upstream,
        "status": status,
        "error_type": error_type,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_write_tokens": cache_write_tokens,
        "cache_read_tokens": cache_read_tokens,
        "cost_usd": round(cost_usd, 6) if cost_usd is not None else None,
        "latency_ms": round(latency_ms, 1),
        "ttft_ms": round(ttft_ms, 1) if ttft_ms is not None else None,
        "attempts": attempts,
        "streamed": streamed,
    }


def log_with_fields(logger: logging.Logger, level: int, message: str, fields: dict[str, Any]) -> None:
    """Log ``message`` with structured ``fields``: appended as key=value in text, top-level keys in JSON.

    The record is made directly rather than through ``logger.log``, which walks the stack to find the
    caller's file and line on every call (a third of an access line's cost; an access line needs neither).
    """
    if logger.isEnabledFor(level):
        record = logger.makeRecord(logger.name, level, "", 0, message, (), None)
        setattr(record, _FIELDS_ATTRIBUTE, fields)
        logger.handle(record)


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message key=value …``; values with spaces are quoted."""

    def __init__(self) -> None:
        super().__init__(_TEXT_FORMAT)
        self._second = -1
        self._second_text = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        """The logging module's time format, with the date and time of a second formatted once per second
        (strftime on every line was a fifth of an access line's cost)."""
        second = int(record.created)
        if second != self._second:
            self._second, self._second_text = second, super().formatTime(record, datefmt).split(",")[0]
        return f"{self._second_text},{int(record.msecs):03d}"

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields: dict[str, Any] | None = getattr(record, _FIELDS_ATTRIBUTE, None)
        if not fields:
            return line
        parts = [line]
        for name, value in fields.items():
            if value is None:
                continue
            if value is True or value is False:
                text = "true" if value else "false"
            elif isinstance(value, str):
                text = value
                if not text or " " in text or '"' in text or "=" in text or "\n" in text:
                    text = orjson.dumps(text).decode()
            else:
                text = str(value)
            parts.append(f"{name}={text}")
        return " ".join(parts)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, the record's fields, and the
    exception's traceback as ``exc_info`` when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields: dict[str, Any] | None = getattr(record, _FIELDS_ATTRIBUTE, None)
        if fields:
            entry.update(fields)
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class BatchingStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler that writes each line at once but flushes the stream at most every ``interval_s``
    (from a daemon thread), and at once for warnings and worse: at one access line per call, a flush per
    line was a system call per call. A line waits at most ``interval_s`` to reach the file or pipe.

    ``close`` flushes but leaves the flushing thread running: ``logging.config.dictConfig`` (uvicorn runs
    it for the embedded simulator) closes every handler it finds yet leaves them attached, and lines logged
    after that must still be flushed."""

    def __init__(self, stream: TextIO, interval_s: float = 0.2) -> None:
        super().__init__(stream)
        self._dirty = False
        self._interval_s = interval_s
        self._flusher = threading.Thread(target=self._flush_now_and_then, name="log-flush", daemon=True)
        self._flusher.start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
            self.stream.write(line)
            if record.levelno >= logging.WARNING:
                self.stream.flush()
            else:
                self._dirty = True
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def _flush_now_and_then(self) -> None:
        while True:
            time.sleep(self._interval_s)  # a daemon thread's pace, not a wait for something to happen
            if self._dirty:
                self._dirty = False
                self.flush()

    def close(self) -> None:
        self.flush()
        super().close()


_CHATTY_LIBRARIES = (
    "aiosqlite",
    "alembic.runtime.plugins",  # a line per plugin at every start; the migrations it runs are still said
    "asyncio",
    "sqlalchemy",
    "httpcore",
    "httpx",
    "hpack",
    "urllib3",
    "websockets",
)


def configure_logging(level: str, log_format: str) -> None:
    """Send every log line to stderr at ``level``, as ``text`` or ``json``; replaces earlier handlers."""
    # stderr is line-buffered; a block-buffered stream on the same descriptor lets the handler choose
    # when to flush.
    stream = open(  # noqa: SIM115 - lives as long as the process's logging
        sys.stderr.fileno(), "w", buffering=64 * 1024, encoding="utf-8", errors="replace", closefd=False
    )
    handler = BatchingStreamHandler(stream)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.flush()
    root.addHandler(handler)
    root.setLevel(level.upper())
    # uvicorn's own loggers propagate to the root, so they share the format.
    for name in ("uvicorn", "uvicorn.error"):
        server_log = logging.getLogger(name)
        server_log.handlers.clear()
        server_log.propagate = True
    # Libraries' own debug lines (every SQLite statement, every HTTP/2 frame) would bury the gateway's:
    # debug means claudegate's debug, and the libraries say only what needs attention.
    for name in _CHATTY_LIBRARIES:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))

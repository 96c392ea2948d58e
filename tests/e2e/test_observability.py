"""What an operator sees of a running gateway (a real ``claudegate serve`` process): one access line per call
as text or JSON, and OpenTelemetry traces exported over OTLP/HTTP to a collector, with ``traceparent``
carried to the upstream and back to the caller."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anthropic
import pytest

from tests.gateway_process import gateway_env, running_gateway

PROMPT = "What is the capital of France? (a prompt that must stay out of the log)"
CLIENT_TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_TRACEPARENT = f"00-{CLIENT_TRACE_ID}-00f067aa0ba902b7-01"


def _create_key(env: dict[str, str], workdir: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "claudegate", "keys", "create", "--org", "acme", "--user", "alice", "--json"],
        env=env,
        cwd=workdir,
        capture_output=True,
        check=True,
    )
    return str(json.loads(done.stdout)["key"])


def _call(url: str, key: str, **extra: Any) -> Any:
    client = anthropic.Anthropic(base_url=url, api_key=key, max_retries=0)
    return client.messages.with_raw_response.create(
        model="claude-sonnet-4-6",
        max_tokens=30,
        messages=[{"role": "user", "content": PROMPT}],
        **extra,
    )


def _access_lines(log: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    return [line for line in lines if line["logger"] == "claudegate.access"]


def test_each_call_gets_one_json_access_line_without_key_or_prompt(tmp_path: Path) -> None:
    env = gateway_env(tmp_path / "home", CLAUDEGATE_LOG_FORMAT="json")
    key = _create_key(env, tmp_path)
    with running_gateway(env, tmp_path) as gateway:
        ok = _call(gateway.url, key)
        streamed = _call(gateway.url, key, stream=True)
        for _event in streamed.parse():
            pass
        with pytest.raises(anthropic.BadRequestError):
            _call(gateway.url, key, extra_body={"max_tokens": -1})
        log = gateway.stop()
    assert key not in log
    assert PROMPT not in log
    assert "admitted on" not in log  # a debug line
    lines = _access_lines(log)
    assert [line["status"] for line in lines] == [200, 200, 400]
    first = lines[0]
    assert first["request_id"] == ok.headers["x-claudegate-request-id"]
    assert first["upstream_request_id"] == ok.headers["request-id"]
    message = ok.parse()
    assert (first["org"], first["user"], first["model"], first["upstream"]) == (
        "acme",
        "alice",
        "claude-sonnet-4-6",
        "simulator",
    )
    assert isinstance(first["key_id"], int)
    assert (first["input_tokens"], first["output_tokens"]) == (
        message.usage.input_tokens,
        message.usage.output_tokens,
    )
    assert first["cost_usd"] > 0
    assert first["latency_ms"] > 0
    assert first["attempts"] == 1
    assert first["streamed"] is False
    assert lines[1]["streamed"] is True
    assert lines[1]["ttft_ms"] > 0
    assert lines[2]["error_type"] == "invalid_request_error"


def test_debug_with_payload_logging_shows_the_prompt_in_text_lines(tmp_path: Path) -> None:
    env = gateway_env(tmp_path / "home", CLAUDEGATE_LOG_LEVEL="debug", CLAUDEGATE_LOG_PAYLOADS="true")
    key = _create_key(env, tmp_path)
    with running_gateway(env, tmp_path) as gateway:
        _call(gateway.url, key)
        log = gateway.stop()
    (line,) = [line for line in log.splitlines() if " claudegate.access: call " in line]
    assert " org=acme user=alice " in line
    assert " status=200 " in line
    assert "What is the capital of France?" in line
    assert re.search(
        r"DEBUG claudegate\.pipeline\.lease: request req_cg_\w+: attempt 1 admitted on simulator", log
    )
    assert key not in log


# -- traces ------------------------------------------------------------------------------------------------

_REPLY = {
    "id": "msg_01",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-6",
    "content": [{"type": "text", "text": "Paris."}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {"input_tokens": 21, "output_tokens": 3},
}


class _Recorder(ThreadingHTTPServer):
    """A loopback HTTP server that keeps what it was sent: an upstream that fails its first call with 529
    and then answers, or an OTLP/HTTP collector."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: _Recorder

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        with self.server.lock:
            self.server.requests.append((self.path, dict(self.headers.items()), body))
            calls = sum(1 for path, _, _ in self.server.requests if path.startswith("/v1/messages"))
        if self.path.startswith("/v1/messages") and calls == 1:
            self._reply(529, {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}})
        elif self.path.startswith("/v1/messages"):
            self._reply(200, _REPLY)
        else:
            self._reply(200, {})

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("request-id", "req_upstream_1")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def _recorder() -> Iterator[_Recorder]:
    server = _Recorder()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _spans(collector: _Recorder) -> list[Any]:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    spans = []
    for path, headers, body in collector.requests:
        assert path == "/v1/traces"
        assert {k.lower(): v for k, v in headers.items()}["content-type"] == "application/x-protobuf"
        request = ExportTraceServiceRequest.FromString(body)
        for resource in request.resource_spans:
            service = {a.key: a.value.string_value for a in resource.resource.attributes}["service.name"]
            assert service == "claudegate"
            for scope in resource.scope_spans:
                spans.extend(scope.spans)
    return spans


def _attributes(span: Any) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for attribute in span.attributes:
        value = attribute.value
        values[attribute.key] = getattr(value, value.WhichOneof("value"))
    return values


def test_a_call_is_traced_to_an_otlp_collector_with_each_attempt_and_traceparent(tmp_path: Path) -> None:
    with _recorder() as upstream, _recorder() as collector:
        env = gateway_env(
            tmp_path / "home",
            CLAUDEGATE_UPSTREAM_URL=upstream.url,
            ANTHROPIC_API_KEY="sk-upstream",
            CLAUDEGATE_OTEL_ENDPOINT=collector.url,
        )
        key = _create_key(env, tmp_path)
        with running_gateway(env, tmp_path) as gateway:
            reply = _call(gateway.url, key, extra_headers={"traceparent": CLIENT_TRACEPARENT})
            gateway.stop()  # the gateway sends the spans it still holds as it stops
        spans = _spans(collector)
        sent_upstream = [headers for path, headers, _ in upstream.requests if path == "/v1/messages"]

    assert reply.status_code == 200
    by_name: dict[str, list[Any]] = {}
    for span in spans:
        by_name.setdefault(span.name, []).append(span)
    assert all(span.trace_id.hex() == CLIENT_TRACE_ID for span in spans)
    call_span = next(span for span in spans if span.parent_span_id.hex() == "00f067aa0ba902b7")
    attributes = _attributes(call_span)
    assert call_span.name == "chat claude-sonnet-4-6"
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.request.model"] == "claude-sonnet-4-6"
    assert attributes["gen_ai.response.model"] == "claude-sonnet-4-6"
    assert attributes["gen_ai.request.max_tokens"] == 30
    assert (attributes["gen_ai.usage.input_tokens"], attributes["gen_ai.usage.output_tokens"]) == (21, 3)
    assert attributes["claudegate.attempts"] == 2
    assert attributes["claudegate.org"] == "acme"
    assert attributes["claudegate.request_id"] == reply.headers["x-claudegate-request-id"]

    children = [span for span in spans if span.parent_span_id == call_span.span_id]
    admissions = [span for span in children if span.name == "admission"]
    attempts = sorted(
        (span for span in children if span.name == "chat claude-sonnet-4-6"),
        key=lambda span: _attributes(span)["claudegate.attempt"],
    )
    assert len(admissions) == 2
    assert [_attributes(span)["http.response.status_code"] for span in attempts] == [529, 200]
    assert _attributes(attempts[0])["error.type"] == "http_529"
    assert "error.type" not in _attributes(attempts[1])

    # Each attempt's context went to the upstream, and the call's came back to the caller.
    assert [headers["traceparent"] for headers in sent_upstream] == [
        f"00-{CLIENT_TRACE_ID}-{span.span_id.hex()}-01" for span in attempts
    ]
    assert reply.headers["traceparent"] == f"00-{CLIENT_TRACE_ID}-{call_span.span_id.hex()}-01"


def test_without_an_endpoint_nothing_is_traced_and_the_caller_s_traceparent_passes_on(tmp_path: Path) -> None:
    with _recorder() as upstream:
        env = gateway_env(
            tmp_path / "home", CLAUDEGATE_UPSTREAM_URL=upstream.url, ANTHROPIC_API_KEY="sk-upstream"
        )
        key = _create_key(env, tmp_path)
        with running_gateway(env, tmp_path) as gateway:
            reply = _call(gateway.url, key, extra_headers={"traceparent": CLIENT_TRACEPARENT})
        sent = [headers for path, headers, _ in upstream.requests if path == "/v1/messages"]
    assert "traceparent" not in reply.headers
    assert [headers["traceparent"] for headers in sent] == [CLIENT_TRACEPARENT, CLIENT_TRACEPARENT]

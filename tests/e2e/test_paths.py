"""Paths reach the upstream exactly as the gateway checked them: an encoded slash or dot never turns one
segment into several, nothing undecodable becomes a 500, and routes the gateway does not know still work,
authenticated and with the client's key swapped for the upstream's."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import orjson
import pytest

from tests.e2e.conftest import GatewayServer, Stack, gateway_settings
from tests.servers import running_in_thread

VERSION = {"anthropic-version": "2023-06-01"}
ORIGIN = "x-claudegate-origin"


class EchoUpstream:
    """An upstream that answers every request with what it received: request line, headers and body."""

    def __init__(self) -> None:
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                line, *header_lines = head[:-4].split(b"\r\n")
                headers = [h.split(b":", 1) for h in header_lines]
                length = next((int(v) for k, v in headers if k.strip().lower() == b"content-length"), 0)
                body = await reader.readexactly(length)
                reply = orjson.dumps(
                    {
                        "request_line": line.decode("latin-1"),
                        "headers": {
                            k.strip().lower().decode(): v.strip().decode("latin-1") for k, v in headers
                        },
                        "body": body.decode("latin-1"),
                    }
                )
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    + f"content-length: {len(reply)}\r\n\r\n".encode()
                    + reply
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()


@pytest.fixture(scope="module")
def echo_gateway(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A gateway, on the stack's database (its keys), in front of the echo upstream."""
    with running_in_thread(EchoUpstream) as upstream:
        assert isinstance(upstream, EchoUpstream)
        tmp: Path = tmp_path_factory.mktemp("echo")
        settings = gateway_settings(upstream.url, stack.database_url, tmp)
        with running_in_thread(lambda: GatewayServer(settings)) as server:
            assert isinstance(server, GatewayServer)
            yield server.url


def raw_request(url: str, target: bytes, key: str, method: bytes = b"GET") -> tuple[int, dict[str, Any]]:
    """Send a request line exactly as given (no client normalising it first); the status and JSON reply."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(
            method + b" " + target + b" HTTP/1.1\r\nhost: gateway\r\nx-api-key: " + key.encode()
            + b"\r\nanthropic-version: 2023-06-01\r\nconnection: close\r\n\r\n"
        )  # fmt: skip
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), orjson.loads(body)


def test_an_encoded_traversal_never_reaches_another_route(stack: Stack) -> None:
    owner = anthropic.Anthropic(base_url=stack.url, api_key=stack.org_a.key, max_retries=0)
    batch = owner.messages.batches.create(
        requests=[{"custom_id": "q", "params": {"model": "claude-sonnet-4-6", "max_tokens": 5,
                                                 "messages": [{"role": "user", "content": "Hi"}]}}]
    )  # fmt: skip
    target = f"/v1/models/..%2F..%2Fv1%2Fmessages%2Fbatches%2F{batch.id}%2Fresults"
    for key in (stack.org_b.key, stack.org_a.key):
        response = httpx2.get(stack.url + target, headers={"x-api-key": key, **VERSION})
        assert response.status_code == 404
        assert response.headers[ORIGIN] == "gateway"
        assert response.json()["type"] == "error"
        assert response.json()["error"]["type"] == "not_found_error"


@pytest.mark.parametrize(
    "segment",
    [
        "%E2%82%AC",  # non-Latin-1 once decoded
        "%C3%A9",  # Latin-1, but not ASCII
        "claude%20sonnet",
        "claude%0D%0Ax-api-key:%20stolen",
        "claude%3Fbeta=true",
        "claude%23frag",
        "..",
        "%2E%2E",
        "claude%2Fsonnet",
        "claude%25",
    ],
)
def test_a_path_segment_that_is_not_a_name_is_the_gateways_404(stack: Stack, segment: str) -> None:
    status, body = raw_request(stack.url, f"/v1/models/{segment}".encode(), stack.org_a.key)
    assert status == 404
    assert body["type"] == "error"
    assert body["error"]["type"] == "not_found_error"


def test_a_nul_in_a_path_segment_is_a_400_that_says_so(stack: Stack) -> None:
    status, body = raw_request(stack.url, b"/v1/models/claude%00", stack.org_a.key)
    assert status == 400
    assert body["error"]["type"] == "invalid_request_error"
    assert "NUL" in body["error"]["message"]


def test_ids_of_the_wrong_shape_are_not_found_before_any_lookup(stack: Stack) -> None:
    headers = {"x-api-key": stack.org_a.key, **VERSION}
    for path in (
        "/v1/models/-claude",
        "/v1/messages/batches/not-a-batch",
        "/v1/messages/batches/msgbatch_a%2Db/results",
        "/v1/files/file-1",
        "/v1/files/file_a.b/content",
        "/chats/chat_123",
    ):
        response = httpx2.get(stack.url + path, headers=headers)
        assert response.status_code == 404, path
        assert response.headers[ORIGIN] == "gateway", path
        assert response.json()["error"]["type"] == "not_found_error", path
    cursor = httpx2.get(stack.url + "/v1/messages/batches?after_id=x%20y", headers=headers)
    assert cursor.status_code == 400
    assert "after_id" in cursor.json()["error"]["message"]


def test_a_route_the_gateway_does_not_know_passes_through_with_the_upstream_key(
    stack: Stack, echo_gateway: str
) -> None:
    response = httpx2.post(
        f"{echo_gateway}/v1/skills/skill_01/versions?beta=true",
        headers={"x-api-key": stack.org_a.key, "anthropic-beta": "skills-2025-10-02", **VERSION},
        content=b"--form-data--",
    )
    assert response.status_code == 200
    seen = response.json()
    assert seen["request_line"] == "POST /v1/skills/skill_01/versions?beta=true HTTP/1.1"
    assert seen["headers"]["x-api-key"] == "sk-test"  # the gateway's upstream key, not the client's
    assert stack.org_a.key not in orjson.dumps(seen).decode()
    assert seen["headers"]["anthropic-beta"] == "skills-2025-10-02"
    assert seen["body"] == "--form-data--"

    # Without a gateway key, nothing reaches the upstream.
    refused = httpx2.get(f"{echo_gateway}/v1/skills", headers=VERSION)
    assert refused.status_code == 401
    assert refused.headers[ORIGIN] == "gateway"


def test_what_is_forwarded_is_printable_ascii(stack: Stack, echo_gateway: str) -> None:
    # uvicorn refuses raw non-ASCII in a query before the gateway sees it; what it lets through that a
    # strict upstream parser may not (quotes, angle brackets, braces) is percent-encoded on the way.
    status, seen = raw_request(
        echo_gateway, b'/v1/skills/sk%5Fone?name=%E2%82%AC&q=a%20b&x="y"<{|}>', stack.org_a.key
    )
    assert status == 200
    assert seen["request_line"] == (
        "GET /v1/skills/sk_one?name=%E2%82%AC&q=a%20b&x=%22y%22%3C%7B%7C%7D%3E HTTP/1.1"
    )

    status, body = raw_request(echo_gateway, b"/v1/skills/..%2Fmessages", stack.org_a.key)
    assert status == 404
    assert body["error"]["type"] == "not_found_error"


def test_unknown_routes_can_be_closed(stack: Stack, tmp_path: Path) -> None:
    with running_in_thread(EchoUpstream) as upstream:
        assert isinstance(upstream, EchoUpstream)
        settings = gateway_settings(upstream.url, stack.database_url, tmp_path)
        settings = settings.model_copy(update={"pass_unknown_routes": False})
        with running_in_thread(lambda: GatewayServer(settings)) as server:
            assert isinstance(server, GatewayServer)
            response = httpx2.get(
                f"{server.url}/v1/skills", headers={"x-api-key": stack.org_a.key, **VERSION}
            )
    assert response.status_code == 404
    assert response.headers[ORIGIN] == "gateway"

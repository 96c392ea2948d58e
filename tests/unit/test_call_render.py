"""A logged call as a curl command: the shell gets the body and headers exactly, and the key only from the
environment."""

from __future__ import annotations

import shlex

from claudegate.diagnostics import curl_command, masked_headers


def test_credentials_are_masked_and_hop_headers_dropped() -> None:
    headers = masked_headers(
        [
            (b"x-api-key", b"cg-secret"),
            (b"authorization", b"Bearer cg-secret"),
            (b"host", b"gateway:8080"),
            (b"anthropic-version", b"2023-06-01"),
        ]
    )
    assert headers == [["x-api-key", "***"], ["authorization", "***"], ["anthropic-version", "2023-06-01"]]


def test_the_command_carries_the_body_and_headers_exactly() -> None:
    body = b'{"messages":[{"role":"user","content":"it\'s $HOME `here`"}]}'
    command = curl_command(
        "http://127.0.0.1:8080/",
        {
            "path": "/v1/messages",
            "headers": [["x-api-key", "***"], ["x-note", "a 'quoted' one"]],
            "body": body,
        },
    )
    words = shlex.split(command)
    assert words[:3] == ["curl", "-sS", "http://127.0.0.1:8080/v1/messages"]
    assert words[words.index("--data-binary") + 1] == body.decode()
    assert "x-note: a 'quoted' one" in words
    assert "x-api-key: $CLAUDEGATE_KEY" in words  # left for the shell to expand, in double quotes
    assert '"x-api-key: $CLAUDEGATE_KEY"' in command
    assert "cg-" not in command

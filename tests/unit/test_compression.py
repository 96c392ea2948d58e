"""Which clients get gzip: ``accept-encoding`` read as RFC 9110 says (a zero quality refuses a coding)."""

from __future__ import annotations

import pytest

from claudegate.server.compression import wants_gzip


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (b"gzip, deflate", True),  # the anthropic SDK (httpx)
        (b"gzip, deflate, br, zstd", True),  # browsers and curl --compressed
        (b"GZIP", True),
        (b"br;q=1.0, gzip;q=0.5", True),
        (b"*", True),
        (b"gzip;q=0", False),
        (b"identity", False),
        (b"br, zstd", False),
        (b"", False),
        (None, False),
    ],
)
def test_accept_encoding(accept: bytes | None, expected: bool) -> None:
    assert wants_gzip(accept) is expected

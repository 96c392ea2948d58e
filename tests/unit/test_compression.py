"""Which coding a client gets, read from ``accept-encoding`` as RFC 9110 says (a zero quality refuses a
coding, ``*`` stands for the unnamed ones), and the request-body inflaters' bound and error handling."""

from __future__ import annotations

import gzip

import brotli
import pytest
import zstandard

from claudegate.server.codecs import InflateError, available_codings, choose_coding, encoder, inflater

ALL = ("zstd", "br", "gzip")


@pytest.mark.parametrize(
    ("accept", "offered", "expected"),
    [
        (b"gzip, deflate", ALL, "gzip"),  # the anthropic SDK (httpx)
        (b"gzip, deflate, br, zstd", ALL, "zstd"),  # browsers and curl --compressed
        (b"gzip, deflate, br", ALL, "br"),
        (b"GZIP", ALL, "gzip"),
        (b"br;q=1.0, gzip;q=0.5, zstd;q=0.8", ALL, "br"),
        (b"zstd;q=0, *", ALL, "br"),
        (b"*", ALL, "zstd"),
        (b"gzip;q=0", ALL, None),
        (b"identity", ALL, None),
        (b"br, zstd", ("gzip",), None),  # without the compression extra only gzip is offered
        (b"br, zstd, gzip;q=0.1", ("gzip",), "gzip"),
        (b"", ALL, None),
        (None, ALL, None),
    ],
)
def test_the_coding_follows_the_client_s_qualities(
    accept: bytes | None, offered: tuple[str, ...], expected: str | None
) -> None:
    assert choose_coding(accept, offered) == expected


def test_every_coding_is_offered_when_its_library_is_installed() -> None:
    assert available_codings() == ALL


@pytest.mark.parametrize("coding", ALL)
def test_each_flushed_chunk_decodes_on_its_own(coding: str) -> None:
    events = [b"event: ping\ndata: {}\n\n" * (n + 1) for n in range(5)]
    compressor = encoder(coding, stream=True)
    decode = {
        "gzip": __import__("zlib").decompressobj(31).decompress,
        "br": brotli.Decompressor().process,
        "zstd": zstandard.ZstdDecompressor().decompressobj().decompress,
    }[coding]
    for index, event in enumerate(events):
        assert decode(compressor.chunk(event, last=index == len(events) - 1)) == event


BOMB = b"{" + b" " * 50_000_000 + b"}"
COMPRESS = {
    "gzip": lambda data: gzip.compress(data, 9),
    "br": lambda data: brotli.compress(data, quality=5),
    "zstd": lambda data: zstandard.ZstdCompressor(level=3).compress(data),
}


@pytest.mark.parametrize("coding", ALL)
def test_inflation_stops_soon_after_the_room_is_used(coding: str) -> None:
    decoder = inflater(coding)
    assert decoder is not None
    out = decoder.inflate(COMPRESS[coding](BOMB), 1_000_000)
    assert 1_000_000 <= len(out) < len(BOMB) // 2  # stopped at or past the room, long before the whole bomb
    whole = inflater(coding)
    assert whole is not None
    assert whole.inflate(COMPRESS[coding](b'{"a": 1}'), 1000) == b'{"a": 1}'
    assert whole.finished


@pytest.mark.parametrize("coding", ALL)
def test_a_corrupt_or_cut_body_is_reported(coding: str) -> None:
    broken = inflater(coding)
    assert broken is not None
    with pytest.raises(InflateError):
        broken.inflate(b"\xff" * 64, 1000)
    cut = inflater(coding)
    assert cut is not None
    cut.inflate(COMPRESS[coding](b'{"a": "' + b"x" * 5000 + b'"}')[:-8], 100_000)
    assert not cut.finished


def test_an_unknown_coding_is_not_read() -> None:
    assert inflater("compress") is None


def test_without_the_compression_extra_only_gzip_is_offered(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    missing = {"brotli", "zstandard"}
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name in missing else real(name))
    assert available_codings() == ("gzip",)
    assert choose_coding(b"zstd, br, gzip", available_codings()) == "gzip"
    assert inflater("br") is None
    assert inflater("zstd") is None
    assert inflater("gzip") is not None

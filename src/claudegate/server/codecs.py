"""The content codings the gateway speaks (gzip always; br and zstd with the ``compression`` extra installed):
choosing one from a client's ``accept-encoding``, compressing a reply chunk by chunk with a flush after each,
and inflating a request body with a bound on the inflated size.

``brotli`` and ``zstandard`` are found at start (without importing them) and imported the first time a client
asks for them, so a gateway whose clients only speak gzip never loads them.
"""

from __future__ import annotations

import importlib
import importlib.util
import zlib
from collections.abc import Mapping
from typing import Any, Protocol

__all__ = ["Encoder", "InflateError", "Inflater", "available_codings", "choose_coding", "encoder", "inflater"]

_GZIP_WBITS = 31  # zlib's window bits for a gzip wrapper
_INFLATE_WBITS = 47  # inflate a gzip or zlib wrapper, whichever the body has
# Levels: a stream is compressed at the fastest level (its time to first token must not grow), one-piece JSON
# at a level that still costs well under a millisecond for a typical reply.
_LEVELS: Mapping[str, tuple[int, int]] = {"gzip": (1, 6), "br": (1, 5), "zstd": (1, 3)}
_PREFERENCE = ("zstd", "br", "gzip")  # among equally acceptable codings, the one that compresses best
_MODULES = {"br": "brotli", "zstd": "zstandard"}
_ZSTD_STEP = 256  # compressed bytes fed at a time: one step inflates to at most ~8 MB whatever the input


class InflateError(ValueError):
    """A request body that is not valid in the coding it claims."""


class Encoder(Protocol):
    def chunk(self, data: bytes, *, last: bool) -> bytes:
        """``data`` compressed and flushed so that the client can decode everything sent so far."""


class Inflater(Protocol):
    def inflate(self, data: bytes, room: int) -> bytes:
        """``data`` inflated; output may stop once it exceeds ``room`` bytes (the caller then refuses)."""

    @property
    def finished(self) -> bool:
        """Whether the compressed body was complete."""


def available_codings() -> tuple[str, ...]:
    """The codings this installation can offer, best first."""
    return tuple(
        coding
        for coding in _PREFERENCE
        if coding not in _MODULES or importlib.util.find_spec(_MODULES[coding]) is not None
    )


def choose_coding(accept_encoding: bytes | None, offered: tuple[str, ...]) -> str | None:
    """The coding to answer with: the offered one the client gives the highest quality, the best on a tie;
    None when it accepts none of them (``coding;q=0`` refuses a coding; ``*`` stands for the unnamed ones)."""
    if not accept_encoding:
        return None
    qualities: dict[str, float] = {}
    for part in accept_encoding.decode("latin-1").lower().split(","):
        coding, _, params = part.partition(";")
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        qualities[coding.strip()] = quality
    wildcard = qualities.get("*", 0.0)
    best: str | None = None
    best_quality = 0.0
    for coding in offered:  # best first, so a tie keeps the better coding
        quality = qualities.get(coding, wildcard)
        if quality > best_quality:
            best, best_quality = coding, quality
    return best


def encoder(coding: str, *, stream: bool) -> Encoder:
    """A fresh compressor for one reply."""
    level = _LEVELS[coding][0 if stream else 1]
    if coding == "br":
        return _BrotliEncoder(importlib.import_module("brotli"), level)
    if coding == "zstd":
        return _ZstdEncoder(importlib.import_module("zstandard"), level)
    return _GzipEncoder(level)


def inflater(coding: str) -> Inflater | None:
    """A decompressor for one request body, or None if ``coding`` is not one this installation reads."""
    if coding in ("gzip", "x-gzip", "deflate"):
        return _ZlibInflater()
    if coding in _MODULES and coding in available_codings():
        module = importlib.import_module(_MODULES[coding])
        return _BrotliInflater(module) if coding == "br" else _ZstdInflater(module)
    return None


class _GzipEncoder:
    __slots__ = ("_compressor",)

    def __init__(self, level: int) -> None:
        self._compressor = zlib.compressobj(level, zlib.DEFLATED, _GZIP_WBITS)

    def chunk(self, data: bytes, *, last: bool) -> bytes:
        compressor = self._compressor
        return compressor.compress(data) + compressor.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)


class _BrotliEncoder:
    __slots__ = ("_compressor",)

    def __init__(self, brotli: Any, level: int) -> None:
        self._compressor = brotli.Compressor(quality=level)

    def chunk(self, data: bytes, *, last: bool) -> bytes:
        compressor = self._compressor
        out: bytes = compressor.process(data)
        tail: bytes = compressor.finish() if last else compressor.flush()
        return out + tail


class _ZstdEncoder:
    __slots__ = ("_compressor", "_zstd")

    def __init__(self, zstd: Any, level: int) -> None:
        self._zstd = zstd
        self._compressor = zstd.ZstdCompressor(level=level).compressobj()

    def chunk(self, data: bytes, *, last: bool) -> bytes:
        compressor = self._compressor
        out: bytes = compressor.compress(data)
        mode = self._zstd.COMPRESSOBJ_FLUSH_FINISH if last else self._zstd.COMPRESSOBJ_FLUSH_BLOCK
        tail: bytes = compressor.flush(mode)
        return out + tail


class _ZlibInflater:
    __slots__ = ("_inflater",)

    def __init__(self) -> None:
        self._inflater = zlib.decompressobj(_INFLATE_WBITS)

    def inflate(self, data: bytes, room: int) -> bytes:
        try:
            return self._inflater.decompress(data, room)
        except zlib.error as error:
            raise InflateError(str(error)) from None

    @property
    def finished(self) -> bool:
        return self._inflater.eof


class _BrotliInflater:
    __slots__ = ("_brotli", "_inflater")

    def __init__(self, brotli: Any) -> None:
        self._brotli = brotli
        self._inflater = brotli.Decompressor()

    def inflate(self, data: bytes, room: int) -> bytes:
        inflater = self._inflater
        try:
            out: bytes = inflater.process(data, output_buffer_limit=room)
            while len(out) < room and not inflater.can_accept_more_data():
                out += inflater.process(b"", output_buffer_limit=room - len(out))
        except self._brotli.error as error:
            raise InflateError(str(error) or "corrupt brotli stream") from None
        return out

    @property
    def finished(self) -> bool:
        return bool(self._inflater.is_finished())


class _ZstdInflater:
    """zstandard's decompressor takes no output bound, so the input is fed a little at a time."""

    __slots__ = ("_inflater", "_zstd")

    def __init__(self, zstd: Any) -> None:
        self._zstd = zstd
        self._inflater = zstd.ZstdDecompressor().decompressobj()

    def inflate(self, data: bytes, room: int) -> bytes:
        out = bytearray()
        try:
            for start in range(0, len(data), _ZSTD_STEP):
                out += self._inflater.decompress(data[start : start + _ZSTD_STEP])
                if len(out) > room:
                    break
        except self._zstd.ZstdError as error:
            raise InflateError(str(error)) from None
        return bytes(out)

    @property
    def finished(self) -> bool:
        return bool(self._inflater.eof)

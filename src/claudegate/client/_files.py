"""``client.beta.files``: the official SDK's Files API surface, served by the very code behind the gateway's
``/v1/files`` routes (``runtime.files``), so a file is visible only to the organisation that uploaded it (an
other organisation's file id is a ``NotFoundError`` exactly like a missing one), and each file is read from
the upstream it was uploaded to. Replies are the SDK's ``BetaFileMetadata`` and ``BetaDeletedFile``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterable, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import httpx2
import orjson
from anthropic.types.beta import BetaDeletedFile, BetaFileMetadata

from claudegate.client._routes import call_route
from claudegate.pipeline.sink import RawHeaders
from claudegate.runtime import files as file_routes

if TYPE_CHECKING:
    from claudegate.client._client import AsyncClient

__all__ = ["AsyncFiles", "FileContent", "FileListing", "FilePage"]

_PREFIX = "/v1/files"
_FILES_BETA = "files-api-2025-04-14"

FileInput = bytes | IO[bytes] | os.PathLike[str] | tuple[str | None, Any] | tuple[str | None, Any, str | None]
"""What ``upload(file=…)`` takes, as the SDK's ``FileTypes``: bytes, a binary file, a path, or a tuple
``(filename, content[, media type])``."""


class FilePage:
    """One page of ``files.list``: ``data`` (``BetaFileMetadata``), ``has_more``, ``first_id``, ``last_id``
    and ``next_page`` (pass it as ``page=`` for the next, older page, or ``await page.get_next_page()``)."""

    def __init__(self, data: dict[str, Any], fetch: Callable[[str], Awaitable[FilePage]]) -> None:
        self.data = [BetaFileMetadata.construct(**item) for item in data.get("data", [])]
        self.has_more = bool(data.get("has_more"))
        self.first_id: str | None = data.get("first_id")
        self.last_id: str | None = data.get("last_id")
        self.next_page: str | None = data.get("next_page")
        self._fetch = fetch

    def has_next_page(self) -> bool:
        return self.next_page is not None

    async def get_next_page(self) -> FilePage:
        if self.next_page is None:
            raise RuntimeError("No more pages to fetch; check has_next_page() first")
        return await self._fetch(self.next_page)


class FileListing:
    """What ``files.list`` returns, as the SDK's paginator: ``await`` it for the first page, or ``async for``
    it for every file of every page."""

    def __init__(self, first: Callable[[], Awaitable[FilePage]]) -> None:
        self._first = first

    def __await__(self) -> Generator[Any, None, FilePage]:
        return self._first().__await__()

    async def __aiter__(self) -> AsyncIterator[BetaFileMetadata]:
        page: FilePage | None = await self._first()
        while page is not None:
            for item in page.data:
                yield item
            page = await page.get_next_page() if page.has_next_page() else None


class FileContent:
    """A downloaded file, read as the SDK's binary response is: ``read()``, ``content``, ``text``,
    ``write_to_file(path)``, ``headers``."""

    def __init__(self, headers: RawHeaders, content: bytes) -> None:
        self.headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in headers}
        self.content = content

    @property
    def text(self) -> str:
        return self.content.decode()

    def read(self) -> bytes:
        return self.content

    def write_to_file(self, file: str | os.PathLike[str]) -> None:
        Path(file).write_bytes(self.content)


class AsyncFiles:
    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def upload(
        self,
        *,
        file: FileInput,
        betas: Iterable[str] | None = None,
        extra_headers: Mapping[str, str] | None = None,
    ) -> BetaFileMetadata:
        """Upload a file (up to 500 MB) for this organisation."""
        # httpx2 (the SDK's own HTTP library) writes the multipart form the SDK would send.
        form = httpx2.Request("POST", "http://claudegate.local", files={"file": _file_part(file)})
        headers = [(b"content-type", form.headers["content-type"].encode("latin-1"))]
        _, data = await call_route(
            self._client,
            file_routes.dispatch,
            "POST",
            _PREFIX,
            body=form.read(),
            headers=headers + _headers(betas, extra_headers),
        )
        return BetaFileMetadata.construct(**orjson.loads(data))

    def list(
        self,
        *,
        ids: Iterable[str] | None = None,
        limit: int | None = None,
        page: str | None = None,
        betas: Iterable[str] | None = None,
        extra_headers: Mapping[str, str] | None = None,
    ) -> FileListing:
        """This organisation's files, newest first (``ids``: just those of them)."""
        fixed: list[tuple[str, str | int]] = [("ids[]", file_id) for file_id in ids or ()]
        if limit:
            fixed.append(("limit", limit))

        async def fetch(cursor: str | None) -> FilePage:
            query = fixed + ([("page", cursor)] if cursor else [])
            data = await self._json("GET", _PREFIX, betas, extra_headers, query=urlencode(query))
            return FilePage(data, fetch)

        return FileListing(lambda: fetch(page))

    async def retrieve_metadata(
        self,
        file_id: str,
        *,
        betas: Iterable[str] | None = None,
        extra_headers: Mapping[str, str] | None = None,
    ) -> BetaFileMetadata:
        data = await self._json("GET", _file_path(file_id), betas, extra_headers)
        return BetaFileMetadata.construct(**data)

    async def download(
        self,
        file_id: str,
        *,
        betas: Iterable[str] | None = None,
        extra_headers: Mapping[str, str] | None = None,
    ) -> FileContent:
        """A file's content (only files the API made, or marked downloadable, can be downloaded)."""
        headers, data = await call_route(
            self._client,
            file_routes.dispatch,
            "GET",
            _file_path(file_id) + "/content",
            headers=_headers(betas, extra_headers),
        )
        return FileContent(headers, data)

    async def delete(
        self,
        file_id: str,
        *,
        betas: Iterable[str] | None = None,
        extra_headers: Mapping[str, str] | None = None,
    ) -> BetaDeletedFile:
        data = await self._json("DELETE", _file_path(file_id), betas, extra_headers)
        return BetaDeletedFile.construct(**data)

    async def _json(
        self,
        method: str,
        path: str,
        betas: Iterable[str] | None,
        extra_headers: Mapping[str, str] | None,
        *,
        query: str = "",
    ) -> Any:
        headers = [(b"content-type", b"application/json"), *_headers(betas, extra_headers)]
        _, data = await call_route(
            self._client, file_routes.dispatch, method, path, query=query, headers=headers
        )
        return orjson.loads(data)


def _headers(betas: Iterable[str] | None, extra: Mapping[str, str] | None) -> RawHeaders:
    beta = ",".join(dict.fromkeys([_FILES_BETA, *(betas or ())]))
    given = [
        (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in (extra or {}).items()
    ]
    return [(b"anthropic-beta", beta.encode("latin-1")), *given]


def _file_part(file: FileInput) -> Any:
    if isinstance(file, os.PathLike):
        path = Path(file)
        return (path.name, path.read_bytes())
    if isinstance(file, bytes):
        return ("upload", file)
    return file


def _file_path(file_id: str) -> str:
    if not file_id:
        raise ValueError(f"Expected a non-empty value for `file_id` but received {file_id!r}")
    return f"{_PREFIX}/{quote(file_id, safe='')}"

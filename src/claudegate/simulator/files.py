"""The simulator's Files API: uploads kept in memory, per API key (the API keeps them per workspace).

What is stored is bounded: a file of at most the API's 500 MB, and all files together at most the
simulator's ``max_file_bytes``; past that, uploads get the API's storage-quota error until files are deleted.

Files uploaded to the API are not downloadable (only files the API itself creates, such as code execution
outputs, are); the simulator follows that, and an upload with ``x-simulator-downloadable: true`` makes a
downloadable one, so clients' download paths can be tested.
"""

from __future__ import annotations

import mimetypes
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from claudegate.errors import InvalidRequestError, NotFoundError, RequestTooLargeError

__all__ = ["MAX_FILE_BYTES", "FileStore", "StoredFile", "file_not_found"]

MAX_FILE_BYTES = 500 * 1024 * 1024
_MIN_EXPIRY_S = 3600
_MAX_EXPIRY_S = 7_776_000


def file_not_found(file_id: str) -> NotFoundError:
    return NotFoundError(f"File not found: {file_id}")


@dataclass(slots=True)
class StoredFile:
    id: str
    owner: str
    filename: str
    mime_type: str
    data: bytes
    created_at: datetime
    downloadable: bool
    expires_at: datetime | None

    def to_api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "file",
            "filename": self.filename,
            "mime_type": self.mime_type,
            "size_bytes": len(self.data),
            "created_at": _iso(self.created_at),
            "downloadable": self.downloadable,
            "expires_at": _iso(self.expires_at) if self.expires_at else None,
        }


class FileStore:
    """All keys' files, oldest first (ids are unique across keys, so a file's size is a fact of its id)."""

    __slots__ = ("_files", "_stored_bytes", "max_bytes")

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._files: OrderedDict[str, StoredFile] = OrderedDict()
        self._stored_bytes = 0

    def upload(
        self,
        owner: str,
        *,
        filename: str | None,
        mime_type: str | None,
        data: bytes,
        downloadable: bool = False,
        expires_in_seconds: int | None = None,
    ) -> StoredFile:
        if len(data) > MAX_FILE_BYTES:
            raise RequestTooLargeError(f"File exceeds the maximum allowed size of {MAX_FILE_BYTES} bytes.")
        if not data:
            raise InvalidRequestError("file: the uploaded file is empty")
        if self._stored_bytes + len(data) > self.max_bytes:
            raise InvalidRequestError(
                "Storage quota exceeded: delete files to free up space, then retry the upload."
            )
        if expires_in_seconds is not None and not _MIN_EXPIRY_S <= expires_in_seconds <= _MAX_EXPIRY_S:
            raise InvalidRequestError(
                f"expires_in_seconds: must be between {_MIN_EXPIRY_S} and {_MAX_EXPIRY_S}"
            )
        # Only the final path component of the name is kept; a missing one becomes "unnamed".
        name = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
        mime = (mime_type or "").split(";", 1)[0].strip().lower()
        if not mime or mime == "application/octet-stream":
            mime = mimetypes.guess_type(name)[0] or mime or "application/octet-stream"
        if not name:
            name = "unnamed" + (mimetypes.guess_extension(mime) or "")
        now = datetime.now(UTC)
        stored = StoredFile(
            id="file_011C" + secrets.token_hex(11),
            owner=owner,
            filename=name,
            mime_type=mime,
            data=data,
            created_at=now,
            downloadable=downloadable,
            expires_at=now + timedelta(seconds=expires_in_seconds) if expires_in_seconds else None,
        )
        self._files[stored.id] = stored
        self._stored_bytes += len(data)
        return stored

    def get(self, owner: str, file_id: str) -> StoredFile:
        found = self._files.get(file_id)
        if found is None or found.owner != owner or _expired(found):
            raise file_not_found(file_id)
        return found

    def find(self, file_id: str) -> StoredFile | None:
        """A file by id alone, whoever owns it (for costing a prompt; ownership is checked per request)."""
        found = self._files.get(file_id)
        return None if found is None or _expired(found) else found

    def list(self, owner: str) -> list[StoredFile]:
        """The key's files, newest first."""
        return [f for f in reversed(self._files.values()) if f.owner == owner and not _expired(f)]

    def delete(self, owner: str, file_id: str) -> None:
        found = self.get(owner, file_id)
        del self._files[found.id]
        self._stored_bytes -= len(found.data)


def _expired(stored: StoredFile) -> bool:
    return stored.expires_at is not None and stored.expires_at.timestamp() <= time.time()


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")

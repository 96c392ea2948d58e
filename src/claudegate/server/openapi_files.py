"""The OpenAPI description of the Files API routes (``server/files.py``): upload, list, metadata, content,
delete, each visible only to the organisation that uploaded the file."""

from __future__ import annotations

from typing import Any, Final

from claudegate.server.openapi_ops import JSON, PAGE, op, path_param, query_param

__all__ = ["files_paths"]

_FILE_ID: Final = r"^file_[A-Za-z0-9]{1,120}$"
_BETA: Final[dict[str, Any]] = {
    "name": "anthropic-beta",
    "in": "header",
    "schema": {"type": "string", "examples": ["files-api-2025-04-14"]},
    "description": "Anthropic's Files API is a beta: its SDKs send files-api-2025-04-14; relayed as sent.",
}
_FILE: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["id", "type", "filename", "mime_type", "size_bytes", "created_at"],
    "properties": {
        "id": {"type": "string"},
        "type": {"const": "file"},
        "filename": {"type": "string"},
        "mime_type": {"type": "string"},
        "size_bytes": {"type": "integer"},
        "created_at": {"type": "string", "format": "date-time"},
        "downloadable": {"type": "boolean"},
    },
}
_FILE_LIST: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["data", "has_more"],
    "properties": {
        "data": {"type": "array", "items": _FILE},
        "has_more": {"type": "boolean"},
        "first_id": {"type": ["string", "null"]},
        "last_id": {"type": ["string", "null"]},
        "next_page": {
            "type": ["string", "null"],
            "description": "The cursor for page= (the next, older page)",
        },
    },
}
_UPLOAD: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["file"],
    "properties": {"file": {"type": "string", "format": "binary", "description": "The file (up to 500 MB)"}},
}


def files_paths() -> dict[str, Any]:
    key = ["gatewayKey", "gatewayBearer"]
    file_id = [path_param("file_id", "A file id (file_…)", _FILE_ID), _BETA]
    list_params = [
        *PAGE,
        _BETA,
        query_param("page", {"type": "string"}, "A next_page cursor of an earlier page"),
        query_param(
            "ids[]",
            {"type": "array", "items": {"type": "string"}, "maxItems": 100},
            "Only these files (those of them that are the organisation's), in this order",
        ),
        query_param(
            "scope_id", {"type": "string"}, "Uploads belong to no session scope: always an empty list"
        ),
    ]
    return {
        "/v1/files": {
            "post": op(
                "Upload a file (multipart/form-data with a part named file)",
                tag="files",
                security=key,
                body=_UPLOAD,
                body_type="multipart/form-data",
                params=[_BETA],
                reply={JSON: {"schema": _FILE}},
                description="Over 500 MB (and its form) is refused with 413.",
            ),
            "get": op(
                "List the organisation's files, newest first",
                tag="files",
                security=key,
                params=list_params,
                reply={JSON: {"schema": _FILE_LIST}},
            ),
        },
        "/v1/files/{file_id}/content": {
            "get": op(
                "Download a file's content (files the API created, such as code execution outputs)",
                tag="files",
                security=key,
                params=file_id,
                reply={"*/*": {"schema": {"type": "string", "format": "binary"}}},
                description="In the file's own media type; an uploaded file is not downloadable (400).",
            )
        },
        "/v1/files/{file_id}": {
            "get": op(
                "A file's metadata",
                tag="files",
                security=key,
                params=file_id,
                reply={JSON: {"schema": _FILE}},
                description="Another organisation's file gets the same 404 as one that does not exist.",
            ),
            "delete": op(
                "Delete a file",
                tag="files",
                security=key,
                params=file_id,
                reply={
                    JSON: {
                        "schema": {
                            "type": "object",
                            "required": ["id", "type"],
                            "properties": {"id": {"type": "string"}, "type": {"const": "file_deleted"}},
                        }
                    }
                },
            ),
        },
    }

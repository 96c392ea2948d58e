"""The simulator's ``/v1/files`` routes: upload (multipart), list, metadata, content, delete."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import orjson
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import Response

from claudegate.errors import InvalidRequestError, RequestTooLargeError
from claudegate.simulator.files import MAX_FILE_BYTES, FileStore
from claudegate.wire.pagination import page_params, paginate

__all__ = ["DOWNLOADABLE_HEADER", "FileHandlers", "file_handlers"]

DOWNLOADABLE_HEADER = "x-simulator-downloadable"
_JSON = "application/json"
_PAGE_PREFIX = "page_"
_FORM_OVERHEAD = 64 * 1024

Handler = Callable[[Request, str, str], Awaitable[Response]]
FileHandlers = dict[str, Handler]


def file_handlers(files: FileStore) -> FileHandlers:
    """The route handlers, by name; ``create_app`` wraps each with auth, version and error handling."""

    async def upload(request: Request, api_key: str, request_id: str) -> Response:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > MAX_FILE_BYTES + _FORM_OVERHEAD:
            raise RequestTooLargeError(f"File exceeds the maximum allowed size of {MAX_FILE_BYTES} bytes.")
        if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
            raise InvalidRequestError(
                "content-type: an upload must be multipart/form-data with a `file` part"
            )
        try:
            form = await request.form(max_files=1, max_fields=8)
        except (HTTPException, MultiPartException, ValueError) as error:
            detail = error.detail if isinstance(error, HTTPException) else str(error)
            raise InvalidRequestError(f"could not parse the multipart form: {detail}") from None
        try:
            part = form.get("file")
            if not isinstance(part, UploadFile):
                raise InvalidRequestError("file: Field required (a multipart part named `file`)")
            data = await part.read()
            expires = form.get("expires_in_seconds")
            expires_in = None
            if isinstance(expires, str) and expires:
                if not expires.isdigit():
                    raise InvalidRequestError("expires_in_seconds: Input should be a valid integer")
                expires_in = int(expires)
            stored = files.upload(
                api_key,
                filename=part.filename,
                mime_type=part.content_type,
                data=data,
                downloadable=request.headers.get(DOWNLOADABLE_HEADER, "").lower() == "true",
                expires_in_seconds=expires_in,
            )
        finally:
            await form.close()
        return Response(orjson.dumps(stored.to_api()), media_type=_JSON)

    async def list_files(request: Request, api_key: str, request_id: str) -> Response:
        query = dict(request.query_params)
        ids = request.query_params.getlist("ids[]") or request.query_params.getlist("ids")
        owned = files.list(api_key)
        if ids:
            wanted = set(ids)
            data = [f.to_api() for f in owned if f.id in wanted]
            return _page(data, has_more=False)
        if "scope_id" in query:
            return _page([], has_more=False)  # uploads belong to no session scope
        page = query.pop("page", None)
        if page:
            if not page.startswith(_PAGE_PREFIX):
                raise InvalidRequestError(f"page: {page!r} is not a page cursor this API returned")
            query["after_id"] = page[len(_PAGE_PREFIX) :]
        before_id, after_id, limit = page_params(query)
        found = paginate(
            owned, lambda f: f.id, lambda f: f.to_api(), before_id=before_id, after_id=after_id, limit=limit
        )
        return _page(found["data"], has_more=found["has_more"])

    async def get_file(request: Request, api_key: str, request_id: str) -> Response:
        stored = files.get(api_key, request.path_params["file_id"])
        return Response(orjson.dumps(stored.to_api()), media_type=_JSON)

    async def download(request: Request, api_key: str, request_id: str) -> Response:
        stored = files.get(api_key, request.path_params["file_id"])
        if not stored.downloadable:
            raise InvalidRequestError(
                f"File {stored.id} is not downloadable: only files created by the API (such as code "
                "execution outputs) can be downloaded."
            )
        ascii_name = "".join(c for c in stored.filename if " " <= c <= "~" and c not in '"\\')
        disposition = f'attachment; filename="{ascii_name}"'
        return Response(
            stored.data, media_type=stored.mime_type, headers={"content-disposition": disposition}
        )

    async def delete(request: Request, api_key: str, request_id: str) -> Response:
        file_id = request.path_params["file_id"]
        files.delete(api_key, file_id)
        return Response(orjson.dumps({"id": file_id, "type": "file_deleted"}), media_type=_JSON)

    return {
        "upload": upload,
        "list": list_files,
        "get": get_file,
        "download": download,
        "delete": delete,
    }


def _page(data: list[dict[str, object]], *, has_more: bool) -> Response:
    last_id = data[-1]["id"] if data else None
    body = {
        "data": data,
        "has_more": has_more,
        "first_id": data[0]["id"] if data else None,
        "last_id": last_id,
        "next_page": f"{_PAGE_PREFIX}{last_id}" if has_more and last_id else None,
    }
    return Response(orjson.dumps(body), media_type=_JSON)

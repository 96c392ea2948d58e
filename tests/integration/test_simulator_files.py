"""The Files API through the SDK against the simulator: upload, list and page, metadata, content, delete;
and messages that cite an uploaded file by id."""

from __future__ import annotations

import io
from collections.abc import Iterator

import anthropic
import httpx2
import pytest

from tests.integration.simulator_support import MODEL, png, prose, simulator, sync_client, unique_key

DOWNLOADABLE = {"x-simulator-downloadable": "true"}


@pytest.fixture
def client(simulator_url: str) -> Iterator[anthropic.Anthropic]:
    with sync_client(simulator_url, api_key=unique_key()) as sdk:
        yield sdk


def cite(kind: str, file_id: str, question: str = "What does it say?") -> list[dict[str, object]]:
    return [
        {
            "role": "user",
            "content": [
                {"type": kind, "source": {"type": "file", "file_id": file_id}},
                {"type": "text", "text": question},
            ],
        }
    ]


def test_upload_read_and_delete(client: anthropic.Anthropic) -> None:
    uploaded = client.beta.files.upload(file=("notes.txt", b"alpha beta gamma", "text/plain"))
    assert uploaded.id.startswith("file_")
    assert (uploaded.filename, uploaded.mime_type, uploaded.size_bytes) == ("notes.txt", "text/plain", 16)
    assert uploaded.type == "file"
    assert uploaded.downloadable is False  # the API's own rule for uploaded files

    assert client.beta.files.retrieve_metadata(uploaded.id) == uploaded
    with pytest.raises(anthropic.BadRequestError, match="not downloadable"):
        client.beta.files.download(uploaded.id)

    assert client.beta.files.delete(uploaded.id).id == uploaded.id
    with pytest.raises(anthropic.NotFoundError, match=f"File not found: {uploaded.id}"):
        client.beta.files.retrieve_metadata(uploaded.id)
    with pytest.raises(anthropic.NotFoundError):
        client.beta.files.delete(uploaded.id)


def test_a_downloadable_file_comes_back_byte_for_byte(client: anthropic.Anthropic) -> None:
    content = bytes(range(256)) * 40
    uploaded = client.beta.files.upload(
        file=("data.bin", io.BytesIO(content), "application/octet-stream"), extra_headers=DOWNLOADABLE
    )
    assert uploaded.downloadable is True
    downloaded = client.beta.files.download(uploaded.id)
    assert downloaded.read() == content
    assert downloaded.headers["content-type"] == "application/octet-stream"


def test_listing_pages_newest_first_per_key(client: anthropic.Anthropic, simulator_url: str) -> None:
    ids = [
        client.beta.files.upload(file=(f"f{i}.txt", f"file {i}".encode(), "text/plain")).id for i in range(5)
    ]
    first = client.beta.files.list(limit=2)
    assert [f.id for f in first.data] == ids[::-1][:2]
    assert first.next_page
    assert [f.id for f in client.beta.files.list(limit=2)] == ids[::-1]  # the SDK follows next_page
    assert [f.id for f in client.beta.files.list(ids=[ids[0], "file_nope"])] == [ids[0]]

    with sync_client(simulator_url, api_key=unique_key()) as stranger:
        assert list(stranger.beta.files.list()) == []
        with pytest.raises(anthropic.NotFoundError):
            stranger.beta.files.retrieve_metadata(ids[0])


def test_uploads_without_a_file_part_are_refused(simulator_url: str) -> None:
    headers = {"x-api-key": unique_key(), "anthropic-version": "2023-06-01"}
    wrong = httpx2.post(f"{simulator_url}/v1/files", headers=headers, files={"document": ("a.txt", b"x")})
    assert wrong.status_code == 400
    assert "file: Field required" in wrong.json()["error"]["message"]
    json_body = httpx2.post(f"{simulator_url}/v1/files", headers=headers, json={"file": "x"})
    assert json_body.status_code == 400


def test_storage_is_bounded() -> None:
    with simulator(max_file_bytes=1000) as url, sync_client(url, api_key=unique_key()) as client:
        kept = client.beta.files.upload(file=("a.bin", b"a" * 800, "application/octet-stream"))
        with pytest.raises(anthropic.BadRequestError, match="Storage quota exceeded"):
            client.beta.files.upload(file=("b.bin", b"b" * 300, "application/octet-stream"))
        client.beta.files.delete(kept.id)
        client.beta.files.upload(file=("b.bin", b"b" * 300, "application/octet-stream"))


def test_a_cited_file_is_costed_by_its_content(client: anthropic.Anthropic) -> None:
    text = client.beta.files.upload(file=("doc.txt", prose(3000).encode(), "text/plain"))
    short = client.beta.files.upload(file=("short.txt", prose(10).encode(), "text/plain"))
    image = client.beta.files.upload(file=("pic.png", png(200, 100), "image/png"))

    long_reply = client.beta.messages.create(model=MODEL, max_tokens=20, messages=cite("document", text.id))  # type: ignore[arg-type]
    short_reply = client.beta.messages.create(model=MODEL, max_tokens=20, messages=cite("document", short.id))  # type: ignore[arg-type]
    assert long_reply.usage.input_tokens - short_reply.usage.input_tokens == 3000 - 10
    counted = client.beta.messages.count_tokens(model=MODEL, messages=cite("document", text.id))  # type: ignore[arg-type]
    assert counted.input_tokens == long_reply.usage.input_tokens

    pictured = client.beta.messages.create(model=MODEL, max_tokens=20, messages=cite("image", image.id))  # type: ignore[arg-type]
    assert pictured.usage.input_tokens - short_reply.usage.input_tokens == 27 - 10  # 200x100 px: 27 tokens

    with pytest.raises(anthropic.BadRequestError, match="not an image"):
        client.beta.messages.create(model=MODEL, max_tokens=20, messages=cite("image", text.id))  # type: ignore[arg-type]


def test_an_unknown_or_deleted_file_is_not_found(client: anthropic.Anthropic, simulator_url: str) -> None:
    with pytest.raises(anthropic.NotFoundError, match="File not found: file_011Cnope"):
        client.beta.messages.create(model=MODEL, max_tokens=20, messages=cite("document", "file_011Cnope"))  # type: ignore[arg-type]

    uploaded = client.beta.files.upload(file=("doc.txt", b"alpha beta", "text/plain"))
    messages = cite("document", uploaded.id)
    client.beta.messages.create(model=MODEL, max_tokens=20, messages=messages)  # type: ignore[arg-type]
    with sync_client(simulator_url, api_key=unique_key()) as stranger, pytest.raises(anthropic.NotFoundError):
        stranger.beta.messages.create(model=MODEL, max_tokens=20, messages=messages)  # type: ignore[arg-type]
    client.beta.files.delete(uploaded.id)
    with pytest.raises(anthropic.NotFoundError):  # the same body, answered before: still checked again
        client.beta.messages.create(model=MODEL, max_tokens=20, messages=messages)  # type: ignore[arg-type]

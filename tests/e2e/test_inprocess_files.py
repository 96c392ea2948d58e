"""The Files API through the in-process client, against the simulator: the gateway's own file routes and
ownership rules, so one organisation never sees, reads, deletes or cites another's files."""

from __future__ import annotations

from pathlib import Path

import anthropic
import pytest
from anthropic.types.beta import BetaDeletedFile, BetaFileMetadata

from claudegate import AsyncClient, Client
from tests.e2e.test_inprocess_client import client_settings

MODEL = "claude-sonnet-4-6"
DOWNLOADABLE = {"x-simulator-downloadable": "true"}


def cite(file_id: str) -> list[dict[str, object]]:
    return [
        {
            "role": "user",
            "content": [
                {"type": "document", "source": {"type": "file", "file_id": file_id}},
                {"type": "text", "text": "Summarise it."},
            ],
        }
    ]


async def test_files_round_trip_and_stay_inside_their_organisation(
    simulator_url: str, tmp_path: Path
) -> None:
    settings = client_settings(simulator_url, tmp_path)
    content = b"quarterly figures\n" * 100
    async with (
        AsyncClient(settings=settings, org="files-owner") as owner,
        AsyncClient(settings=settings, org="files-rival") as rival,
    ):
        uploaded = await owner.beta.files.upload(
            file=("report.txt", content, "text/plain"), extra_headers=DOWNLOADABLE
        )
        assert isinstance(uploaded, BetaFileMetadata)
        assert (uploaded.filename, uploaded.size_bytes, uploaded.mime_type) == (
            "report.txt",
            len(content),
            "text/plain",
        )
        assert await owner.beta.files.retrieve_metadata(uploaded.id) == uploaded
        assert (await owner.beta.files.download(uploaded.id)).read() == content
        assert [found.id for found in (await owner.beta.files.list()).data] == [uploaded.id]
        cited = await owner.messages.create(model=MODEL, max_tokens=300, messages=cite(uploaded.id))
        assert cited.content  # its own file: the model reads it

        # The rival organisation: the owner's file is exactly a missing one, whatever it tries.
        missing = "file_011C" + "0" * 22
        for file_id in (uploaded.id, missing):
            with pytest.raises(anthropic.NotFoundError) as raised:
                await rival.beta.files.retrieve_metadata(file_id)
            assert raised.value.body == {
                "type": "error",
                "error": {"type": "not_found_error", "message": f"File not found: {file_id}"},
                "request_id": raised.value.request_id,
            }
            with pytest.raises(anthropic.NotFoundError):
                await rival.beta.files.download(file_id)
            with pytest.raises(anthropic.NotFoundError):
                await rival.beta.files.delete(file_id)
            with pytest.raises(anthropic.NotFoundError):
                await rival.messages.create(model=MODEL, max_tokens=50, messages=cite(file_id))
        assert (await rival.beta.files.list()).data == []
        assert (await rival.beta.files.list(ids=[uploaded.id])).data == []

        deleted = await owner.beta.files.delete(uploaded.id)
        assert isinstance(deleted, BetaDeletedFile)
        assert deleted.id == uploaded.id
        with pytest.raises(anthropic.NotFoundError):
            await owner.beta.files.retrieve_metadata(uploaded.id)
        assert (await owner.beta.files.list()).data == []


async def test_listing_pages_through_the_organisations_files(simulator_url: str, tmp_path: Path) -> None:
    settings = client_settings(simulator_url, tmp_path)
    async with (
        AsyncClient(settings=settings, org="pager") as client,
        AsyncClient(settings=settings, org="pager-rival") as rival,
    ):
        ours = [(await client.beta.files.upload(file=(f"{n}.txt", b"x", "text/plain"))).id for n in range(3)]
        await rival.beta.files.upload(file=("theirs.txt", b"y", "text/plain"))
        first = await client.beta.files.list(limit=2)
        assert first.has_next_page()
        assert first.next_page is not None
        second = await client.beta.files.list(limit=2, page=first.next_page)
        assert not second.has_next_page()
        assert [f.id for f in first.data + second.data] == list(reversed(ours))
        assert [f.id for f in (await first.get_next_page()).data] == [f.id for f in second.data]
        # As the SDK's paginator: iterating goes through every page
        assert [f.id async for f in client.beta.files.list(limit=2)] == list(reversed(ours))


def test_the_sync_client_uploads_a_path_and_reads_it_back(simulator_url: str, tmp_path: Path) -> None:
    source = tmp_path / "notes.txt"
    source.write_bytes(b"meeting notes")
    with Client(settings=client_settings(simulator_url, tmp_path), org="files-sync") as client:
        uploaded = client.beta.files.upload(file=source, extra_headers=DOWNLOADABLE)
        assert uploaded.filename == "notes.txt"
        download = client.beta.files.download(uploaded.id)
        download.write_to_file(tmp_path / "copy.txt")
        assert [f.id for f in client.beta.files.list().data] == [uploaded.id]
        more = client.beta.files.upload(file=("more.txt", b"more", "text/plain"))
        first = client.beta.files.list(limit=1)
        assert [f.id for f in first.data] == [more.id]
        assert [f.id for f in first] == [more.id, uploaded.id]  # every page, as the SDK's page iterates
        client.beta.files.delete(more.id)
        assert client.beta.files.delete(uploaded.id).id == uploaded.id
    assert (tmp_path / "copy.txt").read_bytes() == b"meeting notes"

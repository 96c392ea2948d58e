"""The Files API through the gateway with the SDK: each organisation sees only the files it uploaded, and
a message may cite only its own organisation's files."""

from __future__ import annotations

import anthropic
import httpx2
import pytest

from tests.e2e.conftest import Stack
from tests.integration.simulator_support import prose

MODEL = "claude-sonnet-4-6"
DOWNLOADABLE = {"x-simulator-downloadable": "true"}


def sdk(stack: Stack, key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=stack.url, api_key=key, max_retries=0)


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


def test_files_round_trip_through_the_gateway(stack: Stack) -> None:
    owner, colleague = sdk(stack, stack.org_a.key), sdk(stack, stack.org_a.user_key)
    content = b"quarterly figures\n" * 100
    uploaded = owner.beta.files.upload(
        file=("report.txt", content, "text/plain"), betas=["files-api-2025-04-14"], extra_headers=DOWNLOADABLE
    )
    assert (uploaded.filename, uploaded.size_bytes) == ("report.txt", len(content))

    assert colleague.beta.files.retrieve_metadata(uploaded.id) == uploaded  # anyone in the organisation
    assert colleague.beta.files.download(uploaded.id).read() == content
    assert uploaded.id in [f.id for f in colleague.beta.files.list()]

    assert owner.beta.files.delete(uploaded.id).id == uploaded.id
    with pytest.raises(anthropic.NotFoundError):
        owner.beta.files.retrieve_metadata(uploaded.id)
    assert uploaded.id not in [f.id for f in owner.beta.files.list()]


def test_another_organisations_file_is_exactly_like_a_missing_one(stack: Stack) -> None:
    owner = sdk(stack, stack.org_a.key)
    uploaded = owner.beta.files.upload(
        file=("secret.txt", b"the plan", "text/plain"), extra_headers=DOWNLOADABLE
    )
    missing = "file_011C" + "0" * 22

    for key in (stack.org_b.key, stack.org_b.user_key):
        other = sdk(stack, key)
        for file_id in (uploaded.id, missing):
            answers = []
            for action in ("retrieve_metadata", "download", "delete"):
                with pytest.raises(anthropic.NotFoundError) as caught:
                    getattr(other.beta.files, action)(file_id)
                body = dict(caught.value.body)  # type: ignore[call-overload]
                body.pop("request_id")  # each call's own
                answers.append(body)
            expected = {"type": "not_found_error", "message": f"File not found: {file_id}"}
            assert answers == [{"type": "error", "error": expected}] * 3
        assert uploaded.id not in [f.id for f in other.beta.files.list()]
        assert list(other.beta.files.list(ids=[uploaded.id])) == []

    # Untouched by all that: the owner still has it.
    assert owner.beta.files.retrieve_metadata(uploaded.id).id == uploaded.id


def test_listing_pages_through_the_organisations_files_only(stack: Stack) -> None:
    a = sdk(stack, stack.org_a.user_key)
    b = sdk(stack, stack.org_b.key)
    mine = [a.beta.files.upload(file=(f"a{i}.txt", b"x", "text/plain")).id for i in range(3)]
    theirs = b.beta.files.upload(file=("b.txt", b"y", "text/plain")).id

    first = a.beta.files.list(limit=2)
    assert [f.id for f in first.data] == mine[::-1][:2]
    assert first.has_next_page()
    listed = [f.id for f in a.beta.files.list(limit=2)]  # the SDK follows next_page
    assert listed[:3] == mine[::-1]
    assert theirs not in listed
    assert next(iter(b.beta.files.list())).id == theirs


def test_a_message_may_cite_only_its_organisations_files(stack: Stack) -> None:
    owner = sdk(stack, stack.org_a.key)
    uploaded = owner.beta.files.upload(file=("doc.txt", prose(500).encode(), "text/plain"))
    reply = owner.beta.messages.create(model=MODEL, max_tokens=20, messages=cite(uploaded.id))  # type: ignore[arg-type]
    assert reply.usage.input_tokens > 500

    other = sdk(stack, stack.org_b.key)
    for file_id in (uploaded.id, "file_011Cmissing"):
        with pytest.raises(anthropic.NotFoundError, match=f"File not found: {file_id}"):
            other.beta.messages.create(model=MODEL, max_tokens=20, messages=cite(file_id))  # type: ignore[arg-type]

    # Nor can it count the tokens of one (that would tell its size).
    with pytest.raises(anthropic.NotFoundError, match=f"File not found: {uploaded.id}"):
        other.beta.messages.count_tokens(model=MODEL, messages=cite(uploaded.id))  # type: ignore[arg-type]
    counted = owner.beta.messages.count_tokens(model=MODEL, messages=cite(uploaded.id))  # type: ignore[arg-type]
    assert counted.input_tokens == reply.usage.input_tokens

    # Hiding the key behind a JSON escape changes nothing.
    body = (
        '{"model": "MODEL", "max_tokens": 20, "messages": [{"role": "user", "content": [{"type": "document", '
        '"source": {"type": "file", "file\\u005fid": "FILE"}}, {"type": "text", "text": "Hi"}]}]}'
    )
    body = body.replace("MODEL", MODEL).replace("FILE", uploaded.id)
    headers = {
        "x-api-key": stack.org_b.key,
        "anthropic-version": "2023-06-01",
        "content-type": "application/json",
    }
    sneaky = httpx2.post(f"{stack.url}/v1/messages", content=body, headers=headers)
    assert sneaky.status_code == 404
    assert sneaky.json()["error"]["message"] == f"File not found: {uploaded.id}"

    # Nor does putting the citation in a message batch.
    with pytest.raises(anthropic.NotFoundError):
        other.messages.batches.create(
            requests=[
                {"custom_id": "q", "params": {"model": MODEL, "max_tokens": 5, "messages": cite(uploaded.id)}}
            ]  # type: ignore[list-item]
        )

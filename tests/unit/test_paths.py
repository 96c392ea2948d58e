"""Paths are split where the client put slashes, and each segment is checked once decoded."""

from __future__ import annotations

import pytest

from claudegate.wire.paths import BATCH_ID, CHAT_ID, FILE_ID, MODEL_ID, canonical_path, safe_query, valid_id


def scope(raw: bytes) -> dict[str, object]:
    return {"raw_path": raw, "path": "/ignored"}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"/v1/models/claude-opus-4-7", "/v1/models/claude-opus-4-7"),
        (b"/v1/models/", "/v1/models"),
        (b"/v1/files/file_01%41", "/v1/files/file_01A"),  # an encoded letter is the letter
        (b"/v1/models/claude-3-5-sonnet@20241022", "/v1/models/claude-3-5-sonnet@20241022"),
    ],
)
def test_plain_names_pass_as_they_read(raw: bytes, expected: str) -> None:
    assert canonical_path(scope(raw)) == expected


@pytest.mark.parametrize(
    "raw",
    [
        b"/v1/models/..%2F..%2Fv1%2Fmessages",
        b"/v1/models/%E2%82%AC",
        b"/v1/models/%FF",
        b"/v1/models/a%20b",
        b"/v1/models/a%0D%0Ab",
        b"/v1/models/a%00",
        b"/v1/models/a%3Fb",
        b"/v1/models/a%23b",
        b"/v1/models/a%25",
        b"/v1/models/a%5Cb",
        b"/v1/./models",
        b"/v1/%2e%2E/models",
        b"/v1//models",
        b"v1/models",
    ],
)
def test_anything_else_is_refused(raw: bytes) -> None:
    assert canonical_path(scope(raw)) is None


def test_without_raw_path_the_decoded_path_is_checked() -> None:
    assert canonical_path({"path": "/v1/models/claude"}) == "/v1/models/claude"
    assert canonical_path({"path": "/v1/models/../messages"}) is None
    assert canonical_path({"path": "/v1/models/€"}) is None


def test_a_query_reaches_the_request_line_as_printable_ascii() -> None:
    assert safe_query(b"beta=true&limit=1000") == "beta=true&limit=1000"
    assert safe_query(b"ids[]=file_1&a=%E2%82%AC") == "ids[]=file_1&a=%E2%82%AC"
    assert safe_query("n=€ x\r\n#".encode()) == "n=%E2%82%AC%20x%0D%0A%23"


def test_ids_have_the_shape_of_what_they_name() -> None:
    assert valid_id(MODEL_ID, "claude-sonnet-4-6")
    assert not valid_id(MODEL_ID, "claude sonnet")
    assert not valid_id(MODEL_ID, "x" * 129)
    assert valid_id(BATCH_ID, "msgbatch_01abc")
    assert not valid_id(BATCH_ID, "msgbatch_01abc\x00")
    assert valid_id(FILE_ID, "file_011CNha8iCJcU1wXNR6q4V8w")
    assert not valid_id(FILE_ID, "file_../x")
    assert valid_id(CHAT_ID, "chat_" + "a1" * 12)
    assert not valid_id(CHAT_ID, "chat_doesnotexist")

"""Every place a Messages body can make the API read an uploaded file is found; nothing else is."""

from __future__ import annotations

from claudegate.wire.file_refs import cited_file_ids


def file_source(file_id: str) -> dict[str, str]:
    return {"type": "file", "file_id": file_id}


def test_citations_are_found_wherever_they_nest() -> None:
    body = {
        "messages": [
            {"role": "user", "content": [
                {"type": "document", "source": file_source("file_a")},
                {"type": "image", "source": file_source("file_b")},
                {"type": "container_upload", "file_id": "file_c"},
            ]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "Read", "input": {}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": [
                    {"type": "image", "source": file_source("file_d")},
                ]},
                {"type": "document", "source": {"type": "content", "content": [
                    {"type": "image", "source": file_source("file_e")},
                ]}},
                {"type": "document", "source": file_source("file_a")},
            ]},
        ]
    }  # fmt: skip
    assert cited_file_ids(body) == ["file_a", "file_b", "file_c", "file_d", "file_e"]


def test_blocks_that_never_read_files_and_other_sources_are_passed_over() -> None:
    body = {
        "messages": [
            {"role": "user", "content": "file_id: file_x"},
            {"role": "user", "content": [
                {"type": "text", "text": "see file_y", "source": file_source("file_y")},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA=="}},
                {"type": "document", "source": {"type": "url", "url": "https://example.com/file_id"}},
            ]},
        ]
    }  # fmt: skip
    assert cited_file_ids(body) == []
    assert cited_file_ids({"messages": "nonsense"}) == []


def test_a_block_type_that_is_not_a_string_is_looked_into_not_a_crash() -> None:
    body = {
        "messages": [
            {"role": "user", "content": [
                {"type": {"nested": True}, "source": file_source("file_a")},
                {"type": ["document"], "source": file_source("file_b")},
            ]},
        ]
    }  # fmt: skip
    assert cited_file_ids(body) == ["file_a", "file_b"]

"""The console's session cookies and what a member may ask of the admin API."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from claudegate.chat.request import ChatRequest
from claudegate.console.policy import member_request
from claudegate.console.session import Session, SessionCodec
from claudegate.errors import InvalidRequestError, PermissionDeniedError


def test_a_session_round_trips_and_a_forged_one_is_refused() -> None:
    codec = SessionCodec(SecretStr("secret"))
    session = Session.member("abc123")
    cookie = codec.dumps(session)
    assert codec.loads(cookie) == session
    assert codec.loads(cookie[:-2] + ("A" if cookie[-2] != "A" else "B") + cookie[-1]) is None
    assert SessionCodec(SecretStr("another")).loads(cookie) is None
    assert codec.loads("") is None


def test_without_its_own_secret_the_console_signs_with_one_derived_from_the_admin_token() -> None:
    assert SessionCodec.from_settings(None, None) is None
    one = SessionCodec.from_settings(None, SecretStr("token"))
    same = SessionCodec.from_settings(None, SecretStr("token"))
    other = SessionCodec.from_settings(None, SecretStr("changed"))
    assert one is not None
    assert same is not None
    assert other is not None
    cookie = one.dumps(Session.operator())
    assert same.loads(cookie) is not None
    assert other.loads(cookie) is None  # a new admin token signs everyone out


def test_the_csrf_token_must_match() -> None:
    session = Session.operator()
    assert session.csrf_matches(session.csrf)
    assert not session.csrf_matches(None)
    assert not session.csrf_matches(session.csrf + "x")


def test_a_member_reads_their_own_organisation_only() -> None:
    assert member_request("GET", "/usage/series", "by=model", "acme") == "by=model&org=acme"
    assert member_request("GET", "/keys", "org=acme", "acme") == "org=acme"
    assert member_request("GET", "/organizations/acme/budget", "", "acme") == ""
    for method, path, query in [
        ("GET", "/usage/series", "org=globex"),
        ("GET", "/usage/series", "org=acme&org=globex"),
        ("GET", "/organizations/globex/budget", ""),
        ("GET", "/organizations", ""),
        ("GET", "/live", ""),
        ("POST", "/keys", ""),
        ("PATCH", "/organizations/acme/budget", ""),
    ]:
        with pytest.raises(PermissionDeniedError):
            member_request(method, path, query, "acme")


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"message": "hi", "prompt": "p", "prompt_version": 0}, "must be a version number"),
        (
            {"message": "hi", "prompt": "p", "prompt_version": True},
            "must be a version number",
        ),
        ({"message": "hi", "prompt_version": 2}, "name the prompt"),
        ({"message": "hi", "prompt": "p", "prompt_version": 2, "chat_id": "c"}, "only a new chat"),
    ],
)
def test_the_playground_pins_a_prompt_version_of_a_new_chat_only(
    body: dict[str, object], fragment: str
) -> None:
    with pytest.raises(InvalidRequestError, match=fragment):
        ChatRequest.parse(body)
    assert ChatRequest.parse({"message": "hi", "prompt": "p", "prompt_version": 2}).prompt_version == 2

"""The console's sessions: a signed, HTTP-only, SameSite=Strict cookie that says who signed in.

An operator's session holds only its role; a member's holds the hash of the gateway key they signed in
with (never the key), so a revoked key ends its sessions at once. Each session carries a random CSRF token,
which the page sends back in ``x-csrf-token`` on every change; a cross-site form cannot read it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Literal

from itsdangerous import BadSignature, URLSafeTimedSerializer
from pydantic import SecretStr

__all__ = ["COOKIE", "CSRF_HEADER", "Session", "SessionCodec"]

COOKIE = "claudegate_console"
CSRF_HEADER = "x-csrf-token"
_MAX_AGE_S = 12 * 3600

Role = Literal["operator", "member"]


@dataclass(frozen=True, slots=True)
class Session:
    role: Role
    csrf: str
    key_hash: str | None = None  # a member's key

    @classmethod
    def operator(cls) -> Session:
        return cls("operator", secrets.token_urlsafe(24))

    @classmethod
    def member(cls, key_hash: str) -> Session:
        return cls("member", secrets.token_urlsafe(24), key_hash)

    def csrf_matches(self, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(presented.encode(), self.csrf.encode())


class SessionCodec:
    """Signs sessions into cookie values and reads them back (None when forged, altered or expired)."""

    __slots__ = ("_serializer",)

    max_age_s = _MAX_AGE_S

    def __init__(self, secret: SecretStr) -> None:
        self._serializer = URLSafeTimedSerializer(secret.get_secret_value(), salt="claudegate-console")

    @classmethod
    def from_settings(
        cls, console_secret: SecretStr | None, admin_token: SecretStr | None
    ) -> SessionCodec | None:
        """The codec for these settings; None (no console) when neither a secret nor an admin token is set.

        Without its own secret the console derives one from the admin token, so that every process sharing
        the token accepts the same sessions and changing the token signs everyone out.
        """
        if console_secret is not None:
            return cls(console_secret)
        if admin_token is None:
            return None
        derived = hmac.new(admin_token.get_secret_value().encode(), b"claudegate console", hashlib.sha256)
        return cls(SecretStr(derived.hexdigest()))

    def dumps(self, session: Session) -> str:
        return self._serializer.dumps([session.role, session.csrf, session.key_hash])

    def loads(self, value: str | None) -> Session | None:
        if not value:
            return None
        try:
            role, csrf, key_hash = self._serializer.loads(value, max_age=_MAX_AGE_S)
        except (BadSignature, ValueError, TypeError):
            return None
        if role == "operator":
            return Session("operator", str(csrf))
        if role == "member" and isinstance(key_hash, str):
            return Session("member", str(csrf), key_hash)
        return None

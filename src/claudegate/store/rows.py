"""What the repositories return: plain frozen values, detached from any session, and the store's errors."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Final

from claudegate.keys import LimitSet

__all__ = [
    "AlreadyExistsError",
    "BatchOwner",
    "BatchPage",
    "Bucket",
    "GroupBy",
    "InvalidNameError",
    "InvalidSettingError",
    "KeyRow",
    "NewKey",
    "OrgRow",
    "SeriesBy",
    "StoreError",
    "UsageReportRow",
    "UserRow",
    "check_name",
    "possible_id",
]

_NAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}")
_MAX_ID: Final = 2_147_483_647  # ids are 32-bit integers


class StoreError(Exception):
    """A request the store refuses; the message says why and is safe to show."""


class AlreadyExistsError(StoreError):
    pass


class InvalidNameError(StoreError, ValueError):
    pass


class InvalidSettingError(StoreError, ValueError):
    """A tenant setting with a value it cannot take. ``setting`` names it; ``problem`` says what is wrong, so
    a front end can name the setting its own way (``--rpm`` on the command line)."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"{setting}: {problem}")
        self.setting = setting
        self.problem = problem


def check_name(kind: str, name: str) -> str:
    """Organisation and user names appear in URLs and tables: keep them to a URL-safe slug."""
    if not _NAME_RE.fullmatch(name):
        raise InvalidNameError(
            f"{kind} name {name!r} is not allowed: use 1 to 128 letters, digits and . _ @ + -, "
            "starting with a letter or digit"
        )
    return name


def possible_id(row_id: int) -> bool:
    """Whether a row could have this id. PostgreSQL refuses to compare a 32-bit id column with a larger
    number (an error, not "no such row"), so callers answer None for these without asking."""
    return 1 <= row_id <= _MAX_ID


class Bucket(StrEnum):
    """The length of a period in a series (UTC)."""

    HOUR = "hour"
    DAY = "day"
    MONTH = "month"


class SeriesBy(StrEnum):
    """What a series is split by; ``total`` does not split it."""

    TOTAL = "total"
    ORG = "org"
    USER = "user"
    KEY = "key"
    MODEL = "model"


class GroupBy(StrEnum):
    """How a usage report groups its rows."""

    MODEL = "model"
    DAY = "day"
    USER = "user"
    KEY = "key"
    SESSION = "session"  # the client's session (Claude Code's x-claude-code-session-id)


@dataclass(frozen=True, slots=True)
class OrgRow:
    """An organisation with its settings as stored (None: no limit; a weight of None counts as 1)."""

    id: int
    name: str
    created_at: datetime
    limits: LimitSet
    weight: float | None


@dataclass(frozen=True, slots=True)
class UserRow:
    """A user with its settings as stored (None: no limit; a weight of None counts as 1)."""

    id: int
    org_id: int
    name: str
    created_at: datetime
    limits: LimitSet
    weight: float | None


@dataclass(frozen=True, slots=True)
class KeyRow:
    """A gateway key as listed: never the key itself, only its displayable prefix."""

    id: int
    org_id: int
    org_name: str
    user_id: int | None
    user_name: str | None
    name: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None
    limits: LimitSet
    deadline_ms: int | None  # the default deadline of calls made with the key; None: none
    priority: int | None  # higher first; None counts as 0
    act_for_users: bool = False  # may act for end users of its organisation (chat API, x-user-id)
    cache_replies: bool | None = None  # the response cache answers its calls; None: as its organisation's

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True, slots=True)
class NewKey:
    """A key just created: the plaintext, to show once, and its row. The repr leaves the plaintext out."""

    key: str = field(repr=False)
    row: KeyRow


@dataclass(frozen=True, slots=True)
class UsageReportRow:
    """Totals for one group. ``group`` is the model id, the day (YYYY-MM-DD), the user name or the key id
    (None for calls with no user or key); ``label`` describes a key (its name and prefix)."""

    group: str | None
    label: str | None
    requests: int
    errors: int
    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int
    cache_read_input_tokens: int
    cost_usd: Decimal
    unpriced_requests: int


@dataclass(frozen=True, slots=True)
class BatchOwner:
    batch_id: str
    org_id: int
    user_id: int | None
    key_id: int | None
    created_at: datetime
    upstream: str | None = None  # the upstream it lives on (None: recorded before that was kept)


@dataclass(frozen=True, slots=True)
class BatchPage:
    """One page of batch ids, newest first, with Anthropic's pagination fields, and each one's upstream."""

    ids: list[str]
    has_more: bool
    upstreams: list[str | None]  # each id's upstream, in the same order

    @property
    def first_id(self) -> str | None:
        return self.ids[0] if self.ids else None

    @property
    def last_id(self) -> str | None:
        return self.ids[-1] if self.ids else None

"""Text from clients made storable on both databases.

PostgreSQL refuses a NUL character in any text (SQLite stores it) and enforces ``VARCHAR(n)`` lengths (SQLite
does not). Text that only describes a call (a usage record's model, request ids) is stored made safe: NULs
removed, cut to the column's length, so a record is never lost for what a client put in it. Text that names
or is something the client wants stored as given (names, ids, chat content) is refused with a message
instead: storing something else than what was sent would be a silent lie (see ``refuse_nul``).
"""

from __future__ import annotations

from typing import Any, Final

from sqlalchemy import String, Table

__all__ = ["NUL", "contains_nul", "safe_row", "safe_text"]

NUL: Final = "\x00"


def safe_text(value: str | None, max_length: int | None) -> str | None:
    """``value`` without NUL characters and at most ``max_length`` characters long."""
    if value is None:
        return None
    if NUL in value:
        value = value.replace(NUL, "")
    if max_length is not None and len(value) > max_length:
        value = value[:max_length]
    return value


def safe_row(table: Table, row: dict[str, Any]) -> dict[str, Any]:
    """``row`` (column name → value) with every text value made safe for its column in ``table``."""
    for name, value in row.items():
        if isinstance(value, str):
            column_type = table.c[name].type
            row[name] = safe_text(value, column_type.length if isinstance(column_type, String) else None)
    return row


def contains_nul(value: object) -> bool:
    """Whether a decoded JSON value (or a string) holds a NUL character anywhere."""
    if isinstance(value, str):
        return NUL in value
    if isinstance(value, dict):
        return any(contains_nul(key) or contains_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(contains_nul(item) for item in value)
    return False

"""IRC lines with IRCv3 message tags (https://ircv3.net/specs/extensions/message-tags): parsing and
formatting, without I/O.

    [@tag=value;tag2 ][:prefix ]COMMAND [param ...][ :trailing]

Tag values are escaped (``\\:`` for ``;``, ``\\s`` for a space, ``\\\\``, ``\\r``, ``\\n``); a tag without
a value, or with an empty one, has the value ``""``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["IrcLine", "escape_tag_value", "format_line", "parse_line", "unescape_tag_value"]

_UNESCAPE = {":": ";", "s": " ", "\\": "\\", "r": "\r", "n": "\n"}
_ESCAPE = {";": "\\:", " ": "\\s", "\\": "\\\\", "\r": "\\r", "\n": "\\n"}


@dataclass(frozen=True, slots=True)
class IrcLine:
    command: str  # upper case; numerics stay as digits ("001")
    params: tuple[str, ...] = ()
    prefix: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def nick(self) -> str | None:
        """The sender's nick, from ``nick!user@host``."""
        if self.prefix is None:
            return None
        return self.prefix.split("!", 1)[0]

    @property
    def trailing(self) -> str:
        return self.params[-1] if self.params else ""


def unescape_tag_value(value: str) -> str:
    if "\\" not in value:
        return value
    out: list[str] = []
    chars = iter(value)
    for char in chars:
        if char != "\\":
            out.append(char)
            continue
        following = next(chars, None)
        if following is None:
            break  # a lone backslash at the end is dropped
        out.append(_UNESCAPE.get(following, following))
    return "".join(out)


def escape_tag_value(value: str) -> str:
    return "".join(_ESCAPE.get(char, char) for char in value)


def _parse_tags(text: str) -> dict[str, str]:
    tags: dict[str, str] = {}
    for item in text.split(";"):
        if not item:
            continue
        key, _, value = item.partition("=")
        tags[key] = unescape_tag_value(value)
    return tags


def parse_line(line: str) -> IrcLine:
    """One line, without its CR LF. Raises ValueError for a line with no command."""
    rest = line.rstrip("\r\n")
    tags: dict[str, str] = {}
    if rest.startswith("@"):
        tag_text, _, rest = rest[1:].partition(" ")
        tags = _parse_tags(tag_text)
        rest = rest.lstrip(" ")
    prefix = None
    if rest.startswith(":"):
        prefix, _, rest = rest[1:].partition(" ")
        rest = rest.lstrip(" ")
    trailing: str | None = None
    if " :" in rest:
        rest, trailing = rest.split(" :", 1)
    elif rest.startswith(":"):
        rest, trailing = "", rest[1:]
    words = rest.split()
    if not words:
        raise ValueError(f"IRC line without a command: {line!r}")
    params = words[1:]
    if trailing is not None:
        params.append(trailing)
    return IrcLine(command=words[0].upper(), params=tuple(params), prefix=prefix, tags=tags)


def format_line(command: str, *params: str, tags: Mapping[str, str] | None = None) -> str:
    """A line to send (without CR LF). The last parameter is sent as trailing; CR, LF and NUL in it become
    spaces, since a line break would end the line and start another command."""
    parts: list[str] = []
    if tags:
        parts.append(
            "@"
            + ";".join(f"{key}={escape_tag_value(value)}" if value else key for key, value in tags.items())
        )
    parts.append(command)
    if params:
        middle, last = params[:-1], params[-1]
        for param in middle:
            if not param or " " in param or param.startswith(":") or any(c in param for c in "\r\n\0"):
                raise ValueError(f"IRC parameter {param!r} must be one word")
            parts.append(param)
        parts.append(":" + last.replace("\r\n", " ").replace("\r", " ").replace("\n", " ").replace("\0", " "))
    return " ".join(parts)

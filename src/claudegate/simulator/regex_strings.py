"""Strings that a regular expression matches: values for ``pattern`` in JSON schemas.

Built from the parse tree of Python's own regular-expression parser: literals, classes and ranges, ``.``,
repeats (an unbounded one repeats a few times), groups, alternatives and anchors. Backreferences and
lookarounds are not produced; the caller gets None for them.
"""

from __future__ import annotations

import importlib
import random
import re
import string
import warnings
from typing import Any

__all__ = ["string_for_pattern"]

# The parser is private, but it has kept its shape for two decades; ``sre_parse``, its public alias, warns
# that it is deprecated.
_re_parser: Any = importlib.import_module("re._parser")
_re_constants: Any = importlib.import_module("re._constants")
_MAX_REPEAT = 8  # how many more times than its minimum an unbounded repeat (``+``, ``*``) repeats

_CATEGORIES = {
    "CATEGORY_DIGIT": string.digits,
    "CATEGORY_NOT_DIGIT": string.ascii_letters,
    "CATEGORY_WORD": string.ascii_letters + string.digits + "_",
    "CATEGORY_NOT_WORD": " -.,",
    "CATEGORY_SPACE": " ",
    "CATEGORY_NOT_SPACE": string.ascii_letters + string.digits,
}
_PRINTABLE = string.ascii_letters + string.digits + " -_.,"


def string_for_pattern(pattern: str, rng: random.Random, *, longest: int) -> str | None:
    """A string that ``pattern`` matches (``re.search``) of at most about ``longest`` characters, or None for
    a pattern this cannot satisfy (backreferences, lookarounds)."""
    with warnings.catch_warnings():  # the parser warns of syntax that may change meaning one day
        warnings.simplefilter("ignore")
        try:
            tree = _re_parser.parse(pattern)
            text = "".join(_from_tree(tree, rng, longest))
        except (re.error, RecursionError, OverflowError, _UnsupportedError):
            return None
        return text if re.search(pattern, text) else None


class _UnsupportedError(Exception):
    """A regex construct (backreference, lookaround) this generator does not produce text for."""


def _from_tree(tree: Any, rng: random.Random, longest: int) -> list[str]:
    out: list[str] = []
    for op, argument in tree:
        name = str(op)
        if name == "LITERAL":
            out.append(chr(argument))
        elif name == "NOT_LITERAL":
            out.append(next(c for c in _PRINTABLE if ord(c) != argument))
        elif name == "ANY":
            out.append(_PRINTABLE[rng.randrange(len(_PRINTABLE))])
        elif name == "IN":
            out.append(_from_set(argument, rng))
        elif name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            least, most, sub = argument
            if least > longest:
                raise _UnsupportedError("a repeat longer than a string may be")
            most = least + _MAX_REPEAT if most == _re_constants.MAXREPEAT else most
            for _ in range(rng.randint(least, max(least, min(most, least + _MAX_REPEAT)))):
                out.extend(_from_tree(sub, rng, longest))
                if len(out) > longest:
                    raise _UnsupportedError("a string longer than allowed")
        elif name == "SUBPATTERN":
            out.extend(_from_tree(argument[-1], rng, longest))
        elif name == "ATOMIC_GROUP":
            out.extend(_from_tree(argument, rng, longest))
        elif name == "BRANCH":
            branches = argument[1]
            out.extend(_from_tree(branches[rng.randrange(len(branches))], rng, longest))
        elif name == "AT":
            continue  # anchors match where the text begins and ends
        else:
            raise _UnsupportedError(name)
    return out


def _from_set(items: Any, rng: random.Random) -> str:
    allowed: list[str] = []
    negate = False
    for op, argument in items:
        name = str(op)
        if name == "NEGATE":
            negate = True
        elif name == "LITERAL":
            allowed.append(chr(argument))
        elif name == "RANGE":
            low, high = argument
            allowed.extend(chr(code) for code in range(low, min(high, low + 200) + 1))
        elif name == "CATEGORY":
            allowed.extend(_CATEGORIES.get(str(argument), ""))
        else:
            raise _UnsupportedError(name)
    if negate:
        excluded = set(allowed)
        allowed = [c for c in _PRINTABLE if c not in excluded]
    if not allowed:
        raise _UnsupportedError("empty set")
    return allowed[rng.randrange(len(allowed))]

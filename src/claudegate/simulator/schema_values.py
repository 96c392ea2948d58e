"""Values that validate against a JSON schema: the simulator's tool inputs and structured outputs.

The API guarantees that a structured output, and the input of a ``strict`` tool, validate against their
schemas; clients parse them without checking. So the simulator builds its values from the schema:
``type`` (one or a list), ``properties`` / ``required`` / ``additionalProperties`` / ``minProperties``,
``items`` / ``prefixItems`` / ``minItems`` / ``maxItems`` / ``uniqueItems``, ``enum``, ``const``, ``anyOf`` /
``oneOf`` / ``allOf``, ``$ref`` into ``$defs`` or ``definitions`` (recursion included), string ``format``,
``pattern`` and length, and numbers with inclusive or exclusive bounds and ``multipleOf``.

Hand-written rather than taken from a library: the generators there (hypothesis-jsonschema) search with
hypothesis's engine at test time, while the simulator needs one deterministic value per request, cheaply.
"""

from __future__ import annotations

import math
import random
import re
from typing import Any

from claudegate.simulator.regex_strings import string_for_pattern

__all__ = ["SchemaTooLargeError", "value_for_schema"]

_WORDS = (
    "alpha", "bravo", "cedar", "delta", "ember", "fable", "grove", "harbor", "island", "jade", "kettle",
    "lumen", "meadow", "north", "ocean", "pepper", "quartz", "river", "summit", "timber", "umber", "valley",
    "willow", "yonder", "zephyr", "amber", "birch", "coral", "dune", "fjord",
)  # fmt: skip
# Past this depth a value takes only what its schema requires, so recursive schemas end.
_DEEP = 4
_TOO_DEEP = 32


_MOST_NODES = 20_000  # values, list items and properties in one generated value
_LONGEST_STRING = 100_000
_UNBOUNDED = 1 << 62
# Numbers stay where JSON parsers keep them exact (and where orjson can write an integer).
_LARGEST_NUMBER = float(2**53)


class SchemaTooLargeError(ValueError):
    """The schema's smallest value is larger than the simulator builds (or it has none that ends)."""


def value_for_schema(schema: Any, rng: random.Random) -> Any:
    """A value that validates against ``schema`` (a JSON schema as a dict), drawn with ``rng``.

    Raises SchemaTooLargeError for a schema whose every value is huge (``minItems: 1000000000``) or endless
    (a required property that refers back to its own object).
    """
    return _Builder(schema if isinstance(schema, dict) else {}, rng).value(schema, 0)


class _Builder:
    __slots__ = ("_budget", "_rng", "_root")

    def __init__(self, root: dict[str, Any], rng: random.Random) -> None:
        self._root = root
        self._rng = rng
        self._budget = _MOST_NODES

    def _spend(self, nodes: int) -> None:
        self._budget -= nodes
        if self._budget < 0:
            raise SchemaTooLargeError(
                f"the smallest value this schema allows has more than {_MOST_NODES} parts, or never ends"
            )

    def value(self, schema: Any, depth: int) -> Any:
        self._spend(1)
        if depth > _TOO_DEEP:
            raise SchemaTooLargeError(f"values of this schema nest deeper than {_TOO_DEEP} levels")
        if schema is True or not isinstance(schema, dict):
            return "value"
        schema = _with_hints(self._resolved(schema))
        if "const" in schema:
            return schema["const"]
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return schema["enum"][self._rng.randrange(len(schema["enum"]))]
        if isinstance(schema.get("allOf"), list) and schema["allOf"]:
            return self.value(self._merged(schema), depth + 1)
        for combinator in ("anyOf", "oneOf"):
            branches = schema.get(combinator)
            if isinstance(branches, list) and branches:
                return self.value(self._branch(schema, branches, combinator, depth), depth + 1)
        kind = self._type(schema, depth)
        if kind == "object":
            return self._object(schema, depth)
        if kind == "array":
            return self._array(schema, depth)
        if kind in ("integer", "number"):
            return _number(schema, self._rng, integer=kind == "integer")
        if kind == "boolean":
            return self._rng.random() < 0.5
        if kind == "null":
            return None
        return _string(schema, self._rng)

    # -- references and combinators -------------------------------------------------------------------

    def _resolved(self, schema: dict[str, Any]) -> dict[str, Any]:
        """The schema with its ``$ref`` followed (the keywords beside the reference kept)."""
        seen = 0
        while isinstance(schema.get("$ref"), str) and seen < _TOO_DEEP:
            target = _pointer(self._root, schema["$ref"])
            rest = {key: value for key, value in schema.items() if key != "$ref"}
            schema = {**target, **rest} if isinstance(target, dict) else rest
            seen += 1
        return schema

    def _merged(self, schema: dict[str, Any]) -> dict[str, Any]:
        """``allOf`` as one schema: properties and requirements together, other keywords of the last."""
        merged: dict[str, Any] = {key: value for key, value in schema.items() if key != "allOf"}
        properties: dict[str, Any] = dict(merged.get("properties", {}))
        required: list[str] = list(merged.get("required", []))
        for raw in schema["allOf"]:
            if not isinstance(raw, dict):
                continue
            part = self._resolved(raw)
            properties.update(part.get("properties", {}))
            required += [name for name in part.get("required", []) if name not in required]
            merged.update({k: v for k, v in part.items() if k not in ("properties", "required")})
        if properties:
            merged["properties"] = properties
        if required:
            merged["required"] = required
        return merged

    def _branch(self, schema: dict[str, Any], branches: list[Any], combinator: str, depth: int) -> Any:
        """One branch of ``anyOf``/``oneOf``, with the keywords beside it. Deep down, a branch that ends
        (no reference, not an object or array) is preferred, so a recursive schema stops recursing."""
        rest = {key: value for key, value in schema.items() if key != combinator}
        choices = [b for b in branches if isinstance(b, dict)] or [{}]
        if depth >= _DEEP:
            ending = [b for b in choices if "$ref" not in b and b.get("type") not in ("object", "array")]
            choices = ending or choices
        # oneOf must match exactly one branch: its first is the one least likely to overlap the others.
        chosen = choices[0] if combinator == "oneOf" else choices[self._rng.randrange(len(choices))]
        return {**rest, **self._resolved(chosen)}

    def _type(self, schema: dict[str, Any], depth: int) -> str:
        kind = schema.get("type")
        if isinstance(kind, list):
            kinds = [k for k in kind if isinstance(k, str)]
            if depth >= _DEEP and "null" in kinds:
                return "null"
            kind = next((k for k in kinds if k != "null"), "null") if kinds else None
        if isinstance(kind, str):
            return kind
        if "properties" in schema or "required" in schema or "additionalProperties" in schema:
            return "object"
        if "items" in schema or "prefixItems" in schema:
            return "array"
        if any(key in schema for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")):
            return "number"
        return "string"

    # -- objects and arrays ---------------------------------------------------------------------------

    def _object(self, schema: dict[str, Any], depth: int) -> dict[str, Any]:
        properties = schema.get("properties")
        properties = properties if isinstance(properties, dict) else {}
        required = [name for name in schema.get("required", []) if isinstance(name, str)]
        value: dict[str, Any] = {}
        for name in required:
            value[name] = self.value(properties.get(name, {}), depth + 1)
        wanted = _whole(schema.get("minProperties"), 0)
        most = _whole(schema.get("maxProperties"), _UNBOUNDED)
        self._spend(max(0, min(wanted, most) - len(value)))  # before the loop: a huge minimum fails at once
        for name, sub in properties.items():
            if name in value or len(value) >= most:
                continue
            if len(value) < wanted or (depth < _DEEP and self._rng.random() < 0.5):
                value[name] = self.value(sub, depth + 1)
        extra = schema.get("additionalProperties", True)
        while len(value) < min(wanted, most) and extra is not False:
            value[f"{_WORDS[len(value) % len(_WORDS)]}_{len(value)}"] = self.value(
                extra if isinstance(extra, dict) else {"type": "string"}, depth + 1
            )
        return value

    def _array(self, schema: dict[str, Any], depth: int) -> list[Any]:
        prefix = schema.get("prefixItems")
        prefix = prefix if isinstance(prefix, list) else []
        items = schema.get("items", {})
        if isinstance(items, list):  # draft 4-7 tuples
            prefix, items = items, schema.get("additionalItems", {})
        least = _whole(schema.get("minItems"), 0)
        most = _whole(schema.get("maxItems"), _UNBOUNDED)
        count = least if depth >= _DEEP else max(least, 1 + self._rng.randrange(3))
        count = min(count, most)
        if items is False:
            count = min(count, len(prefix))
        self._spend(count)
        values: list[Any] = []
        seen: set[str] = set()
        unique = schema.get("uniqueItems") is True
        for index in range(count):
            sub = prefix[index] if index < len(prefix) else items
            value = self.value(sub, depth + 1)
            for _ in range(16):  # unique items: draw again a few times, then give up on longer arrays
                if not unique or repr(value) not in seen:
                    break
                value = self.value(sub, depth + 1)
            if unique and repr(value) in seen and len(values) >= least:
                break
            seen.add(repr(value))
            values.append(value)
        return values


_HINTED = (
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "minLength", "maxLength",
    "pattern", "format", "minItems", "maxItems", "uniqueItems", "minProperties", "maxProperties",
)  # fmt: skip
_HINT_KEY = re.compile(r"(?:^|, )(" + "|".join(_HINTED) + r"): ")


def _with_hints(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with the constraints the SDK moved into its description put back.

    The API takes a subset of JSON schema for structured outputs; the SDK's ``transform_schema`` moves the
    rest (bounds, patterns, lengths) into the description as ``{minimum: 0, maximum: 130}``, for the model
    to follow, and validates the reply against the full schema. A model reads them, so the simulator does.
    """
    description = schema.get("description")
    if not isinstance(description, str) or not description.endswith("}"):
        return schema
    start = description.rfind("\n\n{") + 2 if "\n\n{" in description else 0
    if description[start : start + 1] != "{":
        return schema
    hint = description[start + 1 : -1]
    keys = list(_HINT_KEY.finditer(hint))
    if not keys or keys[0].start() != 0:
        return schema
    found: dict[str, Any] = {}
    for index, key in enumerate(keys):
        end = keys[index + 1].start() if index + 1 < len(keys) else len(hint)
        name, text = key.group(1), hint[key.end() : end]
        if name not in schema:
            found[name] = _hint_value(text)
    return {**schema, **found} if found else schema


def _hint_value(text: str) -> Any:
    if text in ("True", "False"):
        return text == "True"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _pointer(root: dict[str, Any], ref: str) -> Any:
    """The schema a local reference (``#``, ``#/$defs/name``, ``#/definitions/name``) points at."""
    if not ref.startswith("#"):
        return {}
    node: Any = root
    for raw in ref[1:].split("/"):
        if not raw:
            continue
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict):
            node = node.get(part, {})
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return {}
    return node


def _whole(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else default


def _bound(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _number(schema: dict[str, Any], rng: random.Random, *, integer: bool) -> int | float:
    """A number inside the schema's bounds (inclusive or exclusive) and a multiple of ``multipleOf``."""
    low, high = _bound(schema.get("minimum")), _bound(schema.get("maximum"))
    low_open, high_open = _bound(schema.get("exclusiveMinimum")), _bound(schema.get("exclusiveMaximum"))
    if schema.get("exclusiveMinimum") is True and low is not None:  # draft 4: a flag beside minimum
        low, low_open = None, low
    if schema.get("exclusiveMaximum") is True and high is not None:
        high, high_open = None, high
    lowest = max(x for x in (low, low_open, -math.inf) if x is not None)
    highest = min(x for x in (high, high_open, math.inf) if x is not None)
    if lowest == -math.inf:
        lowest = min(0.0, highest - 100)
    if highest == math.inf:
        highest = lowest + 100
    lowest = min(max(lowest, -_LARGEST_NUMBER), _LARGEST_NUMBER)
    highest = max(min(highest, _LARGEST_NUMBER), -_LARGEST_NUMBER)
    step = _bound(schema.get("multipleOf"))
    if step is None or step <= 0:
        step = 1.0 if integer else None
    elif integer and step != int(step):
        step = 1.0  # a fractional multipleOf on integers: whole numbers are the simplest multiples to try
    if step is None:
        value = round(rng.uniform(lowest, highest), 2)
        if not lowest <= value <= highest or value in (low_open, high_open):
            value = (lowest + highest) / 2
        return value
    first, last = math.ceil(lowest / step), math.floor(highest / step)
    if low_open is not None and first * step <= low_open:
        first += 1
    if high_open is not None and last * step >= high_open:
        last -= 1
    last = max(first, last)
    # Validators test a float multiple by dividing (0.07 / 0.01 is 7.000000000000001): keep the first
    # candidate whose quotient comes out whole, trying random multiples and then the range in order.
    candidates = [rng.randint(first, last) for _ in range(4)] + list(range(first, min(last, first + 64) + 1))
    for k in candidates:
        value = k * step
        if integer:
            return int(value)
        value = round(value, 12)
        if value / step == int(value / step):
            return value
    return int(first * step) if integer else first * step


def _string(schema: dict[str, Any], rng: random.Random) -> str:
    fmt = schema.get("format")
    formatted = _FORMATS.get(fmt) if isinstance(fmt, str) else None
    if formatted is not None:
        return str(formatted(rng))
    pattern = schema.get("pattern")
    if isinstance(pattern, str):
        found = string_for_pattern(pattern, rng, longest=_LONGEST_STRING)
        if found is not None:
            return found
    least = _whole(schema.get("minLength"), 0)
    most = _whole(schema.get("maxLength"), 10_000)
    if least > _LONGEST_STRING:
        raise SchemaTooLargeError(f"minLength {least} is more than the {_LONGEST_STRING} characters allowed")
    words = " ".join(_WORDS[rng.randrange(len(_WORDS))] for _ in range(1 + rng.randrange(3)))
    while len(words) < least:
        words += " " + _WORDS[rng.randrange(len(_WORDS))]
    return words[: max(least, min(len(words), most))]


def _word(rng: random.Random) -> str:
    return _WORDS[rng.randrange(len(_WORDS))]


def _date(rng: random.Random) -> str:
    return f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"


def _time(rng: random.Random) -> str:
    return f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}Z"


_FORMATS: dict[str, Any] = {
    "date-time": lambda rng: f"{_date(rng)}T{_time(rng)}",
    "date": _date,
    "time": _time,
    "duration": lambda rng: f"PT{rng.randint(1, 59)}M",
    "email": lambda rng: f"{_word(rng)}@example.com",
    "idn-email": lambda rng: f"{_word(rng)}@example.com",
    "hostname": lambda rng: f"{_word(rng)}.example.com",
    "idn-hostname": lambda rng: f"{_word(rng)}.example.com",
    "uri": lambda rng: f"https://example.com/{_word(rng)}",
    "url": lambda rng: f"https://example.com/{_word(rng)}",
    "iri": lambda rng: f"https://example.com/{_word(rng)}",
    "uri-reference": lambda rng: f"/{_word(rng)}",
    "iri-reference": lambda rng: f"/{_word(rng)}",
    "uri-template": lambda rng: f"https://example.com/{{{_word(rng)}}}",
    "ipv4": lambda rng: f"192.0.2.{rng.randint(1, 254)}",
    "ipv6": lambda rng: f"2001:db8::{rng.randint(1, 0xFFFF):x}",
    "uuid": lambda rng: (
        f"{rng.getrandbits(32):08x}-{rng.getrandbits(16):04x}-4{rng.getrandbits(12):03x}-"
        f"{0x8000 | rng.getrandbits(14):04x}-{rng.getrandbits(48):012x}"
    ),
    "json-pointer": lambda rng: f"/{_word(rng)}",
    "relative-json-pointer": lambda rng: "0",
    "regex": lambda rng: "^[a-z]+$",
}

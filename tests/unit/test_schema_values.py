"""Values built from a JSON schema validate against it, for every seed: tool inputs and structured outputs
are parsed by clients without a check, as the API's are."""

from __future__ import annotations

import datetime
import enum
import random
import uuid
from typing import Any, Literal

import jsonschema
import orjson
import pydantic
import pytest
from anthropic.lib._parse._transform import transform_schema

from claudegate.simulator.schema_values import SchemaTooLargeError, value_for_schema


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Address(pydantic.BaseModel):
    street: str
    city: str
    postcode: str = pydantic.Field(pattern=r"^[A-Z]{2}\d{1,2} \d[A-Z]{2}$")


class Person(pydantic.BaseModel):
    name: str
    age: int = pydantic.Field(ge=0, le=130)
    email: str | None = None
    born: datetime.date
    seen_at: datetime.datetime
    id: uuid.UUID
    colour: Colour
    kind: Literal["staff", "guest"]
    score: float = pydantic.Field(gt=0, lt=1)
    tags: list[str] = pydantic.Field(min_length=1)
    home: Address
    past: list[Address] = []
    manager: Person | None = None  # recursion through $ref


SCHEMAS: dict[str, dict[str, Any]] = {
    "pydantic-model": Person.model_json_schema(),
    "sdk-transformed": transform_schema(Person),
    "nested-arrays": {
        "type": "object",
        "properties": {
            "matrix": {
                "type": "array",
                "items": {"type": "array", "items": {"type": "integer"}, "minItems": 2},
            },
            "pair": {
                "type": "array",
                "prefixItems": [{"type": "string"}, {"type": "boolean"}],
                "items": False,
            },
        },
        "required": ["matrix", "pair"],
        "additionalProperties": False,
    },
    "numbers": {
        "type": "object",
        "properties": {
            "even": {"type": "integer", "multipleOf": 2, "minimum": 3, "maximum": 9},
            "cents": {"type": "number", "multipleOf": 0.01, "minimum": 0, "maximum": 1},
            "open": {"type": "number", "exclusiveMinimum": 5, "exclusiveMaximum": 5.5},
            "negative": {"type": "integer", "maximum": -10},
            "draft4": {"type": "number", "minimum": 1, "exclusiveMinimum": True, "maximum": 2},
        },
        "required": ["even", "cents", "open", "negative"],
    },
    "strings": {
        "type": "object",
        "properties": {
            fmt: {"type": "string", "format": fmt}
            for fmt in (
                "date-time",
                "date",
                "time",
                "email",
                "hostname",
                "uri",
                "ipv4",
                "ipv6",
                "uuid",
                "text",
            )
        }
        | {
            "sized": {"type": "string", "minLength": 40, "maxLength": 45},
            "short": {"type": "string", "maxLength": 3},
            "code": {"type": "string", "pattern": "^(GB|FR)-[0-9a-f]{4}(-x)?$"},
            "not_digits": {"type": "string", "pattern": "^[^0-9]+$"},
        },
        "required": [
            "date-time",
            "date",
            "time",
            "email",
            "hostname",
            "uri",
            "ipv4",
            "ipv6",
            "uuid",
            "text",
            "sized",
            "short",
            "code",
            "not_digits",
        ],
    },
    "combinators": {
        "$defs": {
            "node": {
                "type": "object",
                "properties": {
                    "value": {"type": "integer"},
                    "next": {"anyOf": [{"$ref": "#/$defs/node"}, {"type": "null"}]},
                },
                "required": ["value", "next"],
                "additionalProperties": False,
            }
        },
        "type": "object",
        "properties": {
            "list": {"$ref": "#/$defs/node"},
            "either": {"oneOf": [{"type": "string", "enum": ["a", "b"]}, {"type": "integer"}]},
            "both": {
                "allOf": [
                    {"properties": {"x": {"type": "integer"}}, "required": ["x"]},
                    {"properties": {"y": {"const": 7}}, "required": ["y"]},
                ]
            },
            "unique": {"type": "array", "items": {"enum": [1, 2, 3]}, "uniqueItems": True, "minItems": 3},
            "typed": {"type": ["null", "string"]},
            "many": {"type": "object", "minProperties": 3, "additionalProperties": {"type": "number"}},
        },
        "required": ["list", "either", "both", "unique", "typed", "many"],
        "additionalProperties": False,
    },
}


@pytest.mark.parametrize("name", SCHEMAS)
def test_values_validate_against_their_schema_for_every_seed(name: str) -> None:
    schema = SCHEMAS[name]
    validator = jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    for seed in range(200):
        value = value_for_schema(schema, random.Random(seed))
        errors = list(validator.iter_errors(value))
        assert not errors, (seed, value, [error.message for error in errors])


def test_the_same_seed_gives_the_same_value_and_seeds_differ() -> None:
    schema = SCHEMAS["pydantic-model"]
    assert value_for_schema(schema, random.Random(7)) == value_for_schema(schema, random.Random(7))
    assert len({repr(value_for_schema(schema, random.Random(seed))) for seed in range(20)}) > 10


def test_pydantic_parses_the_values_of_its_own_schema() -> None:
    for seed in range(50):
        Person.model_validate(value_for_schema(transform_schema(Person), random.Random(seed)))


ODD_SCHEMAS: list[Any] = [
    {"type": 5},
    {"$ref": "#/nowhere"},
    {"enum": []},
    {"anyOf": []},
    {"allOf": [5]},
    {"properties": 5},
    {"type": "object", "required": [1, 2]},
    {"type": "string", "pattern": "[[["},
    {"type": "string", "pattern": "a{99999999}"},
    {"type": "string", "format": 5},
    {"type": "integer", "minimum": 10, "maximum": 1},
    {"type": "integer", "minimum": -1e308, "maximum": 1e308},
    {"type": "number", "exclusiveMinimum": 1e308},
    {"type": "number", "multipleOf": 0},
    {"type": "number", "minimum": "x"},
]
ENDLESS_SCHEMAS: list[Any] = [
    {"type": "object", "properties": {"again": {"$ref": "#"}}, "required": ["again"]},
    {"type": "array", "items": {"$ref": "#"}, "minItems": 2},
    {"type": "string", "minLength": 10**9},
    {"type": "array", "minItems": 10**9},
    {"type": "object", "minProperties": 10**7},
]


@pytest.mark.parametrize("schema", ODD_SCHEMAS)
def test_odd_schemas_still_give_a_value_json_can_carry(schema: Any) -> None:
    orjson.dumps(value_for_schema(schema, random.Random(1)))  # ints beyond 64 bits would raise


@pytest.mark.parametrize("schema", ENDLESS_SCHEMAS)
def test_schemas_without_a_small_value_are_refused_at_once(schema: Any) -> None:
    with pytest.raises(SchemaTooLargeError):
        value_for_schema(schema, random.Random(1))

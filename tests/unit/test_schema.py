from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from tabpy.tabpy_tools.errors import SchemaError
from tabpy.tabpy_tools.schema import generate_schema, infer_schema


def test_sentiment_example_matches_tabpy_byte_for_byte() -> None:
    schema = generate_schema(
        input={"x": ["happy", "sad", "neutral"]},
        input_description={"x": "text to analyze"},
        output=[0.98, -0.99, 0],
        output_description="scores for input texts",
    )
    assert json.dumps(schema) == (
        '{"input": {"type": "object", "properties": {"x": {"type": "array", "items": '
        '{"type": "string"}, "description": "text to analyze"}}, "required": ["x"]}, '
        '"sample": {"x": ["happy", "sad", "neutral"]}, "output": {"type": "array", "items": '
        '{"type": "number"}, "description": "scores for input texts"}}'
    )


def test_scalar_example_matches_tabpy_byte_for_byte() -> None:
    schema = generate_schema(
        input=5,
        output=25,
        input_description="input value",
        output_description="the squared value of input",
    )
    assert json.dumps(schema) == (
        '{"input": {"type": "integer", "description": "input value"}, "sample": 5, '
        '"output": {"type": "integer", "description": "the squared value of input"}}'
    )


def test_add_example_from_a_tabpy_state_file() -> None:
    schema = generate_schema(
        input={"x": 3, "y": 2},
        output=5,
        input_description={"x": "first value", "y": "second value"},
        output_description="the sum of x and y",
    )
    assert str(schema) == (
        "{'input': {'type': 'object', 'properties': {'x': {'type': 'integer', 'description': "
        "'first value'}, 'y': {'type': 'integer', 'description': 'second value'}}, "
        "'required': ['x', 'y']}, 'sample': {'x': 3, 'y': 2}, 'output': {'type': 'integer', "
        "'description': 'the sum of x and y'}}"
    )


def test_descriptions_are_optional() -> None:
    assert generate_schema(input="a", output=None) == {
        "input": {"type": "string"},
        "sample": "a",
        "output": {"type": "null"},
    }


@pytest.mark.parametrize(
    ("example", "schema"),
    [
        (None, {"type": "null"}),
        (True, {"type": "boolean"}),
        (3, {"type": "integer"}),
        (3.5, {"type": "number"}),
        ("s", {"type": "string"}),
        (np.int64(3), {"type": "integer"}),
        (np.float64(0.5), {"type": "number"}),
        ({}, {"type": "object"}),
        ([], {"type": "array"}),
        ((1, 2), {"type": "array", "items": {"type": "integer"}}),
        ([1, 2.5], {"type": "array", "items": {"type": "number"}}),
        ([True, 1], {"type": "array", "items": {"type": ["boolean", "integer"]}}),
        (["a", 1, None], {"type": "array", "items": {"type": ["integer", "null", "string"]}}),
        (
            [[1], [], [2.5]],
            {"type": "array", "items": {"type": "array", "items": {"type": "number"}}},
        ),
        (
            {"b": {"c": [1]}, "a": "x"},
            {
                "type": "object",
                "properties": {
                    "b": {
                        "type": "object",
                        "properties": {"c": {"type": "array", "items": {"type": "integer"}}},
                        "required": ["c"],
                    },
                    "a": {"type": "string"},
                },
                "required": ["a", "b"],
            },
        ),
        (
            [{"a": 1, "b": "x"}, {"a": 2.5}],
            {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"a": {"type": "number"}, "b": {"type": "string"}},
                    "required": ["a"],
                },
            },
        ),
        (
            [{"a": 1}, 2],
            {
                "type": "array",
                "items": {
                    "anyOf": [
                        {
                            "type": "object",
                            "properties": {"a": {"type": "integer"}},
                            "required": ["a"],
                        },
                        {"type": "integer"},
                    ]
                },
            },
        ),
    ],
)
def test_inference(example: Any, schema: dict[str, Any]) -> None:
    assert infer_schema(example) == schema


def test_values_json_cannot_carry_are_refused() -> None:
    with pytest.raises(SchemaError, match="cannot describe a value of type bytes"):
        infer_schema(b"raw")
    with pytest.raises(SchemaError, match="type object"):
        generate_schema(input=object(), output=1)


def test_object_description_key_must_exist() -> None:
    with pytest.raises(SchemaError, match=r"^z not found in \{'x': 1\}$") as caught:
        generate_schema(input={"x": 1}, output=1, input_description={"z": "nope"})
    assert isinstance(caught.value, Exception)


@pytest.mark.parametrize(
    ("example", "description"),
    [({"x": 1}, "one string for an object"), (5, {"x": "a dict for a scalar"}), ([1], 7)],
)
def test_description_shape_must_match_the_example(example: Any, description: Any) -> None:
    with pytest.raises(SchemaError, match=r" do not match$") as caught:
        generate_schema(input=1, output=example, output_description=description)
    assert str(caught.value) == f"{example} and {description} do not match"
    assert isinstance(caught.value, ValueError)

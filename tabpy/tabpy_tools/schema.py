"""Describe an endpoint's input and output with JSON Schema inferred from one example of each.

``generate_schema`` returns ``{"input": <schema>, "sample": <input example>, "output": <schema>}``,
the shape TabPy 2.16 stores with an endpoint. Inference covers what JSON can carry: objects,
arrays, strings, numbers, integers, booleans and null. An object's ``required`` list holds the
example's keys, sorted; an array's ``items`` merges the schemas of all its elements.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any

from tabpy.tabpy_tools.errors import SchemaError

__all__ = ["generate_schema", "infer_schema"]

Schema = dict[str, Any]


def generate_schema(
    input: Any,
    output: Any,
    input_description: str | Mapping[str, str] | None = None,
    output_description: str | Mapping[str, str] | None = None,
) -> Schema:
    """Build the schema stored with an endpoint from an example input and its output.

    A description is a string for a non-object example, and a mapping from some of its keys to a
    string for an object example (each becomes that property's ``description``). Anything else
    raises :class:`~tabpy.tabpy_tools.errors.SchemaError`.

    >>> generate_schema(input=5, output=25, input_description="input value")
    {'input': {'type': 'integer', 'description': 'input value'}, 'sample': 5, 'output': {'type': 'integer'}}
    """  # noqa: E501
    return {
        "input": _described(infer_schema(input), input, input_description),
        "sample": input,
        "output": _described(infer_schema(output), output, output_description),
    }


def infer_schema(example: Any) -> Schema:
    """Return the narrowest JSON Schema (without ``$schema``) that ``example`` satisfies."""
    # bool before numbers: True is an Integral.
    if example is None:
        return {"type": "null"}
    if isinstance(example, bool):
        return {"type": "boolean"}
    if isinstance(example, str):
        return {"type": "string"}
    if isinstance(example, numbers.Integral):
        return {"type": "integer"}
    if isinstance(example, numbers.Real):
        return {"type": "number"}
    if isinstance(example, Mapping):
        schema: Schema = {"type": "object"}
        if example:
            schema["properties"] = {str(key): infer_schema(v) for key, v in example.items()}
            schema["required"] = sorted(str(key) for key in example)
        return schema
    if isinstance(example, Sequence) and not isinstance(example, (bytes, bytearray)):
        schema = {"type": "array"}
        if example:
            schema["items"] = _merge([infer_schema(item) for item in example])
        return schema
    raise SchemaError(
        f"cannot describe a value of type {type(example).__name__} in JSON Schema: "
        "use JSON values (dict, list, str, int, float, bool, None) as examples"
    )


def _described(schema: Schema, example: Any, description: Any) -> Schema:
    if description is None:
        return schema
    if isinstance(example, Mapping):
        if not isinstance(description, Mapping):
            raise SchemaError(f"{example} and {description} do not match")
        properties = schema.get("properties", {})
        for key, text in description.items():
            if key not in properties:
                raise SchemaError(f"{key} not found in {example}")
            properties[key]["description"] = text
        return schema
    if not isinstance(description, str):
        raise SchemaError(f"{example} and {description} do not match")
    schema["description"] = description
    return schema


def _merge(schemas: list[Schema]) -> Schema:
    """One schema that every element of an array satisfies."""
    alternatives: list[Schema] = []
    for schema in schemas:
        for alternative in _alternatives(schema):
            if alternative not in alternatives:
                alternatives.append(alternative)
    objects = [s for s in alternatives if s.get("type") == "object"]
    arrays = [s for s in alternatives if s.get("type") == "array"]
    scalars = {s["type"] for s in alternatives if s.get("type") not in ("object", "array")}
    if "number" in scalars:
        scalars.discard("integer")  # every integer is a number
    parts: list[Schema] = []
    if objects:
        parts.append(_merge_objects(objects))
    if arrays:
        items = [s["items"] for s in arrays if "items" in s]
        parts.append({"type": "array", "items": _merge(items)} if items else {"type": "array"})
    if scalars:
        parts.append({"type": scalars.pop() if len(scalars) == 1 else sorted(scalars)})
    return parts[0] if len(parts) == 1 else {"anyOf": parts}


def _alternatives(schema: Schema) -> list[Schema]:
    if "anyOf" in schema:
        return list(schema["anyOf"])
    if isinstance(schema.get("type"), list):
        return [{"type": name} for name in schema["type"]]
    return [schema]


def _merge_objects(schemas: list[Schema]) -> Schema:
    if len(schemas) == 1:
        return schemas[0]
    by_key: dict[str, list[Schema]] = {}
    for schema in schemas:
        for key, sub in schema.get("properties", {}).items():
            by_key.setdefault(key, []).append(sub)
    merged: Schema = {"type": "object"}
    if by_key:
        merged["properties"] = {key: _merge(subs) for key, subs in by_key.items()}
    # A key is required only if every example object has it.
    required = set.intersection(*(set(s.get("required", ())) for s in schemas))
    if required:
        merged["required"] = sorted(required)
    return merged

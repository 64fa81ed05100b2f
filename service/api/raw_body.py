"""Schemas of the bodies that handlers read raw (the ingest routes: one bad event must not
sink the batch), derived from the msgspec structs that decode them."""

from __future__ import annotations

import dataclasses
from typing import Any

import msgspec
from litestar.openapi.spec import (
    OpenAPIFormat,
    OpenAPIMediaType,
    OpenAPIType,
    Operation,
    RequestBody,
    Schema,
)

_SCHEMA_FIELDS = {str(f.metadata.get("alias", f.name)): f.name for f in dataclasses.fields(Schema)}


def _inline_refs(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline_refs(defs[ref.removeprefix("#/$defs/")], defs)
        return {key: _inline_refs(value, defs) for key, value in node.items()}
    if isinstance(node, list):
        return [_inline_refs(value, defs) for value in node]
    return node


def _to_schema(node: dict[str, Any]) -> Schema:
    """msgspec's JSON Schema (a dict) as Litestar's ``Schema`` objects."""
    values: dict[str, Any] = {}
    for key, value in node.items():
        name = _SCHEMA_FIELDS.get(key)
        if name is None:
            continue
        if key == "type":
            value = OpenAPIType(value)
        elif key == "format":
            value = OpenAPIFormat(value)
        elif key in ("properties", "patternProperties"):
            value = {k: _to_schema(v) for k, v in value.items()}
        elif key in ("anyOf", "oneOf", "allOf", "prefixItems"):
            value = [_to_schema(v) for v in value]
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            value = _to_schema(value)
        values[name] = value
    return Schema(**values)


def json_schema_of(struct: type[msgspec.Struct], **overrides: dict[str, Any]) -> Schema:
    """The OpenAPI schema of a msgspec struct; ``overrides`` replace property schemas."""
    document = msgspec.json.schema(struct)
    inlined = _inline_refs(document, document.get("$defs", {}))
    inlined.pop("$defs", None)
    for name, replacement in overrides.items():
        inlined["properties"][name] = replacement
    return _to_schema(inlined)


def raw_json_body(schema: Schema, description: str) -> type[Operation]:
    """An ``operation_class`` for a handler that reads its JSON body itself."""

    @dataclasses.dataclass
    class RawJsonBodyOperation(Operation):
        def __post_init__(self) -> None:
            self.request_body = RequestBody(
                content={"application/json": OpenAPIMediaType(schema=schema)},
                description=description,
                required=True,
            )

    return RawJsonBodyOperation

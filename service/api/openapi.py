"""What the OpenAPI document says beyond what each handler declares.

- Every guarded operation names its security (a bearer API key) and the error answers
  every route can give (401, 403, 429, 503, ...), with LUC's one error body; written once
  here instead of on forty handlers, from the same scopes the guard enforces.
- Handlers that read their body raw document it with ``service.api.raw_body``.
- A struct that refuses unknown fields is a closed object (``additionalProperties: false``):
  Litestar leaves that out, so clients and fuzzers sent extra fields the server refuses.
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import get_args

import msgspec
from litestar import Litestar
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.spec import (
    Components,
    OpenAPI,
    OpenAPIHeader,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    Parameter,
    Reference,
    RequestBody,
    Schema,
    SecurityScheme,
)
from litestar.routes import HTTPRoute

from service.api.errors import luc_error_handler
from service.auth.guard import required_scopes
from service.errors import LucError

SECURITY_SCHEME = "apiKey"
# In a handler's ``opt``: it can answer 404 though its path and query name nothing (the
# resource is named in the body, or is "the one in force"), so the document keeps the 404.
NOT_FOUND_WITHOUT_PARAMETERS = "not_found_without_parameters"
ERROR_SCHEMA = "ErrorBody"

_TEXT = Schema(type=OpenAPIType.STRING)
# status → (description, headers the answer always carries)
_GUARDED_ERRORS: dict[int, tuple[str, dict[str, str]]] = {
    400: ("A parameter or the body cannot be read", {}),
    401: (
        "No API key, or an unknown or revoked one",
        {"WWW-Authenticate": "Bearer challenge"},
    ),
    403: ("The API key's scope does not allow this route", {}),
    404: ("A resource the request names does not exist", {}),
    422: ("The request is well formed but refused; the detail names the field", {}),
    429: (
        "Over this API key's request rate",
        {"Retry-After": "Seconds to wait before retrying"},
    ),
    503: (
        "PostgreSQL is unreachable; nothing was stored",
        {"Retry-After": "Seconds to wait before retrying"},
    ),
}
_WRITE_ERRORS: dict[int, tuple[str, dict[str, str]]] = {
    409: ("The request clashes with what is stored", {}),
    413: ("The body (or the batch) is over its limit; it was not read to the end", {}),
}
_WRITES = {"post", "put", "patch", "delete"}


def more_answers(
    status: int, json_alternatives: list[Schema], text_media_types: list[str]
) -> type[Operation]:
    """An ``operation_class`` for a handler whose ``status`` answer has more forms than the
    one it declares: other JSON shapes (by a query parameter) and text media types.
    Litestar documents one media type and one shape per status."""

    @dataclasses.dataclass
    class MoreAnswersOperation(Operation):
        def __post_init__(self) -> None:
            response = (self.responses or {}).get(str(status))
            if not isinstance(response, OpenAPIResponse) or response.content is None:
                raise TypeError(f"{self.operation_id}: no {status} answer to add forms to")
            media = response.content["application/json"]
            if media.schema is not None:
                media.schema = Schema(any_of=[media.schema, *json_alternatives])
            for media_type in text_media_types:
                response.content[media_type] = OpenAPIMediaType(schema=_TEXT)

    return MoreAnswersOperation


def _error_response(description: str, headers: dict[str, str], own: bool) -> OpenAPIResponse:
    if own:
        # The handler answers errors in its own format (the OpenAI-compatible proxy).
        return OpenAPIResponse(description=f"{description} (in this route's error format)")
    return OpenAPIResponse(
        description=description,
        headers={
            name: OpenAPIHeader(schema=_TEXT, description=text, required=True)
            for name, text in headers.items()
        }
        or None,
        content={
            "application/json": OpenAPIMediaType(
                schema=Reference(ref=f"#/components/schemas/{ERROR_SCHEMA}")
            )
        },
    )


def _error_body_schema() -> Schema:
    return Schema(
        type=OpenAPIType.OBJECT,
        properties={
            "status_code": Schema(type=OpenAPIType.INTEGER),
            "detail": Schema(type=OpenAPIType.STRING, description="What went wrong, precisely"),
        },
        required=["status_code", "detail"],
    )


def _refs(node: object) -> set[str]:
    """The component names ``node`` refers to, however deep."""
    if isinstance(node, Reference):
        return {node.ref.rsplit("/", 1)[-1]}
    if isinstance(node, Schema):
        children: list[object] = [node.items, node.additional_properties]
        children += list((node.properties or {}).values())
        children += list(node.one_of or []) + list(node.any_of or []) + list(node.all_of or [])
        return set().union(*(_refs(child) for child in children))
    return set()


def _close_request_structs(openapi: OpenAPI, schemas: dict[str, Schema]) -> None:
    """``additionalProperties: false`` on the request body components (and those nested in
    them) of structs decoded with ``forbid_unknown_fields``: a body with another field is a
    400 naming it. Answers stay open: more fields are welcome there (SPEC §5)."""
    strict = {
        struct.__name__
        for struct in _structs()
        if struct.__module__.startswith("service.")
        and struct.__struct_config__.forbid_unknown_fields
    }
    todo: set[str] = set()
    for path_item in (openapi.paths or {}).values():
        for method in ("put", "post", "patch", "delete"):
            operation = getattr(path_item, method, None)
            body = operation.request_body if isinstance(operation, Operation) else None
            if isinstance(body, RequestBody):
                for media in (body.content or {}).values():
                    todo |= _refs(media.schema)
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        seen.add(name)
        schema = schemas.get(name)
        if not isinstance(schema, Schema):
            continue
        if name in strict and schema.title == name:
            schema.additional_properties = False
        todo |= _refs(schema) - seen


def _decimals_as_numbers(schemas: dict[str, Schema]) -> None:
    """A ``Decimal`` field of a request body is a JSON number on the wire (a budget's
    ``thresholds``, SPEC §10 ``[0.5, 0.8, 1.0]``: decoded from the number's text, exactly);
    Litestar documents every ``Decimal`` as a string, so a client built from the document
    sent strings and a validator refused SPEC's own example. Money is never a ``Decimal``
    field of a body: it is a decimal string, typed ``str``."""
    for struct in _structs():
        schema = schemas.get(struct.__name__)
        if not struct.__module__.startswith("service.") or not isinstance(schema, Schema):
            continue
        for field in msgspec.structs.fields(struct):
            if _holds_decimal(field.type) and schema.properties:
                _strings_to_numbers(schema.properties.get(field.encode_name))


def _holds_decimal(kind: object) -> bool:
    """Whether ``kind`` is ``Decimal`` or a type made of it (``list[Decimal] | None``)."""
    return kind is Decimal or any(_holds_decimal(arg) for arg in get_args(kind))


def _strings_to_numbers(node: object) -> None:
    if isinstance(node, Schema):
        if node.type == OpenAPIType.STRING:
            node.type = OpenAPIType.NUMBER
        for child in (node.items, *(node.one_of or ()), *(node.any_of or ())):
            _strings_to_numbers(child)


def _structs(base: type[msgspec.Struct] = msgspec.Struct) -> list[type[msgspec.Struct]]:
    found = []
    for sub in base.__subclasses__():
        found.append(sub)
        found.extend(_structs(sub))
    return found


def _handlers_by_operation_id(app: Litestar) -> dict[str, HTTPRouteHandler]:
    handlers: dict[str, HTTPRouteHandler] = {}
    for route in app.routes:
        if isinstance(route, HTTPRoute):
            for handler in route.route_handlers:
                if isinstance(handler.operation_id, str):
                    handlers[handler.operation_id] = handler
    return handlers


def document_errors(app: Litestar) -> None:
    """Add security and the shared error answers to every guarded operation of ``app``."""
    openapi = app.openapi_schema
    handlers = _handlers_by_operation_id(app)
    components = openapi.components
    if not isinstance(components, Components):  # Litestar always builds one
        return
    components.schemas.setdefault(ERROR_SCHEMA, _error_body_schema())
    _close_request_structs(openapi, components.schemas)
    _decimals_as_numbers(components.schemas)
    _name_history_path(openapi)
    components.security_schemes = {
        SECURITY_SCHEME: SecurityScheme(
            type="http",
            scheme="bearer",
            description="A LUC API key (`luc keys create`): Authorization: Bearer <key>",
        )
    }
    for path, path_item in (openapi.paths or {}).items():
        for method in ("get", "put", "post", "delete", "patch"):
            operation = getattr(path_item, method, None)
            if not isinstance(operation, Operation) or operation.operation_id not in handlers:
                continue
            if required_scopes(handlers[operation.operation_id]) == ():
                continue  # public: the probes
            operation.security = [{SECURITY_SCHEME: []}]
            errors = dict(_GUARDED_ERRORS)
            handler = handlers[operation.operation_id]
            names_nothing = "{" not in path and not operation.parameters
            if names_nothing and not handler.opt.get(NOT_FOUND_WITHOUT_PARAMETERS):
                del errors[404]  # names no resource: nothing to miss
            if method in _WRITES:
                errors.update(_WRITE_ERRORS)
            own = handler.resolve_exception_handlers().get(LucError) is not luc_error_handler
            responses = operation.responses if operation.responses is not None else {}
            for status, (description, headers) in errors.items():
                # What a handler documents itself wins; Litestar's generic 400 is replaced.
                if str(status) not in responses or status == 400:
                    responses[str(status)] = _error_response(description, headers, own)
            operation.responses = responses


ROUTED_HISTORY_PATH = "/v1/catalog/models/{model_path}"
HISTORY_PATH = "/v1/catalog/models/{model_id}/history"


def _name_history_path(openapi: OpenAPI) -> None:
    """A model's price history as its clients call it, ``/v1/catalog/models/{model_id}/
    history``: routed as one path parameter (model ids hold ``/``) that must end in
    ``/history``, it was documented as ``{model_path}`` alone, which a client built from the
    document called without the suffix, and every model was a 404."""
    paths = openapi.paths or {}
    item = paths.pop(ROUTED_HISTORY_PATH, None)
    if item is None:
        return
    for parameter in (item.get.parameters or []) if item.get is not None else []:
        if isinstance(parameter, Parameter) and parameter.name == "model_path":
            parameter.name = "model_id"
            parameter.description = (
                "a catalog model id or an alias; its `/` as is or percent-encoded (`%2F`)"
            )
    paths[HISTORY_PATH] = item

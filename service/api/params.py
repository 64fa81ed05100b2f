"""Query parameter parsing shared by controllers: time bounds, cursors, pages."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, TypeVar

from litestar import Request
from litestar.enums import ParamType, ScopeType
from litestar.handlers import HTTPRouteHandler
from litestar.params import ParameterKwarg, QueryParameter
from litestar.types import ASGIApp, Receive, Scope, Send

from service import wire
from service.errors import InvalidRequestError

MAX_PAGE = 1000
DEFAULT_PAGE = 100

# The query parameters several routes take, declared once.
From = Annotated[str | None, QueryParameter(name="from", description="RFC 3339, inclusive")]
To = Annotated[str | None, QueryParameter(name="to", description="RFC 3339, exclusive")]
# Checked by page_size (its own message); written here so the document says the range too.
PAGE_RANGE: dict[str, Any] = {"minimum": 1, "maximum": MAX_PAGE}
Limit = Annotated[
    int | None, QueryParameter(description="page size, 1–1000 (100)", schema_extra=PAGE_RANGE)
]

T = TypeVar("T")


ANY_QUERY = "any_query"
"""A route's ``opt`` key: the route takes query parameters it does not declare (OpenAI's
protocol, whose SDKs may add their own, such as Azure's ``api-version``)."""


class BlankQueryValues:
    """Middleware: a query parameter with an empty value (``?agent=&from=``) is left out, as
    if not given. SPEC §5 writes its reads with every filter blank (``from=&to=&agent=``),
    and HTTP clients send a parameter set to None so (httpx writes ``agent=``): ``from=`` was
    read as absent but ``agent=`` as the agent "", which no event has, so the answer was
    silently empty. The rest of the query is kept byte for byte."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        query: bytes = scope.get("query_string", b"")
        if query and scope["type"] == ScopeType.HTTP:
            pairs = query.split(b"&")
            kept = [p for p in pairs if p.partition(b"=")[2]]
            if len(kept) != len(pairs):
                scope["query_string"] = b"&".join(kept)
        await self.app(scope, receive, send)


async def single_query_values(request: Request[Any, Any, Any]) -> None:
    """``before_request`` of every route: a query parameter given twice (``?from=A&from=B``)
    is a 400 naming it, before the handler reads its parameters (Litestar would keep one of
    the values and drop the other silently). A parameter declared as a list takes repeats.
    A parameter the route does not take is a 400 too: ``?form=`` for ``?from=`` would
    otherwise read the whole range and answer a total that looks right. Async though it
    never waits: Litestar would run a plain function on a worker thread, a thread hop
    (≈ 0.1 ms) on every request."""
    if not request.query_params:
        return
    handler = request.route_handler
    declared = _query_names(handler)
    seen: set[str] = set()
    for name, value in request.query_params.multi_items():
        if name not in declared.names and not _takes_any_query(handler):
            takes = ", ".join(sorted(declared.names)) or "none"
            raise InvalidRequestError(
                f"{name}: not a query parameter of this route (it takes: {takes})",
                status_code=400,
            )
        if name in declared.numbers and not _PLAIN_NUMBER.fullmatch(value):
            # Litestar reads 1e3 as 1000, -0 as 0, 1_0 as 10: a number as LUC writes one.
            raise InvalidRequestError(
                f"{name}: {value!r} is not a whole number (ASCII digits, no exponent, "
                "separator or leading zero)",
                status_code=400,
            )
        if name in seen and name not in declared.lists:
            raise InvalidRequestError(
                f"{name}: given more than once; it takes one value", status_code=400
            )
        seen.add(name)


async def plain_path_numbers(request: Request[Any, Any, Any]) -> None:
    """``before_request`` of every route: a number in the path (``/v1/keys/{key_id:int}``)
    written as LUC writes it, ASCII digits with no sign, padding or separator. Litestar reads
    it with ``int()``, which takes ``1_1`` (11), `` 1``, ``+1``, ``001`` and other scripts'
    digits: ``DELETE /v1/keys/1_1`` revoked key 11."""
    numbers = [(k, v) for k, v in request.path_params.items() if type(v) is int]
    if not numbers:
        return
    template = request.scope.get("path_template", "").split("/")
    written = dict(zip(template, request.scope["path"].split("/"), strict=False))
    for name, value in numbers:
        text = written.get(f"{{{name}}}")
        if text is not None and text != str(value):
            raise InvalidRequestError(
                f"{name}: {text!r} is not a number as LUC writes one (ASCII digits, "
                "no sign, leading zeros or separators)",
                status_code=400,
            )


_PLAIN_NUMBER = re.compile(r"0|-?[1-9][0-9]*")


def _takes_any_query(handler: HTTPRouteHandler) -> bool:
    """Whether ``handler`` takes query parameters it does not declare: one marked so, or one
    Litestar made itself (the OpenAPI document and its pages, which browsers and code
    generators call with cache-busters of their own; the answer to OPTIONS)."""
    return bool(handler.opt.get(ANY_QUERY)) or handler.fn.__module__.startswith("litestar.")


@dataclass(frozen=True, slots=True)
class _QueryNames:
    names: frozenset[str]
    lists: frozenset[str]
    numbers: frozenset[str]
    """Those read as a whole number."""


_DECLARED: dict[Any, _QueryNames] = {}
"""Route handler (by its function: a handler object may be a copy made for one request)
→ the query parameters it declares."""


def _query_names(handler: HTTPRouteHandler) -> _QueryNames:
    """The query names of ``handler``'s parameters, as Litestar names them (the parameter's
    ``name=``, else the argument's), and those of them declared as a list."""
    key = handler.fn
    if key not in _DECLARED:
        names: set[str] = set()
        lists: set[str] = set()
        numbers: set[str] = set()
        provided = _NOT_QUERY | handler.resolve_dependencies().keys()
        for name, field in handler.parsed_fn_signature.parameters.items():
            kwarg = field.kwarg_definition
            if name in provided:
                continue  # a dependency, or a value Litestar provides
            if isinstance(kwarg, ParameterKwarg):
                if kwarg.param_type is not ParamType.QUERY:
                    continue
                name = kwarg.name or name
            elif kwarg is not None:
                continue  # the body
            # A path parameter's name lands here too: harmless, the path gives its value.
            names.add(name)
            if field.is_non_string_sequence:  # list[str] | None too
                lists.add(name)
            if field.annotation is int or int in (t.annotation for t in field.inner_types):
                numbers.add(name)
        _DECLARED[key] = _QueryNames(frozenset(names), frozenset(lists), frozenset(numbers))
    return _DECLARED[key]


# Arguments Litestar fills itself rather than from the query (its reserved names).
_NOT_QUERY = frozenset(
    {"request", "socket", "state", "scope", "headers", "cookies", "query", "body", "data"}
)


def parse_instant(name: str, value: str | None) -> datetime | None:
    """An RFC 3339 query parameter; an offset is required so the instant is unambiguous."""
    if value is None or value == "":
        return None
    # A "+" of an offset arrives as a space when the client did not encode it.
    text = value[:19] + value[19:].replace(" ", "+")
    try:
        return wire.parse_instant(name, text)
    except wire.WireValueError as exc:
        raise InvalidRequestError(str(exc), status_code=400) from None


def parse_range(start: str | None, end: str | None) -> tuple[datetime | None, datetime | None]:
    """``from`` (inclusive) and ``to`` (exclusive)."""
    lower, upper = parse_instant("from", start), parse_instant("to", end)
    if lower is not None and upper is not None and lower > upper:
        raise InvalidRequestError("from must not be after to", status_code=400)
    return lower, upper


def page_size(limit: int | None) -> int:
    if limit is None:
        return DEFAULT_PAGE
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidRequestError(f"limit must be between 1 and {MAX_PAGE}", status_code=400)
    return limit


def encode_cursor(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")


# The largest row number (a bigint) a numbered cursor can name.
_MAX_NUMBER = 2**63 - 1


def _not_issued() -> InvalidRequestError:
    return InvalidRequestError("cursor is not one this API issued", status_code=400)


def decode_cursor(cursor: str | None) -> str:
    """The position a cursor names; the empty string is the start."""
    if not cursor:
        return ""
    try:
        # validate: urlsafe_b64decode drops characters outside the alphabet, so "!!!" read
        # as the start and a cursor with a character added as the one issued.
        padded = cursor + "=" * (-len(cursor) % 4)
        position = base64.b64decode(padded, altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise _not_issued() from None
    if "\x00" in position:
        raise _not_issued()  # no id holds a NUL (PostgreSQL text cannot)
    return position


def decode_number_cursor(cursor: str | None) -> int:
    """The position a cursor over numbered rows names (ledger entry ids); 0 is the start."""
    position = decode_cursor(cursor)
    if not position:
        return 0
    # ASCII digits only: str.isdigit() takes "²", which int() refuses, and "١", which no
    # answer writes; and few enough for int() (it refuses more than 4,300).
    digits = position.isascii() and position.isdigit() and len(position) <= len(str(_MAX_NUMBER))
    if not digits or int(position) > _MAX_NUMBER:
        raise _not_issued()
    return int(position)


def page(rows: Sequence[T], size: int, position: Callable[[T], str]) -> tuple[list[T], str | None]:
    """The first ``size`` of ``rows`` (fetched ``size + 1``, to know whether more follow) and
    the cursor of the next page, ``None`` on the last one."""
    items = list(rows[:size])
    more = len(rows) > size
    return items, encode_cursor(position(items[-1])) if more else None

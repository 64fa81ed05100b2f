"""The request class of LUC's app: Litestar's, with a JSON body that nests too deeply for
the decoder a client error like any other malformed body."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import Any, TypeVar

import msgspec
from litestar import Request
from litestar.exceptions import SerializationException, ValidationException

from service.auth.keys import ApiKey
from service.errors import ClientGoneError, InvalidRequestError
from service.ingest.repeats import REPEAT_REASON, distinct_names, may_repeat, path_text, repeated
from service.ingest.validate import body_not_json


class LucRequest(Request[Any, Any, Any]):
    async def json(self) -> Any:
        """The body decoded as JSON. msgspec decodes nesting by recursion and raises
        ``RecursionError`` (not its ``DecodeError``) past about a thousand levels: a body of
        a few KB got a 500 on every route that takes JSON. Litestar turns a
        ``SerializationException`` into a 400 ("body is not valid JSON: …")."""
        try:
            return await super().json()
        except RecursionError:
            raise SerializationException("it nests too deeply") from None


T = TypeVar("T")


async def _left(request: Request[Any, Any, Any]) -> None:
    try:
        while (await request.receive())["type"] != "http.disconnect":
            pass
    except Exception:  # a server that cannot tell: the client stays
        await asyncio.Event().wait()


async def unless_client_leaves(request: Request[Any, Any, Any], work: Awaitable[T]) -> T:
    """``work``'s result; cancelled, with ``ClientGoneError``, when the client disconnects
    first. For work that only answers (a dry run): a dry run of a re-rating reads the whole
    ledger since its instant under the re-pricing lock, which keeps catalog versions and
    applied runs waiting; its client gone (a CLI interrupted, a proxy's timeout), it ran on
    for as long as minutes. The request's body must have been read: the server's next
    message is then its disconnect."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_left(request))
    try:
        await asyncio.wait((task, watcher), return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
            # Its connection goes back to the pool once PostgreSQL has stopped the statement.
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if task.cancelled():
        raise ClientGoneError("the client disconnected; the work it asked for was dropped")
    return task.result()


def reservation_owner(request: Request[Any, Any, Any]) -> int | None:
    """Whose reservations a request may release or settle: the id of its key when that key
    is not an admin key (only the reservations it made), else None (any: an admin key, or
    authentication off). The guard set the key."""
    key = request.scope.get("luc_key")
    return key.id if isinstance(key, ApiKey) and key.scope != "admin" else None


OWN_BODY = "own_body"
"""A route's ``opt`` key: the route reads its body itself, without a ``data`` parameter
(ingest's events, the proxy's OpenAI request)."""

_NO_BODY_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

_BODY_TYPES: dict[Any, type | None] = {}
"""Route handler (by its function: a handler object may be a copy made for one request)
→ the type of its JSON body, when it takes one as ``data``."""


def _body_type(handler: Any) -> type | None:
    key = handler.fn
    if key not in _BODY_TYPES:
        data = handler.parsed_fn_signature.parameters.get("data")
        kind = None if data is None else data.annotation
        _BODY_TYPES[key] = (
            kind if isinstance(kind, type) and issubclass(kind, msgspec.Struct) else None
        )
    return _BODY_TYPES[key]


_ABSENT = object()


async def _decoded_body(request: Request[Any, Any, Any]) -> Any:
    """The request's body decoded as JSON; ``_ABSENT`` when it is empty (or only
    whitespace), the decoder's error when it does not decode (no JSON value is one)."""
    body = await request.body()
    if not body.strip():
        return _ABSENT
    try:
        return msgspec.json.decode(body)
    except (msgspec.DecodeError, RecursionError) as exc:
        return exc


async def strict_body(request: Request[Any, Any, Any]) -> None:
    """A JSON body of the type its route declares, decoded as strictly as an event is
    (SPEC §2: a wrong type is refused with a message naming the field). Litestar converts
    bodies leniently: ``"dry_run": "false"`` read as false, ``"true"`` or ``1`` as true,
    ``"parent": "1"`` as 1, ``1000.0`` as 1000; on a route that moves money a value of the
    wrong type is a mistake to refuse, not to guess, and so is a name given twice (the
    decoder keeps the last value). What is not JSON is refused as ingest refuses it
    (``body_not_json``: msgspec's "Input data was truncated" for a lone surrogate's
    escape said as such); what nests too deeply is left to ``LucRequest.json``."""
    handler = request.route_handler
    kind = _body_type(handler)
    if kind is None:
        await _no_body(request, handler)
        return
    value = await _decoded_body(request)
    body = await request.body()
    if isinstance(value, msgspec.DecodeError):
        raise body_not_json(body, value) from None
    if value is _ABSENT or isinstance(value, RecursionError):
        return  # Litestar says what is missing or too deep, as for any route
    if may_repeat(body, distinct_names(value)) and (paths := repeated(body)):
        raise ValidationException(
            f"Validation failed for {request.method} {request.url.path}",
            extra=[
                {
                    "message": f"given more than once; {REPEAT_REASON}",
                    "key": path_text(path),
                    "source": "body",
                }
                for path in paths
            ],
        )
    try:
        msgspec.convert(value, kind, strict=True)
    except msgspec.ValidationError as exc:
        message, _, where = str(exc).partition(" - at `$")
        key = where.removeprefix(".").removesuffix("`")
        error: dict[str, str] = {"message": message, "source": "body"}
        if key:
            error["key"] = key
        raise ValidationException(
            f"Validation failed for {request.method} {request.url.path}", extra=[error]
        ) from None
    if (path := nul_path(value)) is not None:
        # PostgreSQL text (and jsonb) cannot hold U+0000: found here, the refusal names the
        # field; found by the database, it could only say that some parameter held one.
        raise InvalidRequestError(
            f"{path_text(path) or 'the body'}: must not contain the NUL character (U+0000)"
        )


def nul_path(value: Any) -> tuple[str | int, ...] | None:
    """Where decoded JSON ``value`` first holds the NUL character, in a string or a name of
    an object; ``None`` when it holds none. (A loop, not a recursion: a body may nest as
    deep as the decoder allows, beyond Python's recursion limit.)"""
    stack: list[tuple[tuple[str | int, ...], Any]] = [((), value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return path
        elif isinstance(item, dict):
            for name in item:
                if "\x00" in name:
                    return (*path, name)
            stack.extend(((*path, name), member) for name, member in reversed(item.items()))
        elif isinstance(item, list):
            stack.extend(((*path, i), member) for i, member in reversed(list(enumerate(item))))
    return None


async def _no_body(request: Request[Any, Any, Any], handler: Any) -> None:
    """A route that takes no body refuses one (400) rather than ignore it: ``POST
    /v1/jobs/{id}/invoices`` sent ``{"dry_run": true}`` issued a numbered invoice, which no
    retry can take back. Nothing, ``{}`` and ``null`` are no body (clients send them)."""
    if (
        request.method in _NO_BODY_METHODS
        or handler.opt.get(OWN_BODY)
        or handler.fn.__module__.startswith("litestar.")
    ):
        return
    value = await _decoded_body(request)
    if value is _ABSENT or value is None or value == {}:
        return
    sent = (
        f"fields {', '.join(repr(k) for k in list(value)[:5])}"
        if isinstance(value, dict)
        else "a body"
    )
    raise InvalidRequestError(
        f"{request.method} {request.url.path} takes no body; {sent} sent would be ignored, "
        "so nothing was done: send it without one",
        status_code=400,
    )

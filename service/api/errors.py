"""One handler maps the error tree (and framework errors) to a consistent JSON body."""

from __future__ import annotations

from typing import Any

import asyncpg
import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException, SerializationException

from service.api.observe import request_id
from service.api.options_requests import allow_header
from service.api.schemas.common import ErrorBody
from service.db import UNAVAILABLE, caused_by, is_unavailable, missing_privilege
from service.errors import DatabaseUnavailableError, LucError

log = structlog.get_logger("luc.api")

RETRY_AFTER_SECONDS = "5"
TIMED_OUT = (
    "PostgreSQL did not finish in time (LUC_DB_STATEMENT_TIMEOUT_MS): what was under way "
    "was rolled back; retry after the Retry-After delay"
)
PRIVILEGE_MISSING = (
    "LUC's database role lacks a privilege it needs (the server log names it); "
    "retry after the Retry-After delay"
)


def _about(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """What a line about a failed request says of it: its method, path and id (the id its
    answer and its access line carry)."""
    return {
        "method": request.method,
        "path": request.url.path,
        "request_id": request_id(request.scope),
    }


def luc_error_handler(request: Request[Any, Any, Any], exc: LucError) -> Response[ErrorBody]:
    headers = (
        {"Retry-After": RETRY_AFTER_SECONDS} if isinstance(exc, DatabaseUnavailableError) else None
    )
    if exc.status_code >= 500:
        cause = exc.__cause__
        log.warning(
            "request_failed",
            error=type(exc).__name__,
            detail=exc.message,
            cause=None if cause is None else f"{type(cause).__name__}: {cause}",
            **_about(request),
        )
    return Response(
        ErrorBody(status_code=exc.status_code, detail=exc.message),
        status_code=exc.status_code,
        headers=headers,
    )


def http_error_handler(request: Request[Any, Any, Any], exc: HTTPException) -> Response[ErrorBody]:
    detail = exc.detail
    extra = getattr(exc, "extra", None)
    if extra == [{"message": "'data'", "key": "data", "source": "body"}]:
        # Litestar found no body to decode (its KeyError of the body parameter, "data:
        # 'data'"): say what is missing.
        extra = None
        detail = f"{detail}: body is empty: a JSON object is expected"
    elif isinstance(exc.__cause__, SerializationException):
        # msgspec's decode error alone ("Input data was truncated") does not say of what.
        detail = f"body is not valid JSON: {detail}"
    if isinstance(extra, list) and extra:
        # Litestar's parameter validation: name the parameter and the problem.
        parts = [
            f"{_wire_name(request, e['key'])}: {e.get('message', '')}"
            if e.get("key")
            else str(e.get("message", ""))
            for e in extra
            if isinstance(e, dict)
        ]
        if parts:
            detail = f"{detail}: {'; '.join(parts)}"
    headers = dict(exc.headers or {})
    if exc.status_code == 404 and detail == "Not Found":
        # The router's own 404: no route has this path. Say which, and where the routes are.
        detail = (
            f"no route {request.method} {request.url.path}: the OpenAPI document at /schema "
            "lists LUC's routes"
        )
    if exc.status_code == 405 and "allow" in headers:
        # The router's: the methods its route serves, said as OPTIONS says them.
        headers["allow"] = allow_header(headers["allow"].split(", "))
    if exc.status_code == 413:
        limit = request.app.state.luc.settings.ingest.max_body_bytes  # set: a route ran
        detail = f"request body is over the limit of {limit} bytes (LUC_MAX_BODY_BYTES)"
    if exc.status_code == 429 and "Retry-After" not in headers:
        # Litestar's limiter counts per second; the window is over within a second.
        headers["Retry-After"] = "1"
        if detail == "Too Many Requests":  # Litestar's own word: say whose limit it is
            detail = RATE_LIMITED_KEY
    return Response(
        ErrorBody(status_code=exc.status_code, detail=detail),
        status_code=exc.status_code,
        headers=headers,
    )


RATE_LIMITED_KEY = "request rate over the limit of this API key; retry after the Retry-After delay"
RATE_LIMITED_ADDRESS = (
    "request rate over the limit of this address (requests without a valid key count per "
    "address); retry after the Retry-After delay"
)


def _wire_name(request: Request[Any, Any, Any], key: str) -> str:
    """A parameter as the client names it: Litestar's message names the handler's argument
    (``from_version``), not the query parameter it reads (``from``)."""
    try:
        parameter = request.route_handler.parsed_fn_signature.parameters.get(key)
    except Exception:  # no route matched: nothing to map
        return key
    name = getattr(getattr(parameter, "kwarg_definition", None), "name", None)
    return name if isinstance(name, str) and name else key


def unexpected_error_handler(
    request: Request[Any, Any, Any], exc: Exception
) -> Response[ErrorBody]:
    if _is_unstorable_parameter(exc):
        log.warning(
            "unstorable_parameter",
            error=type(exc).__name__,
            detail=str(exc)[:200],
            **_about(request),
        )
        detail = (
            "a parameter cannot be used: a number beyond 64 bits, or text holding the NUL "
            "character (U+0000)"
        )
        return Response(ErrorBody(status_code=400, detail=detail), status_code=400)
    if is_unavailable(exc):
        # A database outage that reached here untranslated (every path through service.db
        # translates it): still the client's cue to retry, never a 500.
        log.warning("database_unavailable", error=f"{type(exc).__name__}: {exc}", **_about(request))
        return _unavailable(UNAVAILABLE)
    if _is_timed_out(exc):
        # PostgreSQL cancelled the statement (LUC_DB_STATEMENT_TIMEOUT_MS, or a lock it
        # waited on): its transaction rolled back, and the same request can succeed later.
        # As for an outage, the client's cue to retry; a 500 would tell it nothing.
        log.warning("database_timeout", error=f"{type(exc).__name__}", **_about(request))
        return _unavailable(TIMED_OUT)
    if isinstance(exc, asyncpg.InsufficientPrivilegeError):
        # The service's role lacks a grant (start-up checks them, but an operator can
        # revoke one later): the operator's to fix, and the client's to retry, as for an
        # outage; never a 500 that a gateway would take for a bad request.
        privilege = missing_privilege(str(exc))
        log.error(
            "database_privilege_missing",
            privilege=privilege,
            error=f"{type(exc).__name__}: {exc}",
            **_about(request),
        )
        return _unavailable(PRIVILEGE_MISSING)
    log.exception("unhandled_error", error=type(exc).__name__, **_about(request))
    return Response(ErrorBody(status_code=500, detail="internal error"), status_code=500)


def _is_timed_out(exc: BaseException) -> bool:
    """A statement cancelled by its timeout (SQLSTATE 57014) or a lock wait given up
    (55P03), or what caused ``exc`` was one."""
    return caused_by(exc, (asyncpg.QueryCanceledError, asyncpg.LockNotAvailableError))


def _unavailable(detail: str) -> Response[ErrorBody]:
    return Response(
        ErrorBody(status_code=503, detail=detail),
        status_code=503,
        headers={"Retry-After": RETRY_AFTER_SECONDS},
    )


def _is_unstorable_parameter(exc: Exception) -> bool:
    """A path or query value PostgreSQL cannot take: the client's error, not ours."""
    # Text holding U+0000 (SQLSTATE 22021), refused by the server.
    if isinstance(exc, asyncpg.CharacterNotInRepertoireError):
        return True
    # asyncpg refuses to encode an argument (an integer beyond int64) before sending it.
    return isinstance(exc, asyncpg.DataError) and str(exc).startswith(
        "invalid input for query argument"
    )

"""One handler maps the error tree (and framework errors) to a consistent JSON body."""

from __future__ import annotations

from typing import Any

import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException

from service.api.schemas import ErrorBody
from service.errors import DatabaseUnavailableError, LucError

log = structlog.get_logger("luc.api")

RETRY_AFTER_SECONDS = "5"


def luc_error_handler(request: Request[Any, Any, Any], exc: LucError) -> Response[ErrorBody]:
    headers = (
        {"Retry-After": RETRY_AFTER_SECONDS} if isinstance(exc, DatabaseUnavailableError) else None
    )
    if exc.status_code >= 500:
        log.warning("request_failed", error=type(exc).__name__, detail=exc.message)
    return Response(
        ErrorBody(status_code=exc.status_code, detail=exc.message),
        status_code=exc.status_code,
        headers=headers,
    )


def http_error_handler(request: Request[Any, Any, Any], exc: HTTPException) -> Response[ErrorBody]:
    detail = exc.detail
    extra = getattr(exc, "extra", None)
    if isinstance(extra, list) and extra:
        # Litestar's parameter validation: name the parameter and the problem.
        parts = [
            f"{e.get('key', '?')}: {e.get('message', '')}" for e in extra if isinstance(e, dict)
        ]
        if parts:
            detail = f"{detail}: {'; '.join(parts)}"
    headers = dict(exc.headers or {})
    if exc.status_code == 429 and "Retry-After" not in headers:
        # Litestar's limiter counts per second; the window is over within a second.
        headers["Retry-After"] = "1"
        detail = "request rate over the limit of this API key; retry after the Retry-After delay"
    return Response(
        ErrorBody(status_code=exc.status_code, detail=detail),
        status_code=exc.status_code,
        headers=headers,
    )


def unexpected_error_handler(
    request: Request[Any, Any, Any], exc: Exception
) -> Response[ErrorBody]:
    log.exception("unhandled_error", error=type(exc).__name__)
    return Response(ErrorBody(status_code=500, detail="internal error"), status_code=500)

"""One ASGI middleware observing every routed request: a structured log line (method,
route, status, duration, request id) and the request-duration histogram, from one
measurement; and how many requests the process is answering now (``InFlight``).

Every request has an id: the client's ``X-Request-ID`` when it sends a usable one (a
gateway or load balancer tracing its calls), else one made here. It is sent back in the
answer's ``X-Request-ID`` and written in the access line and in every line the error
handlers write about the request, so that a 503's cause is found from the client's id.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import structlog
from litestar.enums import ScopeType
from litestar.exceptions import HTTPException
from litestar.types import ASGIApp, Message, Receive, ReceiveMessage, Scope, Send

from service.api.head_requests import HEAD
from service.metrics.instruments import Metrics

access_log = structlog.get_logger("luc.access")


class InFlight:
    """HTTP requests this process is answering now, streams to their last byte."""

    def __init__(self) -> None:
        self.count = 0


NOT_STARTED = 0
"""The status of a request no answer has started for yet."""

CLIENT_CLOSED = 499
"""The status counted for a request whose client went away before its answer started
(nginx's "client closed request"): a body cut mid-upload made the framework answer 500 to
no one, counted as a server error, and ``LucIngestErrors`` paged for a client's timeout."""


OBSERVED = "luc_observed"
"""Scope key: a one-item list the routed requests' observer sets (``observe_unrouted``)."""

_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"))

REQUEST_ID = "luc_request_id"
"""Scope key: the request's id (``observe_unrouted`` sets it before any route runs)."""
_REQUEST_ID_HEADER = b"x-request-id"
# An id a client sends is taken when it is a token a log line can hold as it is.
_USABLE_ID = re.compile(r"[A-Za-z0-9._:/+=@-]{1,128}")


def request_id(scope: Any) -> str | None:
    """The id of the request of ``scope`` (None outside an HTTP request)."""
    found = scope.get(REQUEST_ID)
    return found if isinstance(found, str) else None


def _request_id_of(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == _REQUEST_ID_HEADER:
            text = value.decode("latin-1")
            if _USABLE_ID.fullmatch(text):
                return text
            break
    return uuid.uuid4().hex


def _access_line(
    metrics: Metrics, scope: Scope, route: str, method: str, status: int, seconds: float
) -> None:
    metrics.http_seconds.labels(route, method, str(status)).observe(seconds)
    access_log.info(
        "request",
        method=method,
        route=route,
        path=scope.get("path"),
        status=status,
        duration_ms=round(seconds * 1000, 2),
        request_id=request_id(scope),
    )


def observe_unrouted(app: ASGIApp, metrics: Metrics) -> ASGIApp:
    """``app`` (Litestar's handler) with the requests no route took observed too: a 404 for
    a path no route has, a 405 for a method the route lacks. Litestar answers those before
    any middleware runs, so they left no access line and no series: a gateway posting to a
    mistyped path was invisible. Routed requests are ``observe_requests``'s, which marks
    them in the list this puts in the scope (scopes are copied on the way in; the list is
    shared)."""

    async def observing(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        started = time.perf_counter()
        seen = [False]
        status = NOT_STARTED
        rid = _request_id_of(scope)
        echoed = (_REQUEST_ID_HEADER, rid.encode())

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), echoed]
            await send(message)

        scope[OBSERVED] = seen  # type: ignore[literal-required]
        scope[REQUEST_ID] = rid  # type: ignore[literal-required]
        try:
            await app(scope, receive, send_wrapper)
        finally:
            if not seen[0]:
                method = scope.get("method", "")
                _access_line(
                    metrics,
                    scope,
                    "unmatched",
                    method if method in _METHODS else "other",  # a bounded label
                    status or 500,
                    time.perf_counter() - started,
                )

    return observing


def observe_requests(metrics: Metrics, in_flight: InFlight | None = None) -> type:
    """A middleware class (Litestar instantiates it with the next app) bound to ``metrics``
    (and counting requests in ``in_flight``)."""
    counter = in_flight or InFlight()

    class ObserveRequests:
        def __init__(self, app: ASGIApp) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != ScopeType.HTTP:
                await self.app(scope, receive, send)
                return
            started = time.perf_counter()
            status = NOT_STARTED
            gone = False  # the client left before an answer started
            counter.count += 1
            if (seen := scope.get(OBSERVED)) is not None:
                seen[0] = True  # type: ignore[index]  # observed here, not by observe_unrouted

            async def send_wrapper(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = CLIENT_CLOSED if gone else message["status"]
                await send(message)

            async def receive_wrapper() -> ReceiveMessage:
                nonlocal gone
                message = await receive()
                if message["type"] == "http.disconnect" and status == NOT_STARTED:
                    gone = True
                return message

            try:
                await self.app(scope, receive_wrapper, send_wrapper)
            except HTTPException as exc:
                # Raised past this middleware (the rate limit's 429 is raised inside it);
                # Litestar's handler outside answers with its status, which is the one to
                # count: counted as 500, a client over its rate paged as an ingest failure.
                if status == NOT_STARTED:
                    status = exc.status_code
                raise
            finally:
                counter.count -= 1
                seconds = time.perf_counter() - started
                if status == NOT_STARTED:
                    # an error no handler turned into an answer, unless no one was left
                    status = CLIENT_CLOSED if gone else 500
                # The route template, never the raw path: label values stay bounded.
                route = scope.get("path_template") or "unmatched"
                method = "HEAD" if scope.get(HEAD) else scope.get("method", "")
                _access_line(metrics, scope, route, method, status, seconds)

    return ObserveRequests

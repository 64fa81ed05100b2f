"""HEAD answered as GET without its body (RFC 9110 §9.3.2: a server answers HEAD as it
would GET, headers and all), on every route that answers GET: load balancers and
``curl -I`` probe so, and Litestar declares HEAD only on routes that name it."""

from __future__ import annotations

from typing import cast

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send

HEAD = "luc_head"
"""Scope key: the request came as HEAD (its metrics and access line say so)."""


def answer_head_as_get(app: ASGIApp) -> ASGIApp:
    """``app`` (Litestar's handler, which routes) with a HEAD request routed as GET. The
    app sees a copy of the scope saying GET; the server's own scope still says HEAD, so it
    sends the headers (Content-Length included) and drops the body, as it does for HEAD."""

    async def routing(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP and scope["method"] == "HEAD":
            as_get = {**scope, "method": "GET", HEAD: True}
            scope = cast("Scope", as_get)
        await app(scope, receive, send)

    return routing

"""HEAD answered as GET without its body (RFC 9110 §9.3.2: a server answers HEAD as it
would GET, headers and all), on every route that answers GET: load balancers and
``curl -I`` probe so, and Litestar declares HEAD only on routes that name it."""

from __future__ import annotations

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send


def answer_head_as_get(app: ASGIApp) -> ASGIApp:
    """``app`` (Litestar's handler, which routes) with a HEAD request routed as GET. The
    app sees a copy of the scope saying GET; the server's own scope still says HEAD, so it
    sends the headers (Content-Length included) and drops the body, as it does for HEAD."""

    async def routing(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP and scope["method"] == "HEAD":
            scope = {**scope, "method": "GET"}
        await app(scope, receive, send)

    return routing

"""Ids with a ``/`` in a URL path: ``GET /v1/jobs/team%2Fa`` reads the job ``team/a``.

SPEC §2 lets a ``job_id``, an ``agent`` or a ``customer_id`` hold any character, and a
client writes one into a path percent-encoded (``urllib.parse.quote(id, safe="")``). The
ASGI server decodes ``scope["path"]`` before Litestar routes on it, so ``%2F`` became a
segment separator and the route was not found. Two steps keep an encoded slash inside its
segment:

- ``route_encoded_ids`` (before routing, around ``Litestar.asgi_handler``) routes on the
  path rebuilt from ``raw_path``: every segment decoded as the server decodes it, except
  that ``%`` and ``/`` stay escaped (``%25``, ``%2F``), so no segment holds a ``/``;
- ``DecodePathParams`` (a middleware: after routing, before the handler reads its
  parameters) undoes those two escapes in the path parameters.

Nothing else changes: every other escape (a space, ``+``, ``?``, ``#``, non-ASCII) is
decoded as before, and the OpenAPI document still names each id a string.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote_to_bytes

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send

ESCAPED = "luc.escaped_path"
"""The scope key set when the routed path keeps ``%25`` and ``%2F`` escaped."""

_ESCAPE = re.compile("%(2F|25)")


def routed_path(raw_path: bytes) -> str:
    """``raw_path`` decoded segment by segment, ``%`` and ``/`` inside a segment kept as
    ``%25`` and ``%2F``."""
    return "/".join(
        unquote_to_bytes(segment).decode("utf-8", "replace").replace("%", "%25").replace("/", "%2F")
        for segment in raw_path.split(b"/")
    )


def unescape(value: str) -> str:
    """A path parameter of a routed path as the client meant it."""
    return _ESCAPE.sub(lambda m: "/" if m.group(1) == "2F" else "%", value)


def route_encoded_ids(app: ASGIApp) -> ASGIApp:
    """``app`` (Litestar's handler, which routes) routing on ``routed_path``."""

    async def routing(scope: Scope, receive: Receive, send: Send) -> None:
        # raw_path may be absent or None (ASGI); the query string is not part of the path
        # (Litestar's test client puts it there).
        raw = (scope.get("raw_path") or b"") if scope["type"] == ScopeType.HTTP else b""
        raw = raw.partition(b"?")[0]
        # Under a root_path the server adds to the path (none in LUC), route as it said.
        if b"%" in raw and not scope.get("root_path"):
            scope["path"] = routed_path(raw)
            scope[ESCAPED] = True  # type: ignore[literal-required]
        await app(scope, receive, send)

    return routing


class DecodePathParams:
    """After routing: the path parameters of a routed path without its two escapes."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get(ESCAPED):
            # A new dict: Litestar caches the one routing made, for the next request.
            params: dict[str, Any] = scope["path_params"]
            scope["path_params"] = {
                name: unescape(value) if isinstance(value, str) else value
                for name, value in params.items()
            }
        await self.app(scope, receive, send)

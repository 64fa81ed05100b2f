"""OPTIONS answered with every method its route serves, and a 405 naming the same ones.

Litestar makes a path's OPTIONS answer when the path's first handler is registered, and
keeps it, with that handler's methods alone, when more handlers join the path: OPTIONS
/v1/budgets/1 said ``GET, OPTIONS`` while DELETE and PATCH are served there too (a 405 on
the same path named them). The routes the app ends up with hold every method: read once
at start."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from litestar import Litestar, Request, Response
from litestar.routes import HTTPRoute
from litestar.status_codes import HTTP_204_NO_CONTENT

ALLOW = "luc_allow"
"""App state key: each route's path template → its Allow header (``allow_by_route``)."""


def allow_header(methods: Iterable[str]) -> str:
    """What Allow says for a route serving ``methods``: HEAD too where GET is, since HEAD
    is answered as GET there (``api.head_requests``)."""
    allowed = set(methods)
    if "GET" in allowed:
        allowed.add("HEAD")
    return ", ".join(sorted(allowed))


def allow_by_route(app: Litestar) -> dict[str, str]:
    """Each HTTP route of ``app`` by its path template (as routing writes it in the scope)
    → its Allow header."""
    return {
        route.path_format: allow_header(route.methods)
        for route in app.routes
        if isinstance(route, HTTPRoute)
    }


def options_answer(request: Request[Any, Any, Any]) -> Response[None]:
    """The answer to OPTIONS: the methods of the request's route, no body."""
    allow = request.app.state[ALLOW][request.scope["path_template"]]
    return Response(None, status_code=HTTP_204_NO_CONTENT, headers={"Allow": allow})

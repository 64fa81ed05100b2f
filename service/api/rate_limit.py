"""The per-key rate limit on every route but the probes (``LUC_RATE_LIMIT_PER_SECOND``),
counted across processes by ``auth.rate_limit.RateLimiter``.

A request within its key's second goes on with ``RateLimit-*`` headers (limit, what
remains of the second, its reset); one past it is refused with 429 and ``Retry-After``.
The count opens with each wall-clock second of PostgreSQL's clock.
"""

from __future__ import annotations

from litestar.connection import ASGIConnection
from litestar.datastructures import MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.exceptions import TooManyRequestsException
from litestar.middleware import AbstractMiddleware
from litestar.types import Message, Receive, Scope, Send

from service.api.deps import started
from service.api.errors import RATE_LIMITED_ADDRESS, RATE_LIMITED_KEY
from service.auth.guard import rate_limit_identity

# Litestar reads these as regular expressions searched anywhere in the path: unanchored,
# /v1/jobs/healthz (a job of that id) and every path holding "readyz" went unlimited.
EXCLUDED = ["^/healthz$", "^/readyz$"]


def _headers(limit: int, remaining: int) -> dict[str, str]:
    return {
        "RateLimit-Policy": f"{limit}; w=1",
        "RateLimit-Limit": str(limit),
        "RateLimit-Remaining": str(remaining),
        "RateLimit-Reset": "1",  # the count opens again with the next second
    }


class RateLimitMiddleware(AbstractMiddleware):
    scopes = {ScopeType.HTTP}
    exclude = EXCLUDED

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        luc = started(scope["litestar_app"].state)
        limiter = None if luc is None else luc.rate_limiter
        if limiter is None:  # starting (every route answers 503), or no limit set
            await self.app(scope, receive, send)
            return
        identity = await rate_limit_identity(ASGIConnection(scope, receive, send), luc)
        number = await limiter.hit(identity)
        if number is None:  # not counted (PostgreSQL away): not limited either
            await self.app(scope, receive, send)
            return
        if number > limiter.limit:
            # Retry-After and the message come with every 429 (``api.errors``).
            raise TooManyRequestsException(
                RATE_LIMITED_KEY if identity.startswith("key:") else RATE_LIMITED_ADDRESS,
                headers=_headers(limiter.limit, 0),
            )
        headers = _headers(limiter.limit, limiter.limit - number)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                response_headers = MutableScopeHeaders(message)
                for name, value in headers.items():
                    response_headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)

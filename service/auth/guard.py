"""The one check every route passes: a valid, unrevoked key whose scope the route allows.

Routes declare what they need in ``opt={"scope": ...}`` (see ``READ``, ``INGEST``,
``ADMIN``, ``PUBLIC``); a route that declares nothing needs ``admin``, so a forgotten
declaration fails closed. An admin key may do everything.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler

from service.auth.keys import ApiKey, find_key
from service.db import CONNECTION_ERRORS, PROBE_WAIT_SECONDS, STARTING, UNAVAILABLE, pooled
from service.errors import DatabaseUnavailableError

PUBLIC: dict[str, Any] = {"scope": ()}
READ: dict[str, Any] = {"scope": ("read",)}
INGEST: dict[str, Any] = {"scope": ("ingest",)}
ADMIN: dict[str, Any] = {"scope": ("admin",)}
INGEST_OR_READ: dict[str, Any] = {"scope": ("ingest", "read")}

# A revoked key stops working within this many seconds on every process (at once on
# routes only an admin key may use: ``require_key``).
KEY_CACHE_SECONDS = 2.0
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="luc"'}


def bearer_token(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    header = connection.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


async def rate_limit_identity(connection: ASGIConnection[Any, Any, Any, Any], luc: Any) -> str:
    """Who a request counts against: its key when that is a live key, else its address.

    A token that is no key (made up, or revoked) is no identity of its own: each new one
    would open a fresh allowance, and a client sending a new token per request would never
    meet the limit (nor would its flood of key lookups). With authentication off, tokens
    mean nothing to LUC but still tell callers apart (hashed; never the token itself).
    """
    token = bearer_token(connection)
    if token and not luc.settings.auth.enabled:
        return "key:" + hashlib.sha256(token.encode()).hexdigest()[:24]
    if token:
        # PostgreSQL unavailable: the 503 the guard would answer, now, not after its own
        # look-up of the same key waited as long again; unless this process has read the
        # key before (who is counted needs no fresh word: the guard decides what it may do).
        key = await _known_key(luc, token, connection.scope, last_known=True)
        if key is not None and key.revoked_at is None:
            return f"key:{key.id}"
    client = connection.client
    return "addr:" + (client.host if client else "unknown")


# Set on a request's scope when a key's look-up found PostgreSQL away: the guard's look-up
# of the same key, after the rate limit's, goes straight to what it does then instead of
# waiting as long again.
_DATABASE_AWAY = "luc_database_away"


def found_database_away(scope: Any) -> bool:
    """Whether a key's look-up for this request found PostgreSQL away."""
    return bool(scope.get(_DATABASE_AWAY))


def _scrape(scope: Any) -> bool:
    handler = scope.get("route_handler")
    return handler is not None and bool(handler.opt.get("metrics"))


async def _known_key(
    luc: Any, token: str, scope: Any, *, fresh: bool = False, last_known: bool = False
) -> ApiKey | None:
    """The key ``token`` is (revoked or not), ``None`` for no key: from the cache, else
    (or when ``fresh``) looked up and cached. With ``last_known``, PostgreSQL unavailable
    answers what the cache last knew of the token, however old, where there is something.

    A scrape's look-up waits at most ``PROBE_WAIT_SECONDS`` for each step: its answer
    without PostgreSQL (``luc_database_up 0``) must reach Prometheus before its scrape
    timeout, and ``LUC_DB_COMMAND_TIMEOUT_SECONDS`` (35 s by default) outlasts it."""
    key_cache: KeyCache = luc.key_cache
    cached, key = (False, None) if fresh else key_cache.get(token)
    if cached:
        return key
    cause: BaseException | None = None
    if not found_database_away(scope):
        wait = PROBE_WAIT_SECONDS if _scrape(scope) else None
        try:
            async with pooled(luc.pool, wait) as conn:
                key = await find_key(conn, token, wait)
        except CONNECTION_ERRORS as exc:
            scope[_DATABASE_AWAY] = True
            cause = exc
        else:
            key_cache.put(token, key)
            return key
    known, key = key_cache.last_known(token) if last_known else (False, None)
    if not known:
        raise DatabaseUnavailableError(UNAVAILABLE) from cause
    return key


def required_scopes(handler: BaseRouteHandler) -> tuple[str, ...]:
    """The scopes a route accepts; ``()`` is public; undeclared means admin only."""
    scopes = handler.opt.get("scope")
    return ("admin",) if scopes is None else tuple(scopes)


class KeyCache:
    """Keys looked up recently, so a busy gateway does not cost a query per request."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[float, ApiKey | None]] = {}

    def get(self, token: str) -> tuple[bool, ApiKey | None]:
        entry = self._entries.get(token)
        if entry is None or time.monotonic() - entry[0] > KEY_CACHE_SECONDS:
            return False, None
        return True, entry[1]

    def last_known(self, token: str) -> tuple[bool, ApiKey | None]:
        """What was last read of ``token``, however long ago: (False, None) when nothing."""
        entry = self._entries.get(token)
        return (False, None) if entry is None else (True, entry[1])

    def forget(self, key_id: int) -> None:
        """Drop key ``key_id`` (revoked here): this process refuses it from the next
        request on, instead of after ``KEY_CACHE_SECONDS``."""
        stale = [t for t, (_, key) in self._entries.items() if key is not None and key.id == key_id]
        for token in stale:
            del self._entries[token]

    def put(self, token: str, key: ApiKey | None) -> None:
        if len(self._entries) > 10_000:
            self._entries.clear()
        self._entries[token] = (time.monotonic(), key)


async def require_key(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    if connection.scope.get("method") == "OPTIONS":
        return  # the answer to OPTIONS: the route's Allow header, nothing of its data
    openapi_path = connection.app.openapi_config.path if connection.app.openapi_config else None
    scopes = required_scopes(handler)
    if scopes == () or (openapi_path and connection.scope["path"].startswith(openapi_path)):
        return
    luc = connection.app.state.get("luc")
    if luc is None:  # start-up is waiting for PostgreSQL (keys live there)
        raise DatabaseUnavailableError(STARTING)
    if not luc.settings.auth.enabled:
        return
    if handler.opt.get("metrics") and luc.settings.auth.metrics_public:
        return
    if len(connection.headers.getall("authorization", ())) > 1:
        # Which key acts is not LUC's to pick: the first one won, silently.
        raise NotAuthorizedException(
            "Authorization sent more than once: send one key", headers=_CHALLENGE
        )
    token = bearer_token(connection)
    if token is None:
        raise NotAuthorizedException(
            "missing API key: send Authorization: Bearer <key>", headers=_CHALLENGE
        )
    # An admin-only route (keys, plans, customers, credits, budgets, issuing invoices,
    # catalog changes) reads the key afresh: another process may have revoked it within
    # KEY_CACHE_SECONDS, and a revoked admin key must not mint its successor meanwhile.
    # These routes are not a hot path.
    #
    # A scrape of /metrics while PostgreSQL is down is checked against what this process
    # last read of its key: the key's look-up needs PostgreSQL, and its 503 hid
    # `luc_database_up 0` from Prometheus, so `LucDatabaseDown` never fired for a scraper
    # with a key (and every process series went dark when they matter most).
    key = await _known_key(
        luc,
        token,
        connection.scope,
        fresh=scopes == ADMIN["scope"],
        last_known=bool(handler.opt.get("metrics")),
    )
    if key is None:
        raise NotAuthorizedException("invalid API key", headers=_CHALLENGE)
    if key.revoked_at is not None:
        raise NotAuthorizedException("this API key was revoked", headers=_CHALLENGE)
    if key.scope != "admin" and key.scope not in scopes:
        needed = " or ".join(dict.fromkeys((*scopes, "admin")))
        raise PermissionDeniedException(
            f"this route needs a key of scope {needed}; this key's scope is {key.scope!r}"
        )
    connection.scope["luc_key"] = key  # type: ignore[typeddict-unknown-key]  # for handlers

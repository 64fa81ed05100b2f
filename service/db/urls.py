"""The database URL: as asyncpg reads it (TLS parameters included), and as logs show it."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from service.errors import DatabaseSetupError

# ``ssl=…`` as other drivers and providers' examples spell it, read as libpq's ``sslmode``.
_SSL_ALIASES = {"true": "require", "1": "require", "on": "require", "false": "disable"}
_SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


def dsn(url: str) -> str:
    """``url`` as asyncpg reads it, the same on every path (pool, migrations, tools).

    asyncpg understands libpq's TLS parameters (``sslmode``, ``sslrootcert``, ``sslcert``,
    ``sslkey``, ``sslcrl``) in the URL, but takes any other query parameter for a server
    setting: ``?ssl=require`` failed with "parameter "ssl" cannot be changed now". It is
    read as ``sslmode`` here. A SQLAlchemy-style scheme (``postgresql+asyncpg``) is accepted.
    """
    parts = urlsplit(url)
    scheme = "postgresql" if parts.scheme.startswith("postgresql+") else parts.scheme
    query = parse_qsl(parts.query, keep_blank_values=True)
    names = {name for name, _ in query}
    normalised: list[tuple[str, str]] = []
    for name, value in query:
        if name == "ssl":
            mode = _SSL_ALIASES.get(value.lower(), value.lower())
            if mode not in _SSL_MODES:
                raise DatabaseSetupError(
                    f"LUC_DATABASE_URL: ssl={value!r} is not a TLS mode; use sslmode= one of "
                    f"{', '.join(_SSL_MODES)}"
                )
            if "sslmode" not in names:
                normalised.append(("sslmode", mode))
            continue
        normalised.append((name, value))
    return urlunsplit(parts._replace(scheme=scheme, query=urlencode(normalised)))


def describe_url(url: str) -> str:
    """``url`` without its password, for logs and messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def with_database(url: str, database: str) -> str:
    """``url`` pointed at another database on the same server."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))

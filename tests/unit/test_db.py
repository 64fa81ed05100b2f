"""What counts as "PostgreSQL is away": the errors a stopping server causes, also when
another exception carries them (a cause, a context, an exception group)."""

from __future__ import annotations

import asyncpg

from service.db import is_unavailable


def test_the_errors_of_a_stopping_server_are_outages() -> None:
    for exc in (
        ConnectionRefusedError(111, "refused"),
        ConnectionResetError(104, "reset"),
        TimeoutError(),
        asyncpg.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.CannotConnectNowError("the database system is shutting down"),
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg.InterfaceError("connection is closed"),
        asyncpg.InternalClientError("cannot switch to state 15; another operation is in progress"),
        asyncpg.TooManyConnectionsError("sorry, too many clients already"),
    ):
        assert is_unavailable(exc), exc


def test_a_bad_statement_or_a_bug_is_no_outage() -> None:
    for exc in (
        asyncpg.UniqueViolationError("duplicate key"),
        asyncpg.QueryCanceledError("canceling statement due to statement timeout"),
        asyncpg.DataError("invalid input"),
        ValueError("bug"),
    ):
        assert not is_unavailable(exc), exc


def test_an_outage_is_found_behind_a_cause_a_context_or_a_group() -> None:
    try:
        try:
            raise asyncpg.AdminShutdownError("terminating connection")
        except asyncpg.AdminShutdownError:
            raise RuntimeError("while recording") from None  # context kept, cause suppressed
    except RuntimeError as exc:
        wrapped = exc
    assert is_unavailable(wrapped)
    caused = RuntimeError("wrapper")
    caused.__cause__ = asyncpg.InterfaceError("connection is closed")
    assert is_unavailable(caused)
    assert is_unavailable(ExceptionGroup("writers", [ValueError("x"), caused]))
    assert not is_unavailable(ExceptionGroup("writers", [ValueError("x")]))

"""The database URL as operators write it, and PostgreSQL's refusals in GRANT terms."""

from __future__ import annotations

import pytest

from service.db import missing_privilege
from service.db.urls import describe_url, dsn
from service.errors import DatabaseSetupError


def test_tls_parameters_are_kept_and_ssl_is_read_as_sslmode() -> None:
    base = "postgresql://u:p%40ss@db.example:5432/luc"
    kept = f"{base}?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem"
    assert dsn(kept) == kept
    assert dsn(f"{base}?ssl=require") == f"{base}?sslmode=require"
    assert (
        dsn(f"{base}?ssl=true&application_name=x") == f"{base}?sslmode=require&application_name=x"
    )
    assert dsn(f"{base}?ssl=verify-ca") == f"{base}?sslmode=verify-ca"
    # An explicit sslmode wins over the alias.
    assert dsn(f"{base}?ssl=require&sslmode=disable") == f"{base}?sslmode=disable"
    assert dsn("postgresql+asyncpg://u@h/luc") == "postgresql://u@h/luc"
    with pytest.raises(DatabaseSetupError, match="ssl='maybe' is not a TLS mode"):
        dsn(f"{base}?ssl=maybe")


def test_the_password_is_hidden() -> None:
    assert describe_url("postgresql://luc:s3cret@h:5432/luc") == "postgresql://luc:***@h:5432/luc"
    assert describe_url("postgresql://luc@h/luc") == "postgresql://luc@h/luc"


@pytest.mark.parametrize(
    ("message", "privilege"),
    [
        ("permission denied for schema public", "CREATE on schema public"),
        (
            'permission denied to create temporary tables in database "luc"',
            'TEMPORARY on database "luc"',
        ),
        ("must be owner of table ledger_entries", "ownership of ledger_entries"),
        ("permission denied for table usage_events", "privileges on table usage_events"),
        (
            "permission denied for sequence api_keys_id_seq",
            "privileges on sequence api_keys_id_seq",
        ),
        ("division by zero", None),
    ],
)
def test_a_refusal_names_its_privilege(message: str, privilege: str | None) -> None:
    assert missing_privilege(message) == privilege

"""How a command names its database: the URL as given, never its password."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.cli.database import describe, hide_password
from service.settings import DatabaseSettings


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "postgresql://luc:s3cret@db.internal:5432/luc?sslmode=require",
            "postgresql://luc:***@db.internal:5432/luc?sslmode=require",
        ),
        ("postgresql://luc@db.internal/luc", "postgresql://luc@db.internal/luc"),
        ("postgresql://postgres:@/luc?host=/run/pg", "postgresql://postgres:@/luc?host=/run/pg"),
        (
            "postgresql://db.internal/luc?user=luc&password=s3cret&sslmode=verify-full",
            "postgresql://db.internal/luc?user=luc&password=***&sslmode=verify-full",
        ),
        ("postgresql://a:p%40ss:w@h/luc", "postgresql://a:***@h/luc"),
    ],
)
def test_a_database_url_is_shown_without_its_password(url: str, shown: str) -> None:
    assert hide_password(url) == shown


def test_the_embedded_database_is_named_by_its_folder_and_socket() -> None:
    settings = DatabaseSettings(url=None, data_dir=Path("/srv/luc"))
    assert describe(settings) == "embedded at /srv/luc"
    url = "postgresql://postgres:@/luc?host=/srv/luc/pgdata"
    assert describe(settings, url) == "embedded at /srv/luc (socket /srv/luc/pgdata)"

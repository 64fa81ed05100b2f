"""Files kept at the top of the repository that LUC reads at run time.

In a checkout (and an editable install) they are beside the package: ``db/`` (the Alembic
migrations) and ``deploy/`` (the Grafana role). A wheel ships them inside the package, as
``service/migrations`` and ``service/deploy`` (``setup.py``), because nothing beside
``site-packages/service`` belongs to LUC there.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent


def _shipped(inside: str, beside: str) -> Path:
    # The copy inside the package first: beside an installed package lies site-packages,
    # where a folder named db/ may be another distribution's.
    packaged = PACKAGE / inside
    return packaged if packaged.exists() else PACKAGE.parent / beside


def migrations_dir() -> Path:
    """The Alembic script directory: ``env.py``, ``script.py.mako`` and ``versions/``."""
    return _shipped("migrations", "db")


def grafana_role_sql() -> Path:
    """The psql script that creates Grafana's read-only role (``luc grafana role``)."""
    return _shipped("deploy/grafana-role.sql", "deploy/grafana-role.sql")

"""What LUC's runtime role must hold to serve, checked at start-up: grants an operator can
run when something is missing (README, "Operating LUC")."""

from __future__ import annotations

from service.db import Connection
from service.errors import DatabaseSetupError

# What LUC's runtime role needs on every table and sequence of its schema (README,
# "Operating LUC"). TRUNCATE is never needed, and the ledger's triggers refuse UPDATE and
# DELETE whatever the grants.
TABLE_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE")
SEQUENCE_PRIVILEGES = ("USAGE", "SELECT")

_MISSING_GRANTS = """
SELECT c.relname, c.relkind, p.privilege
FROM pg_class c
CROSS JOIN unnest($1::text[]) AS p(privilege)
WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema())
  AND (c.relkind IN ('r', 'p') AND NOT c.relispartition AND p.privilege = ANY($2::text[])
       AND NOT has_table_privilege(c.oid, p.privilege)
    OR c.relkind = 'S' AND p.privilege = ANY($3::text[])
       AND NOT has_sequence_privilege(c.oid, p.privilege))
ORDER BY c.relname, p.privilege
"""


async def check_privileges(conn: Connection) -> list[str]:
    """What LUC's role lacks to serve, as grants an operator can run; empty when nothing.

    ``DatabaseSetupError`` for what LUC cannot do without; what it only works around is
    returned (``TEMPORARY``: batches above 32 events are then staged as JSON, slower).
    """
    row = await conn.fetchrow(
        "SELECT current_user, current_database(), current_schema(),"
        " has_schema_privilege(current_schema(), 'USAGE'),"
        " has_database_privilege(current_database(), 'TEMPORARY')"
    )
    assert row is not None
    user, database, schema, usage, temporary = row
    if not usage:
        raise DatabaseSetupError(
            f"role {user} lacks USAGE on schema {schema}: GRANT USAGE ON SCHEMA {schema} "
            f"TO {user} (README, Operating LUC)"
        )
    rows = await conn.fetch(
        _MISSING_GRANTS,
        sorted({*TABLE_PRIVILEGES, *SEQUENCE_PRIVILEGES}),
        list(TABLE_PRIVILEGES),
        list(SEQUENCE_PRIVILEGES),
    )
    if rows:
        missing: dict[tuple[str, str], list[str]] = {}
        for name, kind, privilege in rows:
            what = "SEQUENCE" if kind == "S" else "TABLE"
            missing.setdefault((what, name), []).append(privilege)
        grants = "; ".join(
            f"GRANT {', '.join(privileges)} ON {what} {schema}.{name} TO {user}"
            for (what, name), privileges in sorted(missing.items())
        )
        raise DatabaseSetupError(
            f"role {user} lacks privileges LUC needs: {grants} (README, Operating LUC: the "
            "owner's ALTER DEFAULT PRIVILEGES grants them on every table to come)"
        )
    if not temporary:
        return [f'GRANT TEMPORARY ON DATABASE "{database}" TO {user}']
    return []

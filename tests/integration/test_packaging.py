"""A plain ``pip install .`` (a wheel, not an editable install) is a whole LUC: it migrates
a database and prints the Grafana role from what the package ships (``setup.py`` maps
``db/`` and ``deploy/`` into it), with no checkout beside it.

The wheel is built from a copy of the working tree, installed without its dependencies
into a fresh virtual environment in a temporary folder; the dependencies come from this
test run's environment through a ``.pth`` line (installing them from an index would make
the test slow and dependent on the network, and they are not what is tested). Nothing of
the checkout is importable there: the test checks where ``service`` is loaded from.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import site
import subprocess
import sys
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from service.db.migrations import head_revision
from service.db.urls import with_database
from tests.support.paths import PROJECT_ROOT

pytestmark = pytest.mark.slow

# What `pip wheel .` needs of the tree (the Dockerfile copies the same).
SOURCES = ("pyproject.toml", "setup.py", "README.md", "service", "db", "deploy")


def run(*args: str | Path, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("LUC_", "PYTHON"))}
    done = subprocess.run(
        [str(arg) for arg in args],
        cwd=cwd,
        env={**inherited, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin folder of a fresh virtual environment with LUC's wheel installed."""
    root = tmp_path_factory.mktemp("wheel")
    tree = root / "tree"
    for name in SOURCES:
        source = PROJECT_ROOT / name
        if source.is_dir():
            shutil.copytree(source, tree / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            tree.mkdir(exist_ok=True)
            shutil.copy2(source, tree / name)
    run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--wheel-dir",
        root / "wheels",
        ".",
        cwd=tree,
    )
    (wheel,) = (root / "wheels").glob("luc-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {
        "service/migrations/env.py",
        "service/migrations/script.py.mako",
        f"service/migrations/versions/{head_revision()}.py",
        "service/deploy/grafana-role.sql",
        "service/pricing/aims-v1.json",
        "service/pricing/aims-v1-previous.json",
    } <= names

    venv = root / "venv"
    run(sys.executable, "-m", "venv", venv, cwd=root)
    bin_dir = venv / "bin"
    run(bin_dir / "python", "-m", "pip", "install", "--no-deps", "--no-index", wheel, cwd=root)
    # The dependencies, from this environment; appended after the venv's own packages.
    (packages,) = (venv / "lib").glob("python3*/site-packages")
    (packages / "luc-test-dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return bin_dir


@pytest.fixture
def empty_database(admin_url: str) -> Iterator[str]:
    name = f"luc_wheel_{uuid.uuid4().hex[:12]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(admin_url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    yield with_database(admin_url, name)
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def test_the_installed_package_is_not_the_checkout(installed: Path, tmp_path: Path) -> None:
    done = run(installed / "python", "-c", "import service; print(service.__file__)", cwd=tmp_path)
    assert Path(done.stdout.strip()).is_relative_to(installed.parent), done.stdout


def test_a_wheel_install_migrates_a_new_database(
    installed: Path, tmp_path: Path, empty_database: str
) -> None:
    done = run(installed / "luc", "migrate", cwd=tmp_path, LUC_DATABASE_URL=empty_database)
    assert done.stdout == "schema at head (was empty); AIMS catalog loaded\n"

    async def revision() -> str:
        conn = await asyncpg.connect(empty_database)
        try:
            return str(await conn.fetchval("SELECT version_num FROM alembic_version"))
        finally:
            await conn.close()

    assert asyncio.run(revision()) == head_revision()
    # Commands that check the schema find the packaged migrations' head too.
    listed = run(installed / "luc", "keys", "list", cwd=tmp_path, LUC_DATABASE_URL=empty_database)
    assert listed.stdout.splitlines()[0].split() == [
        "id",
        "scope",
        "name",
        "prefix",
        "created",
        "status",
    ]


def test_a_wheel_install_prints_the_grafana_role(installed: Path, tmp_path: Path) -> None:
    done = run(installed / "luc", "grafana", "role", "--print", cwd=tmp_path)
    assert done.stdout == (PROJECT_ROOT / "deploy" / "grafana-role.sql").read_text()

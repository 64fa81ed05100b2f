"""What the tests of LUC's embedded PostgreSQL (its start, its restart) look at: a data
folder PostgreSQL can use and the processes that serve it."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil


@contextmanager
def scratch_data_dir(prefix: str) -> Iterator[Path]:
    """A LUC_DATA_DIR outside pytest's tmp_path: as root, PostgreSQL runs as a user of its
    own, which must be able to traverse the folder's parents, and pytest keeps its base
    folder private (another pytest session on the machine can make it so at any time)."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield folder / "data"
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped, does not)."""
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def postmaster_pid(pgdata: Path) -> int | None:
    """The pid in postmaster.pid when that process is alive, else None."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().splitlines()[0])
    except (FileNotFoundError, IndexError, ValueError):
        return None
    return pid if alive(pid) else None

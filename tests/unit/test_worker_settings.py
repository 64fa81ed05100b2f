"""What each of several workers of ``luc serve --workers N`` runs with: the parent's
database, and one group-commit writer unless ``LUC_INGEST_WRITERS`` says how many (each
worker commits its own groups, so two writers in each grouped less)."""

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


def test_a_lone_process_leaves_the_choice_to_the_app() -> None:
    # Unset, the lone process's app runs group_commit.WRITERS (two) writers.
    assert load_settings({}).ingest.writers is None
    assert load_settings({"LUC_INGEST_WRITERS": "1"}).ingest.writers == 1

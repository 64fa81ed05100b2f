"""What each of several workers of ``luc serve --workers N`` runs with: the parent's
settings on the parent's database, so two group-commit writers each (a second group in
flight only while groups take the long way) unless ``LUC_INGEST_WRITERS`` says how many."""

from __future__ import annotations

from service.cli.serve import worker_settings
from service.settings import load_settings

URL = "postgresql://luc@127.0.0.1:5432/luc"


def test_a_worker_runs_two_group_commit_writers_by_default_on_the_parents_database() -> None:
    settings = worker_settings(load_settings({}), URL)
    assert settings.ingest.writers == 2
    assert settings.database.url == URL


def test_a_worker_runs_the_writers_luc_ingest_writers_asks_for() -> None:
    settings = worker_settings(load_settings({"LUC_INGEST_WRITERS": "3"}), URL)
    assert settings.ingest.writers == 3


def test_a_lone_process_runs_two_writers_unless_told() -> None:
    assert load_settings({}).ingest.writers == 2
    assert load_settings({"LUC_INGEST_WRITERS": "1"}).ingest.writers == 1

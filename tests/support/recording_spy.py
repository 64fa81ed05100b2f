"""Which statement recorded each group: the long way's (``queries.recording``) or one
trip's (``queries.one_trip``), told by the tests that follow the write path."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from service.recording import queries

LONG, TRIP = "long", "trip"


def spy_recording_statements(
    monkeypatch: pytest.MonkeyPatch, label: Callable[[str, str], str]
) -> list[str]:
    """A list that gets ``label(way, statement)`` for every group's recording statement,
    ``way`` being ``LONG`` or ``TRIP`` (one trip's may store nothing, and its group then
    goes the long way too)."""
    seen: list[str] = []
    long_way, one_trip = queries.recording, queries.one_trip

    def spy_long_way(staged_source: str, staged: int) -> str:
        statement = long_way(staged_source, staged)
        seen.append(label(LONG, statement))
        return statement

    def spy_one_trip(staged: int, *, budgets_counted: bool) -> str:
        statement = one_trip(staged, budgets_counted=budgets_counted)
        seen.append(label(TRIP, statement))
        return statement

    monkeypatch.setattr(queries, "recording", spy_long_way)
    monkeypatch.setattr(queries, "one_trip", spy_one_trip)
    return seen

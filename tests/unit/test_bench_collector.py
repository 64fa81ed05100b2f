"""The load generator's measured windows run without its garbage collector, which is back
on after each, even one that fails: a collection of its heap mid-run would be counted as
the server's latency."""

from __future__ import annotations

import gc

import pytest

from bench.harness import collector_paused


class Cycle:
    def __init__(self) -> None:
        self.me = self


def test_no_collection_runs_inside_a_window_and_the_collector_is_back_after() -> None:
    collections: list[int] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collections.append(info["generation"])

    assert gc.isenabled()
    with collector_paused():
        gc.callbacks.append(count)
        try:
            assert not gc.isenabled()
            for _ in range(50_000):  # far past every generation's threshold
                Cycle()
        finally:
            gc.callbacks.remove(count)
    assert collections == []
    assert gc.isenabled()


def test_the_collector_is_back_after_a_window_that_fails() -> None:
    with pytest.raises(RuntimeError), collector_paused():
        raise RuntimeError("a run that failed")
    assert gc.isenabled()

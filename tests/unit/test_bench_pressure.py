"""A run says how long the whole machine stalled on IO while it was measured (Linux pressure
stall information), so that a stall of every request at once is not taken for LUC's own
latency."""

from __future__ import annotations

import pytest

from bench import harness
from bench.harness import CpuMeter, full_stall_seconds
from bench.loadgen import Run

PRESSURE = """some avg10=0.33 avg60=0.34 avg300=0.91 total=462850879
full avg10=0.31 avg60=0.25 avg300=0.74 total=384219938
"""


def test_the_full_stall_is_read_in_seconds() -> None:
    assert full_stall_seconds(PRESSURE) == 384.219938
    # A kernel that reports only "some" (CPU pressure on older kernels): nothing to read.
    assert full_stall_seconds(PRESSURE.splitlines()[0]) is None


def test_a_meter_counts_the_stall_of_its_window(monkeypatch: pytest.MonkeyPatch) -> None:
    readings = iter([10.0, 10.75])
    monkeypatch.setattr(harness, "io_stalled_seconds", lambda: next(readings))
    with CpuMeter(None, None) as meter:
        pass
    assert meter.io_stalled == 0.75


def test_folded_runs_add_their_stalls_unless_one_is_unknown() -> None:
    total = Run("reads", 1)
    for stalled in (0.5, 0.25):
        part = Run("reads", 1, requests=10)
        part.io_stalled = stalled
        total.add(part)
    assert total.io_stalled == 0.75
    unknown = Run("reads", 1, requests=10)
    total.add(unknown)
    assert total.io_stalled is None

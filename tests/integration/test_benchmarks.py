"""Every benchmark of ``make bench`` runs to its end, at the smallest size, and its
exactness checks pass.

Their figures are not checked (speed is the benchmarks' business, on a quiet machine), but
a benchmark that no longer runs is found here rather than at the next performance round:
``bench.ingest`` failed for two versions on a reference table that lacked a field the
validated event had gained. Each run ends with its checks on what it stored (rollups
equal to the ledger, one charge per event, every proxied call on the ledger once), which
its exit status reports.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.paths import PROJECT_ROOT

SMALLEST = {
    "bench.ingest": "--batches 2 --batch-size 200 --concurrency 1",
    "bench.ingest_paths": (
        "--quick --batch-sizes 200 --senders 1 --batch-events 400 --clients 2 "
        "--single-events 40 --noop-requests 20"
    ),
    "bench.reads": "--quick --ledger-rows 4000 --small-rows 2000 --requests 20",
    "bench.metrics": "--jobs 20,200 --events-per-job 2 --scrapes 3",
    "bench.proxy": "--calls 40 --rounds 1 --clients 1",
}
"""Each benchmark's arguments for its smallest run, one worker."""


@pytest.mark.parametrize("module", sorted(SMALLEST))
def test_a_benchmark_runs_to_its_end_and_its_checks_pass(
    module: str, admin_url: str, tmp_path: Path
) -> None:
    results = tmp_path / "results.json"
    env = {**os.environ, "LUC_DATABASE_URL": admin_url}  # a scratch database there
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            module,
            *SMALLEST[module].split(),
            "--workers",
            "1",
            "--json",
            str(results),
        ],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    said = f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    assert done.returncode == 0, said
    checks = [line for line in done.stdout.splitlines() if line.startswith("check:")]
    assert checks, said
    assert all(line.endswith("OK") for line in checks), said
    assert results.stat().st_size > 0

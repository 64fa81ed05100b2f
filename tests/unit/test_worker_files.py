"""Every worker's series read from the multiprocess files are what prometheus-client's
own collector makes of the same files, byte for byte, scrape after scrape: while workers
add label sets, change values, and when a worker's files go or are written anew."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from service.metrics.worker_files import WorkerFiles
from tests.support.paths import PROJECT_ROOT

# A worker: every kind of series a multiprocess folder can hold, every gauge mode, label
# values that need escaping, and values in the float forms Go writes with an exponent.
_WORKER = """
import sys
from prometheus_client import Counter, Gauge, Histogram, Summary, disable_created_metrics
disable_created_metrics()
n = int(sys.argv[1])
calls = Counter("w_calls", "Calls by route", ["route", "status"])
seconds = Histogram("w_seconds", "Durations", ["route"], buckets=(0.005, 0.1, 2.5, 10))
sizes = Summary("w_sizes", "Sizes")
plain = Histogram("w_plain", 'A "documented" histogram\\\\ with\\nlines')
calls.labels("/v1/events", "200").inc(n)
calls.labels('/odd "route"\\\\', "500").inc(0.1 * n)
seconds.labels("/v1/events").observe(0.003 * n)
seconds.labels("/metrics").observe(3.0)
seconds.labels("/metrics").observe(12345678.9 * n)
sizes.observe(n)
plain.observe(0.05)
modes = ("all", "min", "max", "sum", "mostrecent")
for mode in modes + tuple("live" + mode for mode in modes):
    gauge = Gauge("w_gauge_" + mode, "Gauge " + mode, ["shard"], multiprocess_mode=mode)
    gauge.labels("a").set(n * 1.5)
    if n % 2:
        gauge.labels("b").set(-n)
if len(sys.argv) > 2:  # a later write: new label sets, values moved
    calls.labels("/v1/jobs/{job_id}", "404").inc(3)
    seconds.labels("/v1/jobs/{job_id}").observe(0.2)
    seconds.labels("/v1/events").observe(0.0001)
    Gauge("w_gauge_late", "Late", multiprocess_mode="max").set(7)
"""


def _write(folder: Path, n: int, *later: str) -> None:
    env = {"PROMETHEUS_MULTIPROC_DIR": str(folder), "PATH": ""}
    subprocess.run(
        [sys.executable, "-c", _WORKER, str(n), *later], env=env, cwd=PROJECT_ROOT, check=True
    )


def _library(folder: Path) -> str:
    registry = CollectorRegistry(auto_describe=False)
    MultiProcessCollector(registry, path=str(folder))  # type: ignore[no-untyped-call]
    return generate_latest(registry).decode("utf-8")


def test_the_files_of_several_workers_read_as_the_library_reads_them(tmp_path: Path) -> None:
    for n in (1, 2, 3):
        _write(tmp_path, n)
    files = WorkerFiles(str(tmp_path))
    first = files.text()
    assert first == _library(tmp_path)
    lines = first.splitlines()
    # Hand-checked sums: 1 + 2 + 3 calls; the three /metrics observations of 3.0 fall in +Inf.
    assert 'w_calls_total{route="/v1/events",status="200"} 6.0' in lines
    assert 'w_seconds_bucket{le="2.5",route="/metrics"} 0.0' in lines
    assert 'w_seconds_count{route="/metrics"} 6.0' in lines
    assert 'w_gauge_max{shard="a"} 4.5' in lines
    assert 'w_gauge_sum{shard="b"} -4.0' in lines  # -1 and -3: the even worker set no b
    assert sum(line.startswith("w_gauge_all{") for line in lines) == 5  # a × 3 pids, b × 2

    # Values change and label sets are added in files already read: the same reader, again.
    _write(tmp_path, 4, "later")
    second = files.text()
    assert second == _library(tmp_path)
    assert 'w_calls_total{route="/v1/jobs/{job_id}",status="404"} 3.0' in second.splitlines()

    # A worker's files go (it was replaced) and one is written anew under the same name.
    gone = sorted(tmp_path.glob("counter_*.db"))[0]
    gone.unlink()
    third = files.text()
    assert third == _library(tmp_path)
    assert third != second
    live = sorted(tmp_path.glob("histogram_*.db"))[-1]
    content = live.read_bytes()
    live.unlink()
    live.write_bytes(content)  # another inode, the same entries
    assert files.text() == _library(tmp_path)


def test_an_empty_folder_has_no_series(tmp_path: Path) -> None:
    assert WorkerFiles(str(tmp_path)).text() == ""

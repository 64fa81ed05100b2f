"""``luc serve`` when what it stands on misbehaves: its parent killed, its embedded
PostgreSQL killed, a client whose request head never ends or is too large.

Real processes throughout: ``luc serve`` in a child process, the PostgreSQL it runs or
the test's own, and raw sockets for the clients.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.support.embedded import alive, postmaster_pid, scratch_data_dir
from tests.support.events import wire_event
from tests.support.servers import TEST_DEFAULTS, ServerProcess
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow


def _workers(parent: psutil.Process) -> list[int] | None:
    """The pids of the two uvicorn workers of ``parent`` (multiprocessing's spawned
    interpreters; its resource tracker is a child too), once both run."""
    found = [
        child.pid
        for child in parent.children()
        if "spawn_main" in " ".join(child.cmdline()) and alive(child.pid)
    ]
    return found if len(found) == 2 else None


def test_workers_end_with_a_killed_parent_and_its_metrics_folder_goes_at_the_next_start(
    database_url: str, tmp_path: Path
) -> None:
    """SIGKILL on the parent of ``luc serve --workers 2``: its workers went on serving the
    port, and its ``luc-metrics-*`` folder stayed in the temp folder for ever."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    # A folder a LUC killed before this change left (no pid in its name): its workers'
    # files name pids that are long gone.
    legacy = temp / "luc-metrics-k2j4x9q1"
    legacy.mkdir()
    (legacy / "counter_999999999.db").write_bytes(b"")
    # One of a live server: kept.
    live = temp / f"luc-metrics-{os.getpid()}-abcdefgh"
    live.mkdir()
    env = {"LUC_WORKERS": "2", "TMPDIR": str(temp)}
    server = ServerProcess(database_url, tmp_path / "luc.log", defaults=TEST_DEFAULTS, **env)
    again = ServerProcess(database_url, tmp_path / "again.log", defaults=TEST_DEFAULTS, **env)
    try:
        server.start()
        parent = psutil.Process(server.pid)
        workers = wait_for(lambda: _workers(parent), 60, "two workers")
        made = [f for f in temp.iterdir() if f.name.startswith(f"luc-metrics-{server.pid}-")]
        assert len(made) == 1, sorted(temp.iterdir())
        assert not legacy.exists()  # removed as the first server started
        server.kill()

        wait_for(lambda: not any(alive(pid) for pid in workers), 30, "the workers to end with it")
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{server.base_url}/healthz", timeout=5)
        assert made[0].exists()  # a SIGKILL runs no exit code

        again.start()
        assert not made[0].exists()
        assert live.exists()
        assert httpx.get(f"{again.base_url}/readyz", timeout=5).status_code == 200
    finally:
        server.kill()
        again.stop()
        for pid in workers if "workers" in locals() else []:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def data_dir() -> Iterator[Path]:
    with scratch_data_dir(prefix="luc-resilience-test-") as folder:
        yield folder


def _logged(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


def _watch_lines(path: Path) -> list[str]:
    """The embedded PostgreSQL watch's lines, short: what a timeout reports."""
    return [
        f"{e['timestamp']} {e['event']} attempt={e.get('attempt')} error={e.get('error')}"
        for e in _logged(path)
        if e["event"].startswith("embedded_postgres")
    ]


def _ready(base_url: str) -> bool:
    try:
        return httpx.get(f"{base_url}/readyz", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.parametrize("workers", ["1", "2"])
def test_an_embedded_postgresql_killed_while_serving_is_started_again(
    tmp_path: Path, data_dir: Path, workers: str
) -> None:
    """SIGKILL on the postmaster LUC started: /readyz answered 503 for good (and /healthz
    200, so a liveness probe restarted nothing). Now it is started again on the same
    folder, said in the log, and the same LUC process ingests again."""
    pgdata = (data_dir / "pgdata").resolve()
    server = ServerProcess(
        None, tmp_path / "luc.log", LUC_DATA_DIR=str(data_dir), LUC_WORKERS=workers
    )
    try:
        server.start()
        before = httpx.post(f"{server.base_url}/v1/events", json=wire_event("before"), timeout=10)
        assert before.status_code == 201, before.text
        postmaster = postmaster_pid(pgdata)
        assert postmaster is not None
        # Adopted once pg_ctl has exited: reaped by LUC when it dies, not by the system's
        # init, which once left it a zombie (its pid taken for a live server's) over 90 s.
        assert psutil.Process(postmaster).ppid() == server.pid

        os.kill(postmaster, signal.SIGKILL)
        wait_for(lambda: not alive(postmaster), 30, "the postmaster to die")

        restarted = wait_for(
            lambda: [
                e for e in _logged(server.log_path) if e["event"] == "embedded_postgres_restarted"
            ],
            90,
            "the restart to be logged",
            said=lambda: _watch_lines(server.log_path),
        )
        wait_for(lambda: _ready(server.base_url), 60, "/readyz to answer 200 again")
        assert server.process is not None and server.process.poll() is None  # the same LUC
        again = postmaster_pid(pgdata)
        assert again is not None and again != postmaster
        assert psutil.Process(again).ppid() == server.pid
        # Reaped at once by the watch: never waited for.
        assert "embedded_postgres_waiting_for_reap" not in [
            e["event"] for e in _logged(server.log_path)
        ]
        # Nor do the dead server's processes, which came to LUC with the postmaster's death
        # (a dozen of them), stay as zombies under it.
        wait_for(
            lambda: not _zombie_children(server.pid),
            15,
            "the dead server's processes to be reaped",
            said=lambda: _zombie_children(server.pid),
        )
        gone = [e for e in _logged(server.log_path) if e["event"] == "embedded_postgres_gone"]
        assert [(e["pid"], e["data_dir"]) for e in gone] == [(postmaster, str(pgdata))]
        assert [(e["pid"], e["data_dir"]) for e in restarted] == [(again, str(pgdata))]
        failed = [e["attempt"] for e in _logged(server.log_path) if "restart_failed" in e["event"]]
        assert restarted[0]["attempt"] == len(failed) + 1

        def accepted() -> bool:
            # The pool's connections died with the server: the first requests may be 503.
            after = httpx.post(f"{server.base_url}/v1/events", json=wire_event("after"), timeout=10)
            assert after.status_code in (201, 503), after.text
            return after.status_code == 201

        wait_for(accepted, 60, "an event to be accepted again")

        def job_read() -> dict[str, Any] | None:
            # With two workers the read may reach the other one, whose pool has yet to find
            # its connections dead: a 503 there too.
            read = httpx.get(f"{server.base_url}/v1/jobs/job-1", timeout=10)
            assert read.status_code in (200, 503), read.text
            return read.json() if read.status_code == 200 else None

        job = wait_for(job_read, 60, "the job to be read again")
        # Both events: 2 × (1000 × $0.10/M + 500 × $0.40/M).
        assert (job["events"], job["cost_usd"]) == (2, "0.0006")

        server.stop()
        assert server.process.returncode == 0
        assert postmaster_pid(pgdata) is None  # the restarted server stops with LUC
    finally:
        server.kill()
        for proc in psutil.process_iter(["name", "cmdline"]):
            if proc.info["name"] == "postgres" and str(pgdata) in (proc.info["cmdline"] or []):
                proc.kill()


def _zombie_children(pid: int) -> list[int]:
    """The children of ``pid`` that have exited and are not reaped."""
    zombies = []
    for child in psutil.Process(pid).children():
        with contextlib.suppress(psutil.NoSuchProcess):
            if child.status() == psutil.STATUS_ZOMBIE:
                zombies.append(child.pid)
    return zombies


def _rss(pid: int) -> int:
    return int(psutil.Process(pid).memory_info().rss)


def test_a_request_head_without_end_is_cut_off_and_the_worker_stays_small(
    database_url: str, tmp_path: Path
) -> None:
    """One header sent without end grew a worker to ≈ 390 MB (httptools keeps it all)."""
    server = ServerProcess(database_url, tmp_path / "luc.log")
    try:
        server.start()
        before = _rss(server.pid)
        chunk = b"a" * 65536
        sent = 0
        cut_off = False
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as client:
            client.sendall(b"GET /healthz HTTP/1.1\r\nHost: luc\r\nX-Endless: ")
            # 64 MiB or 20 s at most: the server closes long before (64 KiB and a chunk).
            deadline = time.monotonic() + 20
            while sent < 64 * 1024 * 1024 and time.monotonic() < deadline:
                try:
                    client.sendall(chunk)
                except (ConnectionError, TimeoutError):
                    cut_off = True
                    break
                sent += len(chunk)
            assert cut_off, f"still accepting after {sent} bytes"
            answer = _read_all(client)
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
        assert answer.endswith(
            b'{"status_code": 431, "detail": "the request line and headers exceed 65536 bytes"}'
        ), answer
        assert _rss(server.pid) - before < 20 * 1024 * 1024
        assert httpx.get(f"{server.base_url}/healthz", timeout=5).status_code == 200
    finally:
        server.stop()


MAX_HEAD = 64 * 1024  # README, Operating LUC: "larger than 64 KiB get 431"


def _head(size: int, connection: bytes = b"close") -> bytes:
    """A request head of ``size`` bytes (its last header padded), complete."""
    start = b"GET /healthz HTTP/1.1\r\nHost: luc\r\nConnection: " + connection + b"\r\nX-Big: "
    return start + b"a" * (size - len(start) - 4) + b"\r\n\r\n"


def _send_in(client: socket.socket, request: bytes, writes: int) -> None:
    """``request`` in ``writes`` writes, the first 60,000 bytes (under the bound) alone."""
    if writes == 2:
        client.sendall(request[:60_000])
        time.sleep(0.2)  # the client's pace: two writes apart, as a slow network sends them
        request = request[60_000:]
    client.sendall(request)


@pytest.mark.parametrize("writes", [1, 2], ids=["one-write", "two-writes"])
def test_a_request_head_over_64_kib_gets_431_however_its_bytes_arrive(
    database_url: str, tmp_path: Path, writes: int
) -> None:
    """A head that ended in the chunk crossing 64 KiB got through (only a head still
    incomplete was checked): 100,000 bytes in one write, 130,043 in two, answered 200."""
    server = ServerProcess(database_url, tmp_path / "luc.log")
    try:
        server.start()
        for size in (MAX_HEAD + 1, 100_000, 130_043):
            with socket.create_connection(("127.0.0.1", server.port), timeout=30) as client:
                _send_in(client, _head(size), writes)
                answer = _read_all(client)
            assert answer.startswith(b"HTTP/1.1 431 "), (size, answer[:200])
            assert answer.endswith(
                b'{"status_code": 431, "detail": "the request line and headers exceed 65536 bytes"}'
            ), answer
        # A head of 64 KiB exactly is taken, and what follows it in the same write (here
        # a next request) is read as ever.
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as client:
            _send_in(client, _head(MAX_HEAD, b"keep-alive") + _head(100), writes)
            answer = _read_all(client)
        assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
        assert answer.count(b"HTTP/1.1 200 ") == 2, answer
    finally:
        server.stop()


def test_a_request_head_trickled_forever_is_cut_off_after_the_head_timeout(
    database_url: str, tmp_path: Path
) -> None:
    """A byte a second held a connection (and a worker's slot) for as long as the client
    liked: nothing in uvicorn times a request head out."""
    server = ServerProcess(database_url, tmp_path / "luc.log")
    try:
        server.start()
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as client:
            started = time.monotonic()
            client.sendall(b"GET /healthz HTTP/1.1\r\nHost: luc\r\nX-Slow: ")
            client.setblocking(False)
            answer = b""
            # A slow client, by design: one byte every 0.2 s, until the server closes.
            while time.monotonic() - started < 40:
                try:
                    client.send(b"a")
                    received = client.recv(4096)
                except BlockingIOError:
                    time.sleep(0.2)  # the client's pace, not a wait for the server
                    continue
                except ConnectionError:
                    break
                if not received:
                    break
                answer += received
            took = time.monotonic() - started
            assert took < 40, f"still reading the head after {took:.0f} s"
            client.settimeout(30)
            answer += _read_all(client)
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
        # The JSON error body of every other answer of LUC's.
        assert b"content-type: application/json\r\n" in answer
        assert answer.endswith(
            b'{"status_code": 408, "detail": '
            b'"the request line and headers did not arrive within 10 s"}'
        ), answer
        assert 10 <= took < 30, took
    finally:
        server.stop()


def test_a_request_body_trickled_forever_is_cut_off_after_the_body_timeout(
    database_url: str, tmp_path: Path
) -> None:
    """A body promised whole (Content-Length) and sent a byte now and then held its
    connection, and the request waiting for it, for as long as the client liked: Litestar
    bounds a body's size, nothing its time. A whole request beside it is answered."""
    server = ServerProcess(database_url, tmp_path / "luc.log", LUC_BODY_TIMEOUT_SECONDS="3")
    try:
        server.start()
        event = json.dumps(wire_event("slow-body")).encode()
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as client:
            started = time.monotonic()
            client.sendall(
                b"POST /v1/events HTTP/1.1\r\nHost: luc\r\nContent-Type: application/json\r\n"
                b"Content-Length: " + str(len(event)).encode() + b"\r\n\r\n" + event[:10]
            )
            client.setblocking(False)
            answer = b""
            sent = 10
            # A slow client, by design: one byte every 0.5 s, until the server closes.
            while time.monotonic() - started < 20 and sent < len(event):
                try:
                    received = client.recv(4096)
                except BlockingIOError:
                    time.sleep(0.5)  # the client's pace, not a wait for the server
                    with contextlib.suppress(BlockingIOError, ConnectionError):
                        sent += client.send(event[sent : sent + 1])
                    continue
                except ConnectionError:
                    break
                if not received:
                    break
                answer += received
            took = time.monotonic() - started
            client.settimeout(30)
            answer += _read_all(client)
            # Meanwhile a whole request is answered as ever.
            assert httpx.get(f"{server.base_url}/healthz", timeout=5).status_code == 200
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
        assert answer.endswith(
            b'{"status_code": 408, "detail": "the request body did not arrive within 3 s of '
            b'its headers (LUC_BODY_TIMEOUT_SECONDS)"}'
        ), answer
        assert 3 <= took < 15, took
        assert sent < len(event)  # cut off before the body was whole
    finally:
        server.stop()


def _read_all(client: socket.socket) -> bytes:
    """What the server sends until it closes the connection."""
    answer = b""
    with contextlib.suppress(ConnectionError):
        while received := client.recv(65536):
            answer += received
    return answer


def test_a_restart_that_fails_is_tried_again_at_a_backoff_while_healthz_stays_200(
    tmp_path: Path, data_dir: Path
) -> None:
    """A postmaster that cannot start (here a setting it refuses): each attempt is one
    log line with the reason and the next wait, /healthz stays 200 (README: restarting
    LUC would run the same start), /readyz 503; once it can start, it is back."""
    pgdata = (data_dir / "pgdata").resolve()
    server = ServerProcess(None, tmp_path / "luc.log", LUC_DATA_DIR=str(data_dir))
    conf = pgdata / "postgresql.conf"
    try:
        server.start()
        good = conf.read_text()
        # Read at the next start only: the running server does not notice.
        conf.write_text(good + "\nshared_buffers = 'plenty'\n")
        postmaster = postmaster_pid(pgdata)
        assert postmaster is not None
        os.kill(postmaster, signal.SIGKILL)

        def failures() -> list[dict[str, Any]] | None:
            found = [e for e in _logged(server.log_path) if "restart_failed" in e["event"]]
            return found if len(found) >= 3 else None

        # A dead postmaster not reaped yet is waited for, not an attempt: every attempt
        # is a start, which fails saying why.
        failed = wait_for(
            failures, 90, "three failed restarts", said=lambda: _watch_lines(server.log_path)
        )
        assert [(e["attempt"], e["retry_in_seconds"]) for e in failed[:3]] == [
            (1, 1.0),
            (2, 2.0),
            (3, 4.0),
        ]
        for e in failed[:3]:
            assert 'invalid value for parameter "shared_buffers"' in e["error"], e
        assert httpx.get(f"{server.base_url}/healthz", timeout=5).status_code == 200
        assert httpx.get(f"{server.base_url}/readyz", timeout=5).status_code == 503

        conf.write_text(good)
        wait_for(lambda: _ready(server.base_url), 60, "/readyz to answer 200 again")
        restarted = wait_for(
            lambda: [
                e for e in _logged(server.log_path) if e["event"] == "embedded_postgres_restarted"
            ],
            30,
            "the restart to be logged",
        )
        failed = [e for e in _logged(server.log_path) if "restart_failed" in e["event"]]
        assert [e["attempt"] for e in restarted] == [len(failed) + 1]
    finally:
        server.kill()
        for proc in psutil.process_iter(["name", "cmdline"]):
            if proc.info["name"] == "postgres" and str(pgdata) in (proc.info["cmdline"] or []):
                proc.kill()

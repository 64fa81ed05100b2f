"""Debian's PostgreSQL and PgBouncer, started by a test the way an operator runs them.

Unlike the embedded server the other tests share, these are the packaged binaries
(``postgresql-15``, ``pgbouncer``), listening on TCP with password authentication, so
LUC reaches them only through ``LUC_DATABASE_URL``. Both refuse to run as root: as root
they run as the ``postgres`` user the package creates, from a folder that user owns.

Without the binaries the tests that need them skip, except in CI (``CI`` set), where a
missing package is a failure: ``.ci/run`` installs them.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

SUPERUSER = "postgres"
SUPERUSER_PASSWORD = "superuser-secret"
SERVICE_USER = "postgres"  # the OS user the Debian packages run their servers as
PORT_ATTEMPTS = 5


def require_postgres() -> Path:
    """The bin folder of Debian's newest PostgreSQL; a skip (a failure in CI) without it."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name)
    )
    if found:
        return found[-1].parent
    _missing("PostgreSQL server (`initdb`)", "postgresql")
    raise AssertionError("unreachable")


def require_pgbouncer() -> Path:
    """The ``pgbouncer`` binary; a skip (a failure in CI) without it."""
    path = shutil.which("pgbouncer") or (
        "/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None
    )
    if path:
        return Path(path)
    _missing("`pgbouncer`", "pgbouncer")
    raise AssertionError("unreachable")


def _missing(what: str, package: str) -> None:
    reason = f"{what} is not installed (Debian: apt-get install {package})"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run the real-PostgreSQL tests (.ci/run installs it)")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SERVICE_USER)
        except KeyError:
            reason += f"; as root, the `{SERVICE_USER}` user is needed too"
    pytest.skip(reason)


def _as_service_user() -> list[str]:
    """The prefix that runs a command as the servers' user (nothing unless root)."""
    if os.geteuid() != 0:
        return []
    # setpriv executes the command itself (no child in between), so signals sent to the
    # process a test started reach the server.
    return ["setpriv", f"--reuid={SERVICE_USER}", f"--regid={SERVICE_USER}", "--init-groups"]


def _hand_over(path: Path) -> None:
    """Give ``path`` (recursively) to the servers' user when running as root."""
    if os.geteuid() != 0:
        return
    user = pwd.getpwnam(SERVICE_USER)
    for item in [path, *path.rglob("*")]:
        os.chown(item, user.pw_uid, user.pw_gid)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def url(
    port: int, user: str, password: str, database: str, host: str = "127.0.0.1", **params: str
) -> str:
    query = "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items())
    return f"postgresql://{quote(user)}:{quote(password, safe='')}@{host}:{port}/{database}" + (
        f"?{query}" if query else ""
    )


class DebianPostgres:
    """A PostgreSQL cluster of its own in a temporary folder, on a free TCP port.

    ``tls`` makes a self-signed certificate for ``localhost`` (its own CA: ``ca_file``) and
    accepts TCP connections over TLS only (``hostssl`` in pg_hba.conf).
    """

    def __init__(self, *, tls: bool = False) -> None:
        self.bin = require_postgres()
        self.folder = Path(tempfile.mkdtemp(prefix="luc-debian-pg-"))
        self.data = self.folder / "data"
        self.log = self.folder / "postgresql.log"
        self.tls = tls
        self.port = _free_port()
        self._init()

    @property
    def ca_file(self) -> Path:
        return self.folder / "ca.crt"

    def superuser_url(self, database: str = "postgres", **params: str) -> str:
        return url(self.port, SUPERUSER, SUPERUSER_PASSWORD, database, **params)

    def _run(self, *args: str) -> None:
        subprocess.run(
            [*_as_service_user(), *args],
            check=True,
            capture_output=True,
            cwd=self.folder,
            timeout=120,
        )

    def _init(self) -> None:
        password_file = self.folder / "superuser-password"
        password_file.write_text(SUPERUSER_PASSWORD)
        _hand_over(self.folder)
        self._run(
            str(self.bin / "initdb"),
            "-D",
            str(self.data),
            "-U",
            SUPERUSER,
            f"--pwfile={password_file}",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C",
        )
        settings = [
            "listen_addresses = '127.0.0.1'",
            f"unix_socket_directories = '{self.folder}'",
            # Throwaway data: no need to wait for the disk.
            "fsync = off",
            "synchronous_commit = off",
            "full_page_writes = off",
        ]
        hba = ["local all all trust"]
        if self.tls:
            self._make_certificate()
            settings += ["ssl = on", "ssl_cert_file = 'server.crt'", "ssl_key_file = 'server.key'"]
            hba += ["hostssl all all 127.0.0.1/32 scram-sha-256"]
        else:
            hba += ["host all all 127.0.0.1/32 scram-sha-256"]
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write("\n".join(settings) + "\n")
        (self.data / "pg_hba.conf").write_text("\n".join(hba) + "\n")
        _hand_over(self.folder)

    def _make_certificate(self) -> None:
        openssl = shutil.which("openssl")
        if openssl is None:
            _missing("`openssl`", "openssl")
        assert openssl is not None
        ca_key = self.folder / "ca.key"
        subprocess.run(
            [
                *(openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
                *("-subj", "/CN=LUC test CA", "-keyout", str(ca_key), "-out", str(self.ca_file)),
            ],
            check=True,
            capture_output=True,
        )
        key = self.data / "server.key"
        request = self.folder / "server.csr"
        subprocess.run(
            [
                *(openssl, "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost"),
                *("-keyout", str(key), "-out", str(request)),
            ],
            check=True,
            capture_output=True,
        )
        extensions = self.folder / "san.ext"
        extensions.write_text("subjectAltName = DNS:localhost, IP:127.0.0.1\n")
        subprocess.run(
            [
                *(openssl, "x509", "-req", "-in", str(request), "-CA", str(self.ca_file)),
                *("-CAkey", str(ca_key), "-CAcreateserial", "-days", "2"),
                *("-extfile", str(extensions), "-out", str(self.data / "server.crt")),
            ],
            check=True,
            capture_output=True,
        )
        key.chmod(0o600)  # PostgreSQL refuses a key others may read

    def start(self) -> None:
        """Start and wait until it accepts connections; on a port taken meanwhile, retry
        with another (only before clients know the port: the first start)."""
        for _ in range(PORT_ATTEMPTS):
            try:
                self._pg_ctl(
                    "start", "-w", "-t", "60", "-l", str(self.log), "-o", f"-p {self.port}"
                )
                return
            except subprocess.CalledProcessError:
                if "could not bind" not in self.log.read_text(errors="replace"):
                    raise RuntimeError(f"PostgreSQL did not start: {self.log_tail()}") from None
                self.log.write_text("")
                self.port = _free_port()
        raise RuntimeError(f"PostgreSQL found no free port: {self.log_tail()}")

    def restart_on_same_port(self) -> None:
        self._pg_ctl("start", "-w", "-t", "60", "-l", str(self.log), "-o", f"-p {self.port}")

    def stop(self, mode: str = "fast") -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._pg_ctl("stop", "-w", "-m", mode)

    def _pg_ctl(self, *args: str) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), *args)

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run the statements of ``sql`` one by one as the superuser, over the unix socket
        (as an operator's psql session would); their output."""
        done = subprocess.run(
            [
                *_as_service_user(),
                *(str(self.bin / "psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1"),
                *("-h", str(self.folder), "-p", str(self.port), "-U", SUPERUSER, "-d", database),
            ],
            input=sql,
            capture_output=True,
            text=True,
            timeout=60,
            cwd=self.folder,
        )
        if done.returncode:
            raise RuntimeError(f"psql failed: {done.stderr}")
        return done.stdout.strip()

    def cleanup(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.folder, ignore_errors=True)


class PgBouncer:
    """Debian's PgBouncer in front of ``postgres``, in transaction pooling, on a free port.

    ``users`` are the roles (name: password) it lets in, with the same password on to
    PostgreSQL (SCRAM both ways).
    """

    def __init__(self, postgres: DebianPostgres, database: str, users: dict[str, str]) -> None:
        self.binary = require_pgbouncer()
        self.postgres = postgres
        self.folder = Path(tempfile.mkdtemp(prefix="luc-pgbouncer-"))
        self.database = database
        self.users = users
        self.port = _free_port()
        self.log = self.folder / "pgbouncer.log"
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, user: str, **params: str) -> str:
        return url(self.port, user, self.users[user], self.database, **params)

    def _configure(self) -> Path:
        auth = self.folder / "users.txt"
        auth.write_text("".join(f'"{u}" "{p}"\n' for u, p in self.users.items()))
        config = self.folder / "pgbouncer.ini"
        config.write_text(
            f"""[databases]
{self.database} = host=127.0.0.1 port={self.postgres.port} dbname={self.database}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {self.port}
unix_socket_dir =
auth_type = scram-sha-256
auth_file = {auth}
pool_mode = transaction
default_pool_size = 5
max_client_conn = 200
logfile = {self.log}
pidfile = {self.folder / "pgbouncer.pid"}
"""
        )
        _hand_over(self.folder)
        return config

    def start(self) -> None:
        for _ in range(PORT_ATTEMPTS):
            config = self._configure()
            self.process = subprocess.Popen(
                [*_as_service_user(), str(self.binary), str(config)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd=self.folder,
            )
            if self._listening():
                return
            self.port = _free_port()  # taken since it was picked
        raise RuntimeError(f"PgBouncer did not start: {self.log_text()}")

    def _listening(self) -> bool:
        process = self.process
        assert process is not None

        def up() -> bool | None:
            if process.poll() is not None:
                return None
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", self.port)) == 0

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            state = up()
            if state is None:
                return False  # exited: most likely the port
            if state:
                return True
            time.sleep(0.05)  # polling a child process's readiness, with a deadline
        raise RuntimeError(f"PgBouncer is not listening after 30 s: {self.log_text()}")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def cleanup(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


def started_postgres(*, tls: bool = False) -> Iterator[DebianPostgres]:
    """A started ``DebianPostgres`` for a fixture; removed afterwards."""
    server = DebianPostgres(tls=tls)
    try:
        server.start()
        yield server
    finally:
        server.cleanup()

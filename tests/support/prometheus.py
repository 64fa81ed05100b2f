"""A real Prometheus for tests: Debian's ``prometheus`` package in a child process scraping
one LUC every second, and the finance and operations dashboards' PromQL as Grafana sends it.

Without ``prometheus``/``promtool`` a test skips (``require``), except in CI (``CI`` set),
where a missing tool is a failure: ``.ci/run`` installs it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support.paths import PROJECT_ROOT
from tests.support.ports import free_port
from tests.support.waiting import wait_for

ALERTS = PROJECT_ROOT / "prometheus" / "alerts.yml"
DASHBOARDS = PROJECT_ROOT / "grafana" / "dashboards"

# What Grafana puts in place of its PromQL variables, for a dashboard showing the last hour
# (a rate window of 5m spans all the samples, however slowly the tests run).
PROMQL_VARIABLES = {"$__rate_interval": "5m", "$__range": "1h", "$__interval": "15s"}


def require(tool: str) -> str:
    """The tool's path; a skip without it, or a failure in CI, which must run these tests."""
    path = shutil.which(tool)
    if path:
        return path
    reason = f"`{tool}` is not installed (Debian: apt-get install prometheus)"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run the Prometheus tests (.ci/run installs it)")
    pytest.skip(reason)


def panels(name: str) -> list[dict[str, Any]]:
    board = json.loads((DASHBOARDS / name).read_text())
    return [p for p in board["panels"] if p["type"] != "row"]


def panel_queries(datasource: str) -> list[tuple[str, str]]:
    """(dashboard / panel title, query) of every target on the datasource with this uid."""
    key = "expr" if datasource == "luc-prometheus" else "rawSql"
    found = []
    for name in sorted(p.name for p in DASHBOARDS.glob("*.json")):
        for p in panels(name):
            for target in p["targets"]:
                if target["datasource"]["uid"] == datasource:
                    found.append((f"{name} / {p['title']} / {target['refId']}", target[key]))
    return found


def grafana_promql(expr: str) -> str:
    for variable, value in PROMQL_VARIABLES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"unknown Grafana variable in {expr}"
    return expr


class Prometheus:
    """``prometheus`` in a child process scraping one LUC every second."""

    def __init__(self, binary: str, folder: Path, target: str, key: str | None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = folder / "prometheus.log"
        config: dict[str, Any] = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(ALERTS)],
            "scrape_configs": [
                {
                    "job_name": "luc",
                    "scrape_timeout": "1s",
                    "static_configs": [{"targets": [target]}],
                }
            ],
        }
        if key is not None:
            # As the README says: a `read` key, never in the config file itself.
            (folder / "luc-read-key").write_text(key)
            job = config["scrape_configs"][0]
            job["authorization"] = {"credentials_file": str(folder / "luc-read-key")}
        (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    binary,
                    f"--config.file={folder / 'prometheus.yml'}",
                    f"--storage.tsdb.path={folder / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=log,
            )
        wait_for(self._ready, 20, "Prometheus to be ready", every=0.2)

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"prometheus exited: {self.log.read_text()[-2000:]}")
        try:
            return httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """An instant query (now, or ``at`` a Unix time); fails the test when Prometheus
        refuses the expression."""
        data = {"query": expr} if at is None else {"query": expr, "time": str(at)}
        response = httpx.post(f"{self.url}/api/v1/query", data=data, timeout=10)
        body = response.json()
        assert response.status_code == 200 and body["status"] == "success", (expr, body)
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def value(self, expr: str, at: float | None = None) -> str:
        result = self.query(expr, at)
        assert len(result) == 1, (expr, result)
        return str(result[0]["value"][1])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

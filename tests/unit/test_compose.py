"""``compose.yaml`` starts LUC, PostgreSQL, Prometheus and Grafana from this repository.

Docker does not run here, so the file is checked statically against the repository: it
parses, every image is pinned, every bind mount's source exists, Grafana gets every
provisioning file and the dashboards where the provider looks, its datasources name
compose services (never localhost: inside a container that is the container itself),
Prometheus scrapes the LUC service on the port LUC listens on, and LUC, Grafana and the
role script agree on database names, users and passwords.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.support.paths import PROJECT_ROOT

COMPOSE = PROJECT_ROOT / "compose.yaml"
PROVISIONING = PROJECT_ROOT / "grafana" / "provisioning"
DATASOURCES = PROVISIONING / "datasources"
PROMETHEUS_CONFIG = PROJECT_ROOT / "prometheus" / "prometheus.yml"
ROLE_SQL = PROJECT_ROOT / "deploy" / "grafana-role.sql"


def compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(document, dict)
    return document


def services() -> dict[str, dict[str, Any]]:
    return dict(compose()["services"])


def environment(service: str) -> dict[str, str]:
    """A service's environment (the map form this file uses), values as compose passes them."""
    env = services()[service].get("environment", {})
    assert isinstance(env, dict), f"{service}: write environment as a map"
    return {k: str(v) for k, v in env.items()}


def bind_mounts(service: str) -> list[tuple[Path, PurePosixPath]]:
    """(host path, container path) of each bind mount; named volumes left out."""
    mounts = []
    for volume in services()[service].get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            mounts.append(((COMPOSE.parent / source).resolve(), PurePosixPath(target)))
    return mounts


def container_path(service: str, host: Path) -> PurePosixPath | None:
    """Where ``host`` (a repository file or folder) appears in the service's container."""
    for source, target in bind_mounts(service):
        if host == source or source in host.parents:
            return target / host.relative_to(source).as_posix()
    return None


def expand(text: str, env: dict[str, str]) -> str:
    """``${VAR}`` as Grafana's provisioning expands it; a variable left unset fails."""

    def value(match: re.Match[str]) -> str:
        assert match.group(1) in env, f"{match.group(1)} is not set in the service"
        return env[match.group(1)]

    return re.sub(r"\$\{(\w+)\}", value, text)


def host_of(address: str) -> str:
    return urlsplit(address if "://" in address else f"//{address}").hostname or ""


def test_the_file_parses_with_the_whole_stack() -> None:
    assert set(services()) == {"postgres", "luc", "grafana-role", "prometheus", "grafana"}
    assert set(compose()["volumes"]) == {
        "postgres-data",
        "luc-data",
        "prometheus-data",
        "grafana-data",
    }


def test_every_image_is_pinned_to_a_tag_and_luc_is_built_from_this_repository() -> None:
    for name, service in services().items():
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and tag and tag != "latest", f"{name}: {image} is not pinned"
    assert services()["luc"]["build"] == "."
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    base = re.search(r"^FROM (\S+)$", dockerfile, re.MULTILINE)
    assert base and ":" in base.group(1) and not base.group(1).endswith(":latest")
    for source in re.findall(r"^COPY (.+) \S+$", dockerfile, re.MULTILINE):
        for path in source.split():
            assert (PROJECT_ROOT / path).exists(), f"Dockerfile copies missing {path}"
    assert "pip install" in dockerfile and 'CMD ["luc", "serve"]' in dockerfile


def test_every_bind_mount_comes_from_the_repository() -> None:
    for name in services():
        for source, _ in bind_mounts(name):
            assert source.exists(), f"{name} mounts {source}, which does not exist"
            assert PROJECT_ROOT in source.parents, f"{name} mounts {source} from outside"


def test_luc_listens_on_all_interfaces_and_uses_the_postgres_service() -> None:
    luc, postgres = environment("luc"), environment("postgres")
    assert luc["LUC_HOST"] == "0.0.0.0"
    url = urlsplit(luc["LUC_DATABASE_URL"])
    assert (url.hostname, url.port) == ("postgres", 5432)
    assert (url.username, url.password, url.path.lstrip("/")) == (
        postgres["POSTGRES_USER"],
        postgres["POSTGRES_PASSWORD"],
        postgres["POSTGRES_DB"],
    )
    assert services()["luc"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert f"{luc['LUC_PORT']}:{luc['LUC_PORT']}" in services()["luc"]["ports"]


def test_grafana_gets_every_provisioning_file_and_the_dashboards_where_the_provider_looks() -> None:
    env = environment("grafana")
    for path in sorted(p for p in PROVISIONING.rglob("*") if p.is_file()):
        mounted = container_path("grafana", path)
        assert (
            mounted
            == PurePosixPath("/etc/grafana/provisioning")
            / path.relative_to(PROVISIONING).as_posix()
        ), path
    provider = yaml.safe_load(expand((PROVISIONING / "dashboards" / "luc.yaml").read_text(), env))
    folder = PurePosixPath(provider["providers"][0]["options"]["path"])
    for board in sorted((PROJECT_ROOT / "grafana" / "dashboards").glob("*.json")):
        assert container_path("grafana", board) == folder / board.name
    home = env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == str(container_path("grafana", PROJECT_ROOT / "grafana/dashboards/finance.json"))


def test_every_datasource_names_a_compose_service_never_localhost() -> None:
    env = environment("grafana")
    files = sorted(DATASOURCES.glob("*.y*ml"))
    assert files
    hosts = {}
    for path in files:
        for source in yaml.safe_load(expand(path.read_text(), env))["datasources"]:
            hosts[source["uid"]] = host_of(source["url"])
    assert hosts == {"luc-prometheus": "prometheus", "luc-postgres": "postgres"}
    assert set(hosts.values()) <= set(services())
    assert env["LUC_PROMETHEUS_URL"] == "http://prometheus:9090"
    assert "9090:9090" in services()["prometheus"]["ports"]


def test_the_postgres_datasource_logs_in_as_the_role_the_script_creates() -> None:
    env, role = environment("grafana"), services()["grafana-role"]
    assert env["LUC_GRAFANA_PG_DATABASE"] == environment("postgres")["POSTGRES_DB"]
    assert env["LUC_GRAFANA_PG_USER"] == "luc_grafana"
    assert "CREATE ROLE luc_grafana LOGIN PASSWORD" in ROLE_SQL.read_text()
    assert f"--set=grafana_password={env['LUC_GRAFANA_PG_PASSWORD']}" in role["command"]
    script = container_path("grafana-role", ROLE_SQL)
    assert f"--file={script}" in role["command"]
    assert "--host=postgres" in role["command"]
    assert role["environment"]["PGPASSWORD"] == environment("postgres")["POSTGRES_PASSWORD"]
    # The role is made once LUC has migrated (the rollups exist), and before Grafana starts.
    assert role["depends_on"]["luc"]["condition"] == "service_healthy"
    grafana_needs = services()["grafana"]["depends_on"]["grafana-role"]["condition"]
    assert grafana_needs == "service_completed_successfully"


def test_prometheus_scrapes_the_luc_service_with_the_mounted_config_and_rules() -> None:
    prometheus = services()["prometheus"]
    config_path = container_path("prometheus", PROMETHEUS_CONFIG)
    assert config_path is not None
    assert f"--config.file={config_path}" in prometheus["command"]
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "luc"  # the scrape-health alerts select up{job="luc"}
    (targets,) = job["static_configs"]
    assert targets["targets"] == [f"luc:{environment('luc')['LUC_PORT']}"]
    # Without a key: LUC lets Prometheus scrape /metrics in this stack.
    assert environment("luc")["LUC_METRICS_PUBLIC"] == "1"
    for rule_file in config["rule_files"]:
        in_repository = PROMETHEUS_CONFIG.parent / rule_file
        assert in_repository.exists()
        assert container_path("prometheus", in_repository) == config_path.parent / rule_file
    # Grafana's $__rate_interval needs the datasource to know the scrape interval.
    interval = config["global"]["scrape_interval"]
    assert environment("grafana")["LUC_PROMETHEUS_SCRAPE_INTERVAL"] == interval


def test_promtool_accepts_the_prometheus_config() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        reason = "`promtool` is not installed (Debian: apt-get install prometheus)"
        if os.environ.get("CI"):  # as in tests/integration/test_prometheus.py
            pytest.fail(f"{reason}; CI must run this check (.ci/run installs it)")
        pytest.skip(reason)
    checked = subprocess.run(
        [promtool, "check", "config", str(PROMETHEUS_CONFIG)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr

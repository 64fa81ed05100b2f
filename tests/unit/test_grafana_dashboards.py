"""The committed Grafana files are what ``grafana.build`` generates, and hang together."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from grafana import build

GRAFANA = Path(build.__file__).resolve().parent
PROVISIONING = GRAFANA / "provisioning"
ALERTS = GRAFANA.parent / "prometheus" / "alerts.yml"

# Series read from the ledger at scrape time: every replica reports the same value.
LEDGER_SERIES = (
    "luc_cost_usd",
    "luc_provider_cost_usd",
    "luc_actual_cost_usd",
    "luc_price_usd",
    "luc_margin_usd",
    "luc_ledger_events",
    "luc_tokens",
    "luc_unpriced_events",
    "luc_catalog_info",
    "luc_budget_spent_ratio",
    "luc_budget_limit_usd",
    "luc_customer_credit_balance_usd",
    "luc_customers_by_credit_state",
    "luc_webhook_deliveries",
    "luc_webhook_oldest_pending_seconds",
)


def committed() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted(build.DASHBOARDS_DIR.glob("*.json"))}


def targets() -> list[tuple[str, dict[str, Any]]]:
    """Every query of every panel; never none, so a loop over them always checks some."""
    found = [
        (f"{name} / {p['title']}", t)
        for name, board in committed().items()
        for p in board["panels"]
        for t in p.get("targets", [])
    ]
    assert found, "no panel queries anything"
    return found


def test_every_dashboard_has_panels_and_every_panel_but_a_row_has_a_query() -> None:
    boards = committed()
    assert sorted(boards) == ["finance.json", "operations.json"]
    for name, board in boards.items():
        panels = [p for p in board["panels"] if p["type"] != "row"]
        rows = [p for p in board["panels"] if p["type"] == "row"]
        assert len(panels) >= 10 and len(rows) >= 2, (name, len(panels), len(rows))
        for panel in panels:
            assert panel.get("targets"), (name, panel["title"])


def test_committed_dashboards_equal_what_the_code_generates() -> None:
    generated = build.dashboards()
    assert sorted(generated) == sorted(committed()) == ["finance.json", "operations.json"]
    for name, board in generated.items():
        assert (build.DASHBOARDS_DIR / name).read_text() == build.render(board), (
            f"{name} is out of date: run python -m grafana.build"
        )
    assert build.main(["--check"]) == 0


def test_rendering_is_deterministic_sorted_json() -> None:
    board = build.finance()
    text = build.render(board)
    assert text == build.render(build.finance())
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def test_every_panel_queries_a_provisioned_datasource() -> None:
    provisioned = yaml.safe_load((PROVISIONING / "datasources" / "luc.yaml").read_text())
    sources = {d["uid"]: d["type"] for d in provisioned["datasources"]}
    assert sources == {
        "luc-prometheus": "prometheus",
        "luc-postgres": "grafana-postgresql-datasource",
    }
    for where, target in targets():
        source = target["datasource"]
        assert sources.get(source["uid"]) == source["type"], where
        query = target.get("expr") or target.get("rawSql")
        assert query, where


def test_the_dashboard_provider_loads_a_folder_of_these_files() -> None:
    provider = yaml.safe_load((PROVISIONING / "dashboards" / "luc.yaml").read_text())
    (only,) = provider["providers"]
    assert only["type"] == "file" and only["options"]["path"] == "${LUC_GRAFANA_DASHBOARDS}"
    defaults = (PROVISIONING / "luc.env").read_text()
    used = set(re.findall(r"\$\{(\w+)\}", (PROVISIONING / "datasources" / "luc.yaml").read_text()))
    used |= {"LUC_GRAFANA_DASHBOARDS"}
    assert {line.split("=")[0] for line in defaults.splitlines() if "=" in line} == used


def test_panels_have_unique_ids_and_do_not_overlap() -> None:
    for name, board in committed().items():
        ids = [p["id"] for p in board["panels"]]
        assert ids, name
        assert ids == list(range(1, len(ids) + 1)), name
        cells: set[tuple[int, int]] = set()
        for p in board["panels"]:
            g = p["gridPos"]
            assert g["x"] + g["w"] <= 24, (name, p["title"])
            mine = {
                (x, y)
                for x in range(g["x"], g["x"] + g["w"])
                for y in range(g["y"], g["y"] + g["h"])
            }
            assert not cells & mine, (name, p["title"])
            cells |= mine


def _unfolded(expr: str) -> list[str]:
    """Ledger series in ``expr`` not directly under ``max by (...)`` (optionally around a
    ``deriv``/``delta``): summing those across replicas would count the ledger twice."""
    bad = []
    for match in re.finditer(r"\b(" + "|".join(LEDGER_SERIES) + r")\b", expr):
        before = expr[: match.start()]
        if not re.search(r"max by \([^()]*\) \(((deriv|delta)\()?$", before):
            bad.append(match.group(1))
    return bad


def test_ledger_series_are_folded_across_replicas_before_any_sum() -> None:
    promql = [(where, target["expr"]) for where, target in targets() if "expr" in target]
    rules = [
        rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]
    ]
    # Both dashboards query Prometheus, and so do the alert rules: something to check.
    assert len({where.split(" / ")[0] for where, _ in promql}) == 2
    assert rules
    assert any(re.search("|".join(LEDGER_SERIES), expr) for _, expr in promql)
    for where, expr in promql:
        assert _unfolded(expr) == [], where
    for rule in rules:
        assert _unfolded(rule["expr"]) == [], rule["alert"]
    assert _unfolded("sum(luc_cost_usd)") == ["luc_cost_usd"]


def test_no_ledger_series_is_read_as_a_counter() -> None:
    """The ledger's totals are the net of its entries: a re-rating or a re-pricing lowers
    them, and rate() or increase() would read the drop as a reset and add the whole total
    again. deriv() and delta() take a correction for what it is."""
    as_counter = re.compile(
        r"\b(rate|irate|increase|resets)\(\s*(" + "|".join(LEDGER_SERIES) + r")\b"
    )
    promql = [(where, target["expr"]) for where, target in targets() if "expr" in target]
    rules = [
        (rule["alert"], rule["expr"])
        for group in yaml.safe_load(ALERTS.read_text())["groups"]
        for rule in group["rules"]
    ]
    assert [where for where, expr in promql + rules if as_counter.search(expr)] == []
    assert any("delta(luc_cost_usd[" in expr for _, expr in promql)
    assert as_counter.search("max by (agent) (rate(luc_price_usd[5m]))")

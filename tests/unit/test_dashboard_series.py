"""Every series the dashboards and alert rules name is one LUC serves, with the labels it has.

Without Prometheus or a database: the names and labels come from LUC's own definitions of
its /metrics (the ledger's gauge families and each process's instruments), so a renamed or
removed series (``luc_cost_usd_total`` once was one) or a label a series does not carry fails
here, not on a dashboard that silently shows "No data".
"""

from __future__ import annotations

import re

import yaml
from prometheus_client.metrics import MetricWrapperBase

from service.metrics import drift_series, rollup_series
from service.metrics.exposition import GaugeFamily
from service.metrics.instruments import Metrics
from tests.support.prometheus import ALERTS, panel_queries

# Labels Prometheus adds itself (target labels) or that a histogram's buckets carry.
TARGET_LABELS = {"job", "instance"}
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}


def served() -> dict[str, set[str]]:
    """Every sample name /metrics can carry, with its label names."""
    names: dict[str, set[str]] = {}
    for module in (rollup_series, drift_series):
        for family in vars(module).values():
            if isinstance(family, GaugeFamily):
                names[family.name] = set(family.labels)
    # prometheus-client keeps an instrument's name, type and label names private.
    for instrument in vars(Metrics()).values():
        if isinstance(instrument, MetricWrapperBase):
            kind = instrument._type
            assert kind is not None  # set by each instrument class
            labels = set(instrument._labelnames)
            for suffix in SUFFIXES[kind]:
                names[instrument._name + suffix] = labels | (
                    {"le"} if suffix == "_bucket" else set()
                )
    return names


def expressions() -> list[tuple[str, str]]:
    rules = [
        (rule["alert"], rule["expr"])
        for group in yaml.safe_load(ALERTS.read_text())["groups"]
        for rule in group["rules"]
    ]
    return panel_queries("luc-prometheus") + rules


def problems(expr: str, series: dict[str, set[str]]) -> list[str]:
    """What in ``expr`` LUC does not serve: unknown series, labels no named series has, and
    a ``max by (…)`` fold over other labels than its series' own (it would then take the
    largest of several series, not fold replicas of one)."""
    found = []
    named = set(re.findall(r"\b(luc_\w+)\b(?!\s*\()", expr))
    found += [f"no series {name}" for name in sorted(named - set(series))]
    known = set().union(*(series.get(n, set()) for n in named)) | TARGET_LABELS
    used = set()
    for group in re.findall(r"\b(?:by|without)\s*\(([^()]*)\)", expr):
        used |= {label.strip() for label in group.split(",") if label.strip()}
    used |= set(re.findall(r"[{,]\s*(\w+)\s*=~?", expr))
    found += [f"no label {label}" for label in sorted(used - known)]
    folds = r"max by \(([^()]*)\) \((?:(?:deriv|delta)\()?(luc_\w+)\b"
    for labels, name in re.findall(folds, expr):
        # By a target label too (``instance``: one series per replica) is no fold.
        own = {label.strip() for label in labels.split(",") if label.strip()} - TARGET_LABELS
        if name in series and own != series[name]:
            found.append(f"max by ({labels}) over {name}{sorted(series[name])}")
    return found


def test_luc_serves_the_series_the_dashboards_read() -> None:
    series = served()
    assert series["luc_tokens"] == {"agent", "model", "provider", "tier", "class"}
    assert series["luc_events_total"] == {"outcome"}
    assert series["luc_ingest_duration_seconds_bucket"] == {"le"}


def test_every_series_and_label_of_the_dashboards_and_alerts_is_served() -> None:
    series = served()
    checked = expressions()
    assert len(checked) > 40
    wrong = {where: problems(expr, series) for where, expr in checked}
    assert {where: found for where, found in wrong.items() if found} == {}


def test_the_check_catches_what_a_dashboard_can_get_wrong() -> None:
    series = served()
    gone = "sum(max by (agent, model, provider, tier) (luc_cost_usd_total))"
    assert problems(gone, series)[0] == "no series luc_cost_usd_total"
    assert problems("sum by (customer) (max by (model) (luc_unpriced_events))", series) == [
        "no label customer"
    ]
    assert problems('sum(luc_events_total{result="rejected"})', series) == ["no label result"]
    assert problems("sum(max by (agent, model) (deriv(luc_tokens[5m])))", series) == [
        "max by (agent, model) over luc_tokens['agent', 'class', 'model', 'provider', 'tier']"
    ]
    assert problems("max by (budget_id, scope, period) (luc_budget_spent_ratio)", series) == []

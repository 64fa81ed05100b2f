"""LUC's Grafana dashboards as code: ``python -m grafana.build`` writes grafana/dashboards/.

Plain dicts in, sorted and indented JSON out, so the committed files are exactly what this
module generates (a test checks it; ``--check`` does too, without writing).

Two audiences, two dashboards:
- ``finance.json``: spend today and this month, spend over time by tier, agent and model,
  the top jobs, catalog versus provider-reported cost, unpriced events, budgets;
- ``operations.json``: ingest rate and outcomes, ingest and HTTP latency, HTTP errors,
  scrape and database health.

Ledger series (``luc_cost_usd_total``, ``luc_tokens_total``, ``luc_unpriced_events``,
``luc_budget_*``) are read from PostgreSQL at scrape time: every replica reports the same
whole-ledger value. Queries therefore take ``max by (<the series' own labels>)`` first,
which folds replicas (and any target labels: instance, pod, job) into one series, and only
then sum. Process series (``luc_events_total`` and the histograms) count what each process
did and are summed directly. Money that must be exact to the cent over long ranges (today,
this month, per job) comes from the PostgreSQL datasource over the rollup tables.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

DASHBOARDS_DIR = Path(__file__).resolve().parent / "dashboards"

PROMETHEUS = {"type": "prometheus", "uid": "luc-prometheus"}
POSTGRES = {"type": "grafana-postgresql-datasource", "uid": "luc-postgres"}

# The labels that identify one ledger series; `max by` these folds replicas together.
COST_LABELS = "agent, model, provider, tier"
TOKEN_LABELS = "agent, model, class"
BUDGET_LABELS = "budget_id, scope, period"
SCRAPE_JOB = 'job="luc"'


def ledger(metric: str, labels: str = COST_LABELS) -> str:
    """A ledger series with replicas folded: every replica reports the same value."""
    return f"max by ({labels}) ({metric})"


def ledger_rate(metric: str, labels: str = COST_LABELS, window: str = "$__rate_interval") -> str:
    return f"max by ({labels}) (rate({metric}[{window}]))"


def ledger_increase(metric: str, labels: str = COST_LABELS, window: str = "$__range") -> str:
    return f"max by ({labels}) (increase({metric}[{window}]))"


def quantile(q: float, histogram: str, by: str = "le") -> str:
    return f"histogram_quantile({q}, sum by ({by}) (rate({histogram}_bucket[$__rate_interval])))"


# SQL over the rollups. Grafana's macros ($__timeFrom(), $__timeTo(), $__timeFilter(col))
# expand to quoted RFC 3339 instants; days are UTC days, as in the rollups.
FROM_DAY = "($__timeFrom()::timestamptz AT TIME ZONE 'UTC')::date"
TO_DAY = "($__timeTo()::timestamptz AT TIME ZONE 'UTC')::date"
TODAY = "(now() AT TIME ZONE 'UTC')::date"


# Targets -----------------------------------------------------------------------------------


def prom(
    expr: str, legend: str = "", *, instant: bool = False, table: bool = False
) -> dict[str, Any]:
    target: dict[str, Any] = {
        "datasource": PROMETHEUS,
        "editorMode": "code",
        "expr": expr,
        "instant": instant,
        "legendFormat": legend or "__auto",
        "range": not instant,
    }
    if table:
        target["format"] = "table"
    return target


def sql(raw: str, *, time_series: bool = False) -> dict[str, Any]:
    return {
        "datasource": POSTGRES,
        "editorMode": "code",
        "format": "time_series" if time_series else "table",
        "rawQuery": True,
        "rawSql": raw.strip(),
    }


# Panels ------------------------------------------------------------------------------------


def _datasource(targets: list[dict[str, Any]]) -> dict[str, str]:
    sources = {t["datasource"]["uid"]: t["datasource"] for t in targets}
    if len(sources) != 1:
        raise ValueError("a panel queries exactly one datasource")
    return next(iter(sources.values()))


def panel(
    kind: str,
    title: str,
    description: str,
    targets: list[dict[str, Any]],
    *,
    width: int,
    height: int,
    unit: str = "short",
    decimals: int | None = None,
    options: dict[str, Any] | None = None,
    custom: dict[str, Any] | None = None,
    thresholds: list[tuple[float | None, str]] | None = None,
    overrides: list[dict[str, Any]] | None = None,
    transformations: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    defaults: dict[str, Any] = {"unit": unit}
    if decimals is not None:
        defaults["decimals"] = decimals
    if custom:
        defaults["custom"] = custom
    steps = thresholds or [(None, "green")]
    defaults["thresholds"] = {
        "mode": "absolute",
        "steps": [{"color": color, "value": value} for value, color in steps],
    }
    defaults["color"] = {"mode": "thresholds" if thresholds else "palette-classic"}
    result: dict[str, Any] = {
        "datasource": _datasource(targets),
        "description": description,
        "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
        "gridPos": {"h": height, "w": width},
        "options": options or {},
        "targets": [{**t, "refId": chr(ord("A") + i)} for i, t in enumerate(targets)],
        "title": title,
        "type": kind,
    }
    if transformations:
        result["transformations"] = transformations
    return result


def _reduce(calc: str = "lastNotNull") -> dict[str, Any]:
    return {"calcs": [calc], "fields": "", "values": False}


def stat(
    title: str,
    description: str,
    target: dict[str, Any],
    *,
    unit: str = "currencyUSD",
    decimals: int | None = 2,
    width: int = 4,
    height: int = 4,
    text_mode: str = "value",
    thresholds: list[tuple[float | None, str]] | None = None,
) -> dict[str, Any]:
    return panel(
        "stat",
        title,
        description,
        [target],
        width=width,
        height=height,
        unit=unit,
        decimals=decimals,
        thresholds=thresholds,
        options={
            "colorMode": "value" if thresholds else "none",
            "graphMode": "none",
            "justifyMode": "auto",
            "orientation": "auto",
            "reduceOptions": _reduce(),
            "textMode": text_mode,
        },
    )


def timeseries(
    title: str,
    description: str,
    targets: list[dict[str, Any]],
    *,
    unit: str,
    width: int = 12,
    height: int = 8,
    stacked: bool = False,
    bars: bool = False,
) -> dict[str, Any]:
    return panel(
        "timeseries",
        title,
        description,
        targets,
        width=width,
        height=height,
        unit=unit,
        custom={
            "drawStyle": "bars" if bars else "line",
            "fillOpacity": 60 if bars else 10,
            "lineWidth": 1,
            "showPoints": "never",
            "spanNulls": False,
            "stacking": {"group": "A", "mode": "normal" if stacked else "none"},
        },
        options={
            "legend": {
                "calcs": ["sum"] if bars else ["mean", "max"],
                "displayMode": "table",
                "placement": "right",
                "showLegend": True,
            },
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
    )


def bargauge(
    title: str,
    description: str,
    targets: list[dict[str, Any]],
    *,
    unit: str = "currencyUSD",
    width: int = 12,
    height: int = 8,
    thresholds: list[tuple[float | None, str]] | None = None,
    maximum: float | None = None,
) -> dict[str, Any]:
    result = panel(
        "bargauge",
        title,
        description,
        targets,
        width=width,
        height=height,
        unit=unit,
        decimals=2,
        thresholds=thresholds,
        options={
            "displayMode": "gradient",
            "minVizHeight": 16,
            "orientation": "horizontal",
            "reduceOptions": _reduce(),
            "showUnfilled": True,
        },
    )
    result["fieldConfig"]["defaults"]["min"] = 0
    if maximum is not None:
        result["fieldConfig"]["defaults"]["max"] = maximum
    return result


def table(
    title: str,
    description: str,
    targets: list[dict[str, Any]],
    *,
    money_columns: Iterable[str] = (),
    width: int = 24,
    height: int = 9,
    transformations: list[dict[str, Any]] | None = None,
    sort_by: str | None = None,
) -> dict[str, Any]:
    overrides = [
        {
            "matcher": {"id": "byName", "options": name},
            "properties": [{"id": "unit", "value": "currencyUSD"}, {"id": "decimals", "value": 4}],
        }
        for name in money_columns
    ]
    options: dict[str, Any] = {"cellHeight": "sm", "showHeader": True}
    if sort_by:
        options["sortBy"] = [{"desc": True, "displayName": sort_by}]
    return panel(
        "table",
        title,
        description,
        targets,
        width=width,
        height=height,
        overrides=overrides,
        options=options,
        custom={"align": "auto", "filterable": True},
        transformations=transformations,
    )


def row(title: str) -> dict[str, Any]:
    return {
        "collapsed": False,
        "gridPos": {"h": 1, "w": 24},
        "panels": [],
        "title": title,
        "type": "row",
    }


def layout(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Number the panels and place them left to right, wrapping at Grafana's 24 columns; a
    row always starts a new line."""
    x = y = line_height = 0
    for number, p in enumerate(panels, start=1):
        grid = p["gridPos"]
        if p["type"] == "row" or x + grid["w"] > 24:
            x, y, line_height = 0, y + line_height, 0
        grid["x"], grid["y"] = x, y
        p["id"] = number
        x += grid["w"]
        line_height = max(line_height, grid["h"])
        if p["type"] == "row":
            x, y, line_height = 0, y + grid["h"], 0
    return panels


def dashboard(
    uid: str,
    title: str,
    description: str,
    panels: list[dict[str, Any]],
    *,
    time_from: str,
    refresh: str,
    link_to: tuple[str, str],
) -> dict[str, Any]:
    return {
        "annotations": {"list": []},
        "description": description,
        "editable": False,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,
        "id": None,
        "links": [
            {
                "asDropdown": False,
                "icon": "dashboard",
                "tags": [],
                "targetBlank": False,
                "title": link_to[1],
                "type": "link",
                "url": f"/d/{link_to[0]}",
            }
        ],
        "liveNow": False,
        "panels": layout(panels),
        "refresh": refresh,
        "schemaVersion": 39,
        "tags": ["luc"],
        "templating": {"list": []},
        "time": {"from": time_from, "to": "now"},
        "timepicker": {},
        "timezone": "utc",
        "title": title,
        "uid": uid,
        "version": 1,
        "weekStart": "",
    }


# Finance -----------------------------------------------------------------------------------

LEDGER_NOTE = "From the ledger (read by every replica at scrape time; replicas folded by max)."
PER_HOUR = "* 3600"
BUDGET_STEPS: list[tuple[float | None, str]] = [(None, "green"), (0.8, "orange"), (1, "red")]


def finance() -> dict[str, Any]:
    cost = "luc_cost_usd_total"
    provider_cost = ledger("luc_provider_cost_usd_total")
    catalog_cost = ledger(cost)
    panels = [
        row("Spend"),
        stat(
            "Spend today (UTC)",
            "Catalog-priced cost of the events of this UTC day, from the agent × day rollup.",
            sql(f"""
SELECT COALESCE(sum(cost_usd), 0) AS "spend today"
FROM rollup_agent_days
WHERE day = {TODAY}
"""),
        ),
        stat(
            "Spend this month (UTC)",
            "Catalog-priced cost of the events of this UTC calendar month, from the agent × "
            "day rollup.",
            sql(f"""
SELECT COALESCE(sum(cost_usd), 0) AS "spend this month"
FROM rollup_agent_days
WHERE day >= date_trunc('month', {TODAY})::date
"""),
        ),
        stat(
            "Spend in the selected range",
            "Increase of the ledger's cost over the dashboard's time range, as Prometheus saw "
            f"it. {LEDGER_NOTE}",
            prom(f"sum({ledger_increase(cost)})", instant=True),
        ),
        stat(
            "Ledger total (all time)",
            f"Everything the ledger holds, catalog-priced. {LEDGER_NOTE} Equals "
            "GET /v1/usage's cost_usd.",
            prom(f"sum({catalog_cost})", instant=True),
        ),
        stat(
            "Unpriced events",
            "Events kept without a price because no catalog version knows their model: their "
            "cost is unknown, not zero. GET /v1/unpriced lists them.",
            prom(f"sum({ledger('luc_unpriced_events', 'model')}) or vector(0)", instant=True),
            unit="short",
            decimals=0,
            thresholds=[(None, "green"), (1, "orange")],
        ),
        stat(
            "Catalog version in force",
            "The price catalog version that prices events happening now.",
            prom(
                "max by (version, label) (luc_catalog_info)",
                "{{label}} (version {{version}})",
                instant=True,
            ),
            unit="none",
            decimals=None,
            text_mode="name",
        ),
        timeseries(
            "Spend rate by tier",
            f"Catalog-priced spend per hour, by model tier. {LEDGER_NOTE}",
            [prom(f"sum by (tier) ({ledger_rate(cost)}) {PER_HOUR}", "{{tier}}")],
            unit="currencyUSD",
            stacked=True,
        ),
        timeseries(
            "Spend rate by agent",
            f"Catalog-priced spend per hour, by agent. {LEDGER_NOTE}",
            [prom(f"sum by (agent) ({ledger_rate(cost)}) {PER_HOUR}", "{{agent}}")],
            unit="currencyUSD",
            stacked=True,
        ),
        timeseries(
            "Spend rate by model",
            f"Catalog-priced spend per hour, by model. {LEDGER_NOTE}",
            [prom(f"sum by (model) ({ledger_rate(cost)}) {PER_HOUR}", "{{model}}")],
            unit="currencyUSD",
            stacked=True,
        ),
        bargauge(
            "Spend in the selected range by model",
            f"Increase of each model's catalog-priced cost over the time range. {LEDGER_NOTE}",
            [prom(f"sum by (model) ({ledger_increase(cost)})", "{{model}}", instant=True)],
        ),
        timeseries(
            "Daily spend by agent (ledger)",
            "Catalog-priced cost per UTC day and agent, from the agent × day rollup: exact, "
            "and complete even for days before Prometheus started.",
            [
                sql(
                    f"""
SELECT (day::timestamp AT TIME ZONE 'UTC') AS time, agent AS metric, cost_usd AS value
FROM rollup_agent_days
WHERE day BETWEEN {FROM_DAY} AND {TO_DAY}
ORDER BY 1, 2
""",
                    time_series=True,
                )
            ],
            unit="currencyUSD",
            stacked=True,
            bars=True,
        ),
        timeseries(
            "Daily spend by model (ledger)",
            "Catalog-priced cost per UTC day and model, from the model × day rollup.",
            [
                sql(
                    f"""
SELECT (day::timestamp AT TIME ZONE 'UTC') AS time, model AS metric, cost_usd AS value
FROM rollup_model_days
WHERE day BETWEEN {FROM_DAY} AND {TO_DAY}
ORDER BY 1, 2
""",
                    time_series=True,
                )
            ],
            unit="currencyUSD",
            stacked=True,
            bars=True,
        ),
        timeseries(
            "Token rate by class",
            f"Tokens per second by class (input includes cached and cache-write tokens; output "
            f"includes reasoning). {LEDGER_NOTE}",
            [
                prom(
                    f"sum by (class) ({ledger_rate('luc_tokens_total', TOKEN_LABELS)})",
                    "{{class}}",
                )
            ],
            unit="short",
            width=24,
        ),
        row("Jobs"),
        table(
            "Top jobs by cost",
            "Jobs with events in the time range, by their whole catalog-priced cost, from the "
            "job rollup (jobs are never a Prometheus label). GET /v1/jobs/{job_id} has the "
            "breakdown.",
            [
                sql("""
SELECT job_id AS "job", cost_usd AS "cost", provider_cost_usd AS "provider-reported",
       events, unpriced_events AS "unpriced events",
       input_tokens AS "input tokens", output_tokens AS "output tokens",
       first_event_at AS "first event", last_event_at AS "last event"
FROM rollup_jobs
WHERE $__timeFilter(last_event_at)
ORDER BY cost_usd DESC, job_id
LIMIT 25
""")
            ],
            money_columns=("cost", "provider-reported"),
            height=10,
        ),
        row("Reconciliation"),
        bargauge(
            "Catalog vs provider-reported cost by provider",
            "What LUC priced from the catalog beside what each provider reported (OpenRouter "
            f"reports usage.cost; Vertex AI and the stub report none). {LEDGER_NOTE}",
            [
                prom(f"sum by (provider) ({catalog_cost})", "{{provider}} catalog", instant=True),
                prom(
                    f"sum by (provider) ({provider_cost})",
                    "{{provider}} provider-reported",
                    instant=True,
                ),
            ],
        ),
        table(
            "Catalog vs provider-reported cost by model (ledger)",
            "Per model over the UTC days of the time range, from the model × day rollup. "
            "Provider-reported cost counts only the events whose provider reported one.",
            [
                sql(f"""
SELECT model, sum(cost_usd) AS "catalog", sum(provider_cost_usd) AS "provider-reported",
       sum(events) AS events, sum(unpriced_events) AS "unpriced events"
FROM rollup_model_days
WHERE day BETWEEN {FROM_DAY} AND {TO_DAY}
GROUP BY model
ORDER BY 2 DESC, 1
""")
            ],
            money_columns=("catalog", "provider-reported"),
            width=12,
            height=8,
        ),
        stat(
            "Provider-reported minus catalog",
            "Over the series where the provider reports a cost and the catalog priced it: "
            f"positive when the provider charged more than the catalog says. {LEDGER_NOTE}",
            prom(f"sum(({provider_cost} > 0) - {catalog_cost})", instant=True),
            width=6,
            height=6,
            decimals=4,
        ),
        stat(
            "Provider-reported / catalog",
            "The same series as a ratio: 100 % when the catalog matches the provider's bill.",
            prom(
                f"sum(({provider_cost} > 0) and {catalog_cost}) "
                f"/ sum({catalog_cost} and ({provider_cost} > 0))",
                instant=True,
            ),
            unit="percentunit",
            width=6,
            height=6,
        ),
        bargauge(
            "Unpriced events by model",
            "Events whose model no catalog version prices. Add the model to the catalog, "
            f"then re-rate (luc catalog rerate). {LEDGER_NOTE}",
            [prom(ledger("luc_unpriced_events", "model"), "{{model}}", instant=True)],
            unit="short",
            height=6,
            thresholds=[(None, "orange")],
        ),
        row("Budgets"),
        bargauge(
            "Budget spend ratio",
            "Spend over limit of each budget in its current period (100 % = limit reached). "
            "Alerts fire at 80 % and 100 % (prometheus/alerts.yml).",
            [
                prom(
                    ledger("luc_budget_spent_ratio", BUDGET_LABELS),
                    "#{{budget_id}} {{scope}} / {{period}}",
                    instant=True,
                )
            ],
            unit="percentunit",
            thresholds=BUDGET_STEPS,
            maximum=1,
        ),
        table(
            "Budgets",
            "Each budget's limit and the share of it spent in the current period.",
            [
                prom(ledger("luc_budget_limit_usd", BUDGET_LABELS), instant=True, table=True),
                prom(ledger("luc_budget_spent_ratio", BUDGET_LABELS), instant=True, table=True),
            ],
            width=12,
            height=8,
            transformations=[
                {"id": "merge", "options": {}},
                {
                    "id": "organize",
                    "options": {
                        "excludeByName": {"Time": True},
                        "renameByName": {"Value #A": "limit (USD)", "Value #B": "spent ratio"},
                    },
                },
            ],
        ),
    ]
    return dashboard(
        "luc-finance",
        "LUC — Finance",
        "What the LLM calls cost: spend by tier, agent, model and job, reconciliation with "
        "provider bills, unpriced usage and budgets.",
        panels,
        time_from="now-7d",
        refresh="5m",
        link_to=("luc-operations", "LUC — Operations"),
    )


# Operations --------------------------------------------------------------------------------

PROCESS_NOTE = "Counted by each process and summed over replicas."
HTTP = "luc_http_request_duration_seconds"


def operations() -> dict[str, Any]:
    events = "luc_events_total"
    panels = [
        row("Health"),
        stat(
            "LUC targets up",
            'Replicas Prometheus scrapes successfully (scrape job "luc").',
            prom(f"sum(up{{{SCRAPE_JOB}}})", instant=True),
            unit="short",
            decimals=0,
            thresholds=[(None, "red"), (1, "green")],
        ),
        stat(
            "Database up",
            "1 when every replica could read the ledger from PostgreSQL at its last scrape.",
            prom("min(luc_database_up)", instant=True),
            unit="short",
            decimals=0,
            thresholds=[(None, "red"), (1, "green")],
        ),
        stat(
            "Ingest rate",
            f"Events received per second, all outcomes. {PROCESS_NOTE}",
            prom(f"sum(rate({events}[$__rate_interval]))", instant=True),
            unit="short",
        ),
        stat(
            "Rejected share",
            f"Share of the events received that were rejected. {PROCESS_NOTE}",
            prom(
                f'sum(rate({events}{{outcome="rejected"}}[$__rate_interval])) '
                f"/ sum(rate({events}[$__rate_interval]))",
                instant=True,
            ),
            unit="percentunit",
            thresholds=[(None, "green"), (0.05, "orange")],
        ),
        stat(
            "HTTP 5xx share",
            f"Share of HTTP answers that were server errors. {PROCESS_NOTE}",
            prom(
                f'(sum(rate({HTTP}_count{{status=~"5.."}}[$__rate_interval])) or vector(0)) '
                f"/ sum(rate({HTTP}_count[$__rate_interval]))",
                instant=True,
            ),
            unit="percentunit",
            thresholds=[(None, "green"), (0.01, "orange"), (0.05, "red")],
        ),
        stat(
            "Catalog version in force",
            "The price catalog version that prices events happening now.",
            prom(
                "max by (version, label) (luc_catalog_info)",
                "{{label}} (version {{version}})",
                instant=True,
            ),
            unit="none",
            decimals=None,
            text_mode="name",
        ),
        row("Ingest"),
        timeseries(
            "Events by outcome",
            "Events per second by ingest outcome: accepted, duplicate (counted once), conflict "
            f"(same id, other content; the first stays) and rejected. {PROCESS_NOTE}",
            [prom(f"sum by (outcome) (rate({events}[$__rate_interval]))", "{{outcome}}")],
            unit="short",
            stacked=True,
        ),
        timeseries(
            "Ingest latency",
            "Time to validate, price and commit one ingest request (a batch or one event). "
            f"{PROCESS_NOTE}",
            [
                prom(quantile(0.5, "luc_ingest_duration_seconds"), "p50"),
                prom(quantile(0.99, "luc_ingest_duration_seconds"), "p99"),
            ],
            unit="s",
        ),
        timeseries(
            "Events per ingest request",
            f"Batch size: how many events each ingest request carried. {PROCESS_NOTE}",
            [
                prom(quantile(0.5, "luc_ingest_batch_events"), "p50"),
                prom(quantile(0.99, "luc_ingest_batch_events"), "p99"),
            ],
            unit="short",
        ),
        bargauge(
            "Events by outcome in the selected range",
            f"How many events of each outcome arrived over the time range. {PROCESS_NOTE}",
            [
                prom(
                    f"sum by (outcome) (increase({events}[$__range]))",
                    "{{outcome}}",
                    instant=True,
                )
            ],
            unit="short",
        ),
        row("HTTP"),
        timeseries(
            "HTTP requests by status",
            f"Requests per second by status code. {PROCESS_NOTE}",
            [prom(f"sum by (status) (rate({HTTP}_count[$__rate_interval]))", "{{status}}")],
            unit="reqps",
            stacked=True,
        ),
        timeseries(
            "HTTP errors by route",
            f"4xx and 5xx answers per second, by route template and status. {PROCESS_NOTE}",
            [
                prom(
                    f'sum by (route, status) (rate({HTTP}_count{{status=~"[45].."}}'
                    "[$__rate_interval]))",
                    "{{route}} {{status}}",
                )
            ],
            unit="reqps",
        ),
        timeseries(
            "HTTP latency p99 by route",
            f"99th percentile of request duration by route template. {PROCESS_NOTE}",
            [prom(quantile(0.99, HTTP, "le, route"), "{{route}}")],
            unit="s",
        ),
        timeseries(
            "HTTP latency p50 by route",
            f"Median request duration by route template. {PROCESS_NOTE}",
            [prom(quantile(0.5, HTTP, "le, route"), "{{route}}")],
            unit="s",
        ),
        timeseries(
            "Database up by replica",
            "Whether each replica could read the ledger from PostgreSQL at each scrape.",
            [prom("max by (instance) (luc_database_up)", "{{instance}}")],
            unit="short",
            width=24,
            height=6,
        ),
    ]
    return dashboard(
        "luc-operations",
        "LUC — Operations",
        "Is LUC recording usage: ingest rate, outcomes and latency, HTTP errors, scrape and "
        "database health.",
        panels,
        time_from="now-6h",
        refresh="30s",
        link_to=("luc-finance", "LUC — Finance"),
    )


# Output ------------------------------------------------------------------------------------


def dashboards() -> dict[str, dict[str, Any]]:
    """File name → dashboard, as written to grafana/dashboards/."""
    return {"finance.json": finance(), "operations.json": operations()}


def render(board: dict[str, Any]) -> str:
    """Deterministic JSON: sorted keys, two-space indent, one trailing newline."""
    return json.dumps(board, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grafana.build", description=__doc__)
    parser.add_argument(
        "--check", action="store_true", help="only compare; exit 1 if a file is out of date"
    )
    args = parser.parse_args(argv)
    stale = []
    for name, board in dashboards().items():
        path = DASHBOARDS_DIR / name
        text = render(board)
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        stale.append(name)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    if args.check and stale:
        print(f"out of date: {', '.join(stale)}; run python -m grafana.build", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""LUC's Grafana dashboards as code: ``python -m grafana.build`` writes grafana/dashboards/.

Built with Grafana's own SDK (``grafana-foundation-sdk``, typed builders for dashboards,
panels and Prometheus queries), rendered to sorted, indented JSON, so the committed files
are exactly what this module generates (a test checks it; ``--check`` does too, without
writing). The committed JSON is what Grafana provisions: Grafana never needs the SDK.

The SDK has no query type for Grafana's PostgreSQL datasource (it covers the Athena and
BigQuery SQL datasources, not ``grafana-postgresql-datasource``), so ``SqlQuery`` below is
one, written in the SDK's own terms (a ``Dataquery`` and its builder). Everything else,
layout included, is the SDK's.

Two audiences, two dashboards:
- ``finance.json``: spend today and this month, list (catalog) versus actual cost, spend
  over time by tier, agent and model, revenue (the customers' price), actual cost and
  margin over time, by plan and by customer, the top jobs, catalog versus
  provider-reported cost and the catalog's drift per model and provider, unpriced events,
  budgets;
- ``operations.json``: ingest rate and outcomes, ingest and HTTP latency, HTTP errors,
  scrape and database health.

Ledger series (``luc_cost_usd``, ``luc_actual_cost_usd``,
``luc_price_usd``, ``luc_tokens``, ``luc_unpriced_events``,
``luc_budget_*``) are read from PostgreSQL at scrape time: every replica reports the same
whole-ledger value. Queries therefore take ``max by (<the series'
own labels>)`` first, which folds replicas (and any target labels: instance, pod, job) into
one series, and only then sum. Process series (``luc_events_total`` and the histograms)
count what each process did and are summed directly. Money that must be exact to the cent
over long ranges (today, this month, per job) comes from the PostgreSQL datasource over
the rollup tables.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from grafana_foundation_sdk.builders import bargauge as bargauge_panel
from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dashboard_builders
from grafana_foundation_sdk.builders import prometheus
from grafana_foundation_sdk.builders import stat as stat_panel
from grafana_foundation_sdk.builders import table as table_panel
from grafana_foundation_sdk.builders import timeseries as timeseries_panel
from grafana_foundation_sdk.cog import builder as cog_builder
from grafana_foundation_sdk.cog import variants as cog_variants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as models
from grafana_foundation_sdk.models.prometheus import PromQueryFormat, QueryEditorMode

DASHBOARDS_DIR = Path(__file__).resolve().parent / "dashboards"

PROMETHEUS = models.DataSourceRef(type_val="prometheus", uid="luc-prometheus")
POSTGRES = models.DataSourceRef(type_val="grafana-postgresql-datasource", uid="luc-postgres")

# The labels that identify one ledger series; `max by` these folds replicas together.
COST_LABELS = "agent, model, provider, tier"
TOKEN_LABELS = f"{COST_LABELS}, class"
BUDGET_LABELS = "budget_id, scope, period"
SCRAPE_JOB = 'job="luc"'


def ledger(metric: str, labels: str = COST_LABELS) -> str:
    """A ledger series with replicas folded: every replica reports the same value."""
    return f"max by ({labels}) ({metric})"


# The ledger's totals are gauges (service/metrics/rollup_series.py): the net of the entries,
# which a re-rating or a re-pricing lowers. rate() and increase() would read each drop as a
# counter reset and add the whole total again; deriv() and delta() take it as it is, a
# correction that lowers the spend of the window it falls in.
def ledger_rate(metric: str, labels: str = COST_LABELS, window: str = "$__rate_interval") -> str:
    """Per second, of a ledger total: its slope over the window."""
    return f"max by ({labels}) (deriv({metric}[{window}]))"


def ledger_delta(metric: str, labels: str = COST_LABELS, window: str = "$__range") -> str:
    """What a ledger total gained over the window, net of the corrections booked in it:
    its value now less its value at the window's start, per series, a series born inside
    the window counting from zero (when Prometheus was scraping as the window began).
    delta() over the window saw nothing of a series' first value (a new agent's spend of
    the day was 0) and stretched the rest to the window's edges; a re-rating that moved
    events to another tier read as the old tier's whole total lost, the new tier's never
    gained."""
    now = ledger(metric, labels)
    then = ledger(f"{metric} offset {window}", labels)
    # Prometheus read the ledger as the window began (luc_database_up 1: during an outage
    # it is 0 and no ledger series is served, which said every series was born in the
    # window, the whole ledger): a series it has no value of then was born in the window.
    # Otherwise (Prometheus itself started within the window, or kept less) nothing tells
    # what the ledger held then: the window's first sample is the baseline, as delta()
    # takes it, an approximation (stretched to the window's edges, a series born later
    # counted from its first sample) that the panels' descriptions and README own.
    scraped_then = f"(max(luc_database_up offset {window}) == 1)"
    since_first_sample = f"max by ({labels}) (delta({metric}[{window}]))"
    return f"(({now} - {then}) or ({now} and on () {scraped_then}) or {since_first_sample})"


def margin_of(over: Callable[[str], str]) -> str:
    """The margin per ``COST_LABELS`` set, each series read through ``over`` (``ledger``,
    ``ledger_rate``, ``ledger_delta``): SPEC §11's price − actual cost wherever both are
    known. luc_margin_usd where the ledger exports it (label sets some of whose events do
    not know both: an unpriced model sold on an actual-basis plan and on a catalog-basis
    one), else luc_price_usd − luc_actual_cost_usd, which is then the margin (a label set
    with no price series, or no actual cost series, has none)."""
    price, actual = "luc_price_usd", "luc_actual_cost_usd"
    return f"({over('luc_margin_usd')} or ({over(price)} - {over(actual)}))"


def quantile(q: float, histogram: str, by: str = "le") -> str:
    return f"histogram_quantile({q}, sum by ({by}) (rate({histogram}_bucket[$__rate_interval])))"


# SQL over the rollups. Grafana's macros ($__timeFrom(), $__timeTo(), $__timeFilter(col))
# expand to quoted RFC 3339 instants; days are UTC days, as in the rollups.
FROM_DAY = "($__timeFrom()::timestamptz AT TIME ZONE 'UTC')::date"
TO_DAY = "($__timeTo()::timestamptz AT TIME ZONE 'UTC')::date"
TODAY = "(now() AT TIME ZONE 'UTC')::date"


# Targets -----------------------------------------------------------------------------------


class SqlQuery(cog_variants.Dataquery):
    """A raw SQL query of Grafana's PostgreSQL datasource (which the SDK has no type for)."""

    def __init__(self, raw_sql: str, *, time_series: bool) -> None:
        self.datasource = POSTGRES
        self.raw_sql = raw_sql
        self.time_series = time_series
        self.ref_id = ""

    def to_json(self) -> dict[str, object]:
        """The target as Grafana's PostgreSQL query editor saves it in code mode."""
        return {
            "datasource": self.datasource.to_json(),
            "editorMode": "code",
            "format": "time_series" if self.time_series else "table",
            "rawQuery": True,
            "rawSql": self.raw_sql,
            "refId": self.ref_id,
        }


class Sql(cog_builder.Builder[SqlQuery]):
    """``SqlQuery``'s builder, shaped like the SDK's query builders."""

    def __init__(self, raw_sql: str, *, time_series: bool = False) -> None:
        self._internal = SqlQuery(raw_sql.strip(), time_series=time_series)

    def ref_id(self, ref_id: str) -> Sql:
        self._internal.ref_id = ref_id
        return self

    def build(self) -> SqlQuery:
        return self._internal


Target = prometheus.Dataquery | Sql


def prom(expr: str, legend: str = "", *, instant: bool = False, table: bool = False) -> Target:
    query = (
        prometheus.Dataquery()
        .datasource(PROMETHEUS)
        .editor_mode(QueryEditorMode.CODE)
        .expr(expr)
        .legend_format(legend or "__auto")
    )
    query = query.instant() if instant else query.range()
    return query.format(PromQueryFormat.TABLE) if table else query


def sql(raw: str, *, time_series: bool = False) -> Target:
    return Sql(raw, time_series=time_series)


# Panels ------------------------------------------------------------------------------------

Panel = TypeVar(
    "Panel", stat_panel.Panel, timeseries_panel.Panel, bargauge_panel.Panel, table_panel.Panel
)
Thresholds = list[tuple[float | None, str]]


def _datasource(targets: list[Target]) -> models.DataSourceRef:
    sources = {}
    for target in targets:
        source = target.build().datasource
        assert source is not None  # each target names its datasource
        sources[source.uid] = source
    if len(sources) != 1:
        raise ValueError("a panel queries exactly one datasource")
    (source,) = sources.values()
    assert isinstance(source, models.DataSourceRef)
    return source


def panel(
    builder: Panel,
    title: str,
    description: str,
    targets: list[Target],
    *,
    width: int,
    height: int,
    unit: str = "short",
    decimals: int | None = None,
    thresholds: Thresholds | None = None,
    transformations: list[models.DataTransformerConfig] | None = None,
) -> Panel:
    """What every panel has: title, queries on one datasource, size, unit and colours."""
    builder = (
        builder.title(title)
        .description(description)
        .datasource(_datasource(targets))
        .targets([t.ref_id(chr(ord("A") + i)) for i, t in enumerate(targets)])
        .span(width)
        .height(height)
        .unit(unit)
        .thresholds(
            dashboard_builders.ThresholdsConfig()
            .mode(models.ThresholdsMode.ABSOLUTE)
            .steps([models.Threshold(value=v, color=c) for v, c in thresholds or [(None, "green")]])
        )
        .color_scheme(
            dashboard_builders.FieldColor().mode(
                models.FieldColorModeId.THRESHOLDS
                if thresholds
                else models.FieldColorModeId.PALETTE_CLASSIC
            )
        )
    )
    if decimals is not None:
        builder = builder.decimals(decimals)
    for transformation in transformations or []:
        builder = builder.with_transformation(transformation)
    return builder


def _reduce(calc: str = "lastNotNull") -> common_builders.ReduceDataOptions:
    return common_builders.ReduceDataOptions().calcs([calc]).fields("").values(False)


def stat(
    title: str,
    description: str,
    target: Target,
    *,
    unit: str = "currencyUSD",
    decimals: int | None = 2,
    width: int = 4,
    height: int = 4,
    text_mode: str = "value",
    thresholds: Thresholds | None = None,
) -> stat_panel.Panel:
    return (
        panel(
            stat_panel.Panel(),
            title,
            description,
            [target],
            width=width,
            height=height,
            unit=unit,
            decimals=decimals,
            thresholds=thresholds,
        )
        .color_mode(common.BigValueColorMode.VALUE if thresholds else common.BigValueColorMode.NONE)
        .graph_mode(common.BigValueGraphMode.NONE)
        .justify_mode(common.BigValueJustifyMode.AUTO)
        .orientation(common.VizOrientation.AUTO)
        .reduce_options(_reduce())
        .text_mode(common.BigValueTextMode(text_mode))
    )


def timeseries(
    title: str,
    description: str,
    targets: list[Target],
    *,
    unit: str,
    width: int = 12,
    height: int = 8,
    stacked: bool = False,
    bars: bool = False,
) -> timeseries_panel.Panel:
    return (
        panel(
            timeseries_panel.Panel(),
            title,
            description,
            targets,
            width=width,
            height=height,
            unit=unit,
        )
        .draw_style(common.GraphDrawStyle.BARS if bars else common.GraphDrawStyle.LINE)
        .fill_opacity(60 if bars else 10)
        .line_width(1)
        .show_points(common.VisibilityMode.NEVER)
        .span_nulls(False)
        .stacking(
            common_builders.StackingConfig()
            .group("A")
            .mode(common.StackingMode.NORMAL if stacked else common.StackingMode.NONE)
        )
        .legend(
            common_builders.VizLegendOptions()
            .calcs(["sum"] if bars else ["mean", "max"])
            .display_mode(common.LegendDisplayMode.TABLE)
            .placement(common.LegendPlacement.RIGHT)
            .show_legend(True)
        )
        .tooltip(
            common_builders.VizTooltipOptions()
            .mode(common.TooltipDisplayMode.MULTI)
            .sort(common.SortOrder.DESCENDING)
        )
    )


def bargauge(
    title: str,
    description: str,
    targets: list[Target],
    *,
    unit: str = "currencyUSD",
    width: int = 12,
    height: int = 8,
    thresholds: Thresholds | None = None,
    maximum: float | None = None,
) -> bargauge_panel.Panel:
    builder = (
        panel(
            bargauge_panel.Panel(),
            title,
            description,
            targets,
            width=width,
            height=height,
            unit=unit,
            decimals=2,
            thresholds=thresholds,
        )
        .display_mode(common.BarGaugeDisplayMode.GRADIENT)
        .min_viz_height(16)
        .orientation(common.VizOrientation.HORIZONTAL)
        .reduce_options(_reduce())
        .show_unfilled(True)
        .min(0)
    )
    return builder if maximum is None else builder.max(maximum)


def table(
    title: str,
    description: str,
    targets: list[Target],
    *,
    money_columns: Iterable[str] = (),
    width: int = 24,
    height: int = 9,
    transformations: list[models.DataTransformerConfig] | None = None,
    sort_by: str | None = None,
) -> table_panel.Panel:
    builder = (
        panel(
            table_panel.Panel(),
            title,
            description,
            targets,
            width=width,
            height=height,
            transformations=transformations,
        )
        .cell_height(common.TableCellHeight.SM)
        .show_header(True)
        .align(common.FieldTextAlignment.AUTO)
        .filterable(True)
    )
    for name in money_columns:
        builder = builder.override_by_name(
            name,
            [
                models.DynamicConfigValue(id_val="unit", value="currencyUSD"),
                models.DynamicConfigValue(id_val="decimals", value=4),
            ],
        )
    if sort_by:
        builder = builder.sort_by(
            [common_builders.TableSortByFieldState().display_name(sort_by).desc(True)]
        )
    return builder


def row(title: str) -> dashboard_builders.Row:
    return dashboard_builders.Row(title).collapsed(False)


Item = dashboard_builders.Row | cog_builder.Builder[models.Panel]


def dashboard(
    uid: str,
    title: str,
    description: str,
    panels: list[Item],
    *,
    time_from: str,
    refresh: str,
    link_to: tuple[str, str],
) -> dict[str, Any]:
    """The dashboard as JSON-ready data. The SDK lays the panels out left to right, a new
    line when one is full, a row always on a line of its own; panels are numbered in order."""
    board = (
        dashboard_builders.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["luc"])
        .readonly()
        .tooltip(models.DashboardCursorSync.CROSSHAIR)
        .timezone("utc")
        .time(time_from, "now")
        .refresh(refresh)
        .fiscal_year_start_month(0)
        .live_now(False)
        .link(
            dashboard_builders.DashboardLink(link_to[1])
            .type(models.DashboardLinkType.LINK)
            .icon("dashboard")
            .url(f"/d/{link_to[0]}")
            .tags([])
            .as_dropdown(False)
            .target_blank(False)
        )
    )
    for item in panels:
        if isinstance(item, dashboard_builders.Row):
            board = board.with_row(item)
        else:
            board = board.with_panel(item)
    built = board.build()
    for number, p in enumerate(built.panels or [], start=1):
        p.id_val = number
    document: dict[str, Any] = json.loads(json.dumps(built, cls=JSONEncoder))
    return document


# Finance -----------------------------------------------------------------------------------

LEDGER_NOTE = "From the ledger (read by every replica at scrape time; replicas folded by max)."
RANGE_NOTE = (
    "A range that begins before Prometheus's first sample of the ledger counts from that "
    "sample, approximately; the ledger panels below (PostgreSQL) are exact for any range."
)
PER_HOUR = "* 3600"
USD_PER_HOUR = "suffix: USD/h"
"""The unit of a rate of spend: Grafana's currencyUSD wrote "$0.50", which read as an
amount, not as one per hour."""
BUDGET_STEPS: list[tuple[float | None, str]] = [(None, "green"), (0.8, "orange"), (1, "red")]


def finance() -> dict[str, Any]:
    cost = "luc_cost_usd"
    actual = "luc_actual_cost_usd"
    provider_cost = ledger("luc_provider_cost_usd")
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
            "Change of the ledger's cost over the dashboard's time range, as Prometheus saw "
            "it: the usage booked, less what corrections (re-rating) took back. "
            f"{LEDGER_NOTE} {RANGE_NOTE}",
            prom(f"sum({ledger_delta(cost)})", instant=True),
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
        # List (catalog) and actual cost side by side: the actual cost is the provider's
        # reported cost of each event where it reported one, else the catalog's.
        timeseries(
            "Spend rate: list vs actual",
            "Per hour, the catalog-priced (list) cost beside the actual cost: each event's "
            f"provider-reported cost where reported, else its catalog cost. {LEDGER_NOTE}",
            [
                prom(f"sum({ledger_rate(cost)}) {PER_HOUR}", "list (catalog)"),
                prom(f"sum({ledger_rate(actual)}) {PER_HOUR}", "actual"),
            ],
            unit=USD_PER_HOUR,
            width=8,
        ),
        timeseries(
            "Daily list vs actual cost (ledger)",
            "Per UTC day, from the agent × day rollup: exact, and complete even for days "
            "before Prometheus started. GET /v1/usage?group_by=day has the same figures.",
            [
                sql(
                    f"""
SELECT (day::timestamp AT TIME ZONE 'UTC') AS time, sum(cost_usd) AS "list (catalog)",
       sum(actual_cost_usd) AS "actual"
FROM rollup_agent_days
WHERE day BETWEEN {FROM_DAY} AND {TO_DAY}
GROUP BY day
ORDER BY 1
""",
                    time_series=True,
                )
            ],
            unit="currencyUSD",
            width=8,
        ),
        bargauge(
            "List vs actual cost by model",
            "Everything the ledger holds per model: catalog-priced (list) cost beside the "
            "actual cost (an unpriced model shows only its reported cost, its list price being "
            f"unknown). {LEDGER_NOTE}",
            [
                prom(f"sum by (model) ({catalog_cost})", "{{model}} list", instant=True),
                prom(f"sum by (model) ({ledger(actual)})", "{{model}} actual", instant=True),
            ],
            width=8,
        ),
        timeseries(
            "Spend rate by tier",
            f"Catalog-priced spend per hour, by model tier. {LEDGER_NOTE}",
            [prom(f"sum by (tier) ({ledger_rate(cost)}) {PER_HOUR}", "{{tier}}")],
            unit=USD_PER_HOUR,
            stacked=True,
        ),
        timeseries(
            "Spend rate by agent",
            f"Catalog-priced spend per hour, by agent. {LEDGER_NOTE}",
            [prom(f"sum by (agent) ({ledger_rate(cost)}) {PER_HOUR}", "{{agent}}")],
            unit=USD_PER_HOUR,
            stacked=True,
        ),
        timeseries(
            "Spend rate by model",
            f"Catalog-priced spend per hour, by model. {LEDGER_NOTE}",
            [prom(f"sum by (model) ({ledger_rate(cost)}) {PER_HOUR}", "{{model}}")],
            unit=USD_PER_HOUR,
            stacked=True,
        ),
        bargauge(
            "Spend in the selected range by model",
            "Change of each model's catalog-priced cost over the time range, net of "
            f"re-rating. {LEDGER_NOTE} {RANGE_NOTE}",
            [prom(f"sum by (model) ({ledger_delta(cost)})", "{{model}}", instant=True)],
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
            "Catalog-priced cost per UTC day and model, from the model × day rollup (a model "
            "no catalog version prices has no cost that day: unknown, not zero).",
            [
                sql(
                    f"""
SELECT (day::timestamp AT TIME ZONE 'UTC') AS time, model AS metric,
       CASE WHEN unpriced_events = events AND events > 0 THEN NULL ELSE cost_usd END AS value
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
                    f"sum by (class) ({ledger_rate('luc_tokens', TOKEN_LABELS)})",
                    "{{class}}",
                )
            ],
            unit="short",
            width=24,
        ),
        *revenue_panels(),
        row("Jobs"),
        table(
            "Top jobs by cost",
            "Jobs with events in the time range, by their whole catalog-priced cost, from the "
            "job rollup (jobs are never a Prometheus label). GET /v1/jobs/{job_id} has the "
            "breakdown.",
            [
                sql("""
SELECT job_id AS "job", cost_usd AS "cost", actual_cost_usd AS "actual cost",
       provider_cost_usd AS "provider-reported",
       events, unpriced_events AS "unpriced events",
       input_tokens AS "input tokens", output_tokens AS "output tokens",
       first_event_at AS "first event", last_event_at AS "last event"
FROM rollup_jobs
WHERE $__timeFilter(last_event_at)
ORDER BY cost_usd DESC, job_id
LIMIT 25
""")
            ],
            money_columns=("cost", "actual cost", "provider-reported"),
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
            "Provider-reported cost counts only the events whose provider reported one; the "
            "catalog cost of a model no catalog version priced is empty (unknown, not zero).",
            [
                sql(f"""
SELECT model,
       CASE WHEN sum(unpriced_events) = sum(events) AND sum(events) > 0 THEN NULL
            ELSE sum(cost_usd) END AS "catalog",
       sum(provider_cost_usd) AS "provider-reported",
       sum(events) AS events, sum(unpriced_events) AS "unpriced events"
FROM rollup_model_days
WHERE day BETWEEN {FROM_DAY} AND {TO_DAY}
GROUP BY model
ORDER BY 2 DESC NULLS LAST, 1
""")
            ],
            money_columns=("catalog", "provider-reported"),
            width=12,
            height=8,
        ),
        stat(
            "Provider-reported minus catalog",
            "Over the UTC days of the time range, the events whose provider reported a cost "
            "and the catalog priced: what the providers billed less the catalog's cost of "
            "the same events, positive when they charged more (GET /v1/reconciliation's "
            "difference_usd). From the reconciliation rollup: the ledger's series hold the "
            "catalog cost of every event, reported or not, which read as a gap.",
            sql(f"""
SELECT COALESCE(sum(provider_cost_usd) - sum(cost_usd), 0) AS "provider − catalog"
FROM rollup_reconciliation_days
WHERE day BETWEEN {FROM_DAY} AND {TO_DAY}
"""),
            width=6,
            height=6,
            decimals=4,
        ),
        stat(
            "Provider-reported / catalog",
            "The same events as a ratio: 100 % when the catalog matches the provider's bill.",
            sql(f"""
SELECT sum(provider_cost_usd) / NULLIF(sum(cost_usd), 0) AS "provider / catalog"
FROM rollup_reconciliation_days
WHERE day BETWEEN {FROM_DAY} AND {TO_DAY}
"""),
            unit="percentunit",
            width=6,
            height=6,
        ),
        bargauge(
            "Unpriced events by model",
            "Events whose model no catalog version prices. Add the model to a catalog "
            f"version: the events it prices are priced at once. {LEDGER_NOTE}",
            [prom(ledger("luc_unpriced_events", "model"), "{{model}}", instant=True)],
            unit="short",
            height=6,
            thresholds=[(None, "orange")],
        ),
        drift_table(),
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
                models.DataTransformerConfig(id_val="merge", options={}),
                models.DataTransformerConfig(
                    id_val="organize",
                    options={
                        "excludeByName": {"Time": True},
                        "renameByName": {"Value #A": "limit (USD)", "Value #B": "spent ratio"},
                    },
                ),
            ],
        ),
        *credit_panels(),
    ]
    return dashboard(
        "luc-finance",
        "LUC — Finance",
        "What the LLM calls cost and what the customers pay: spend by tier, agent, model and "
        "job, revenue and margin by plan and customer, reconciliation with provider bills, "
        "unpriced usage and budgets.",
        panels,
        time_from="now-7d",
        refresh="5m",
        link_to=("luc-operations", "LUC — Operations"),
    )


def credit_panels() -> list[Item]:
    """Prepaid credits across customers: no customer label on /metrics (unbounded); a
    customer's balance is GET /v1/customers/{id}/credits."""
    return [
        row("Prepaid credits"),
        stat(
            "Prepaid credits left",
            "What the customers' grants that have not expired hold now, all customers "
            f"together. Credits burn down as usage is recorded. {LEDGER_NOTE}",
            prom(ledger("luc_customer_credit_balance_usd", ""), instant=True),
            width=6,
            height=6,
        ),
        bargauge(
            "Customers by credit state",
            "Customers holding prepaid credits: exhausted (balance zero: with credit_stop "
            "their calls are refused), low (below their low_balance_usd), ok. Their alerts "
            f"are in GET /v1/alerts?type=customer.credits_low. {LEDGER_NOTE}",
            [
                prom(
                    ledger("luc_customers_by_credit_state", "state"),
                    "{{state}}",
                    instant=True,
                )
            ],
            unit="short",
            width=18,
            height=6,
            thresholds=[(None, "blue")],
        ),
    ]


# Revenue: what the customers pay (their rate plans' price), beside what it cost. Customers
# are never a Prometheus label (unbounded, as jobs); per customer and per plan the money
# comes from the customer × month rollup. A customer's tier is its rate plan now; usage of
# jobs without a customer, and customers without a plan, show as "(no plan)" (LUC_DEFAULT_PLAN
# prices them when set, which a dashboard cannot know).
FROM_MONTH = f"date_trunc('month', {FROM_DAY})::date"
CUSTOMER_MONTHS = """
FROM rollup_customer_months AS r
LEFT JOIN customers AS c ON c.id = r.customer_id
"""


def revenue_panels() -> list[Item]:
    price = "luc_price_usd"
    actual = "luc_actual_cost_usd"
    return [
        row("Revenue and margin"),
        stat(
            "Revenue this month (UTC)",
            "What the customers pay for this UTC month's usage, each event at its customer's "
            "rate plan (else at its catalog cost), from the customer × month rollup. "
            "GET /v1/customers/{id} has each customer's.",
            sql(f"""
SELECT COALESCE(sum(price_usd), 0) AS "revenue this month"
FROM rollup_customer_months
WHERE month = date_trunc('month', {TODAY})::date
"""),
            width=6,
        ),
        stat(
            "Margin this month (UTC)",
            "Revenue minus actual cost (the provider's reported cost where reported, else the "
            "catalog's) of this UTC month, over the events whose price and actual cost are "
            "both known, from the customer × month rollup.",
            sql(f"""
SELECT COALESCE(sum(margin_usd), 0) AS "margin this month"
FROM rollup_customer_months
WHERE month = date_trunc('month', {TODAY})::date
"""),
            width=6,
        ),
        stat(
            "Revenue in the selected range",
            "Change of what the customers pay over the dashboard's time range, net of "
            f"re-rating and re-pricing. {LEDGER_NOTE} {RANGE_NOTE}",
            prom(f"sum({ledger_delta(price)})", instant=True),
            width=6,
        ),
        stat(
            "Margin in the selected range",
            "Change of revenue minus change of actual cost over the time range, of the usage "
            "that knows both (negative when usage was sold below its cost). "
            f"{LEDGER_NOTE} {RANGE_NOTE}",
            prom(f"sum({margin_of(ledger_delta)})", instant=True),
            width=6,
        ),
        timeseries(
            "Revenue, actual cost and margin rate",
            "Per hour: what the customers pay, what the calls actually cost, and the "
            f"difference. {LEDGER_NOTE}",
            [
                prom(f"sum({ledger_rate(price)}) {PER_HOUR}", "revenue (price)"),
                prom(f"sum({ledger_rate(actual)}) {PER_HOUR}", "actual cost"),
                prom(f"sum({margin_of(ledger_rate)}) {PER_HOUR}", "margin"),
            ],
            unit=USD_PER_HOUR,
            width=16,
        ),
        bargauge(
            "Margin by model",
            "Everything the ledger holds per model: price minus actual cost of the usage that "
            "knows both (luc_margin_usd where the ledger exports it, else luc_price_usd minus "
            f"luc_actual_cost_usd). {LEDGER_NOTE}",
            [prom(f"sum by (model) ({margin_of(ledger)})", "{{model}}", instant=True)],
            width=8,
        ),
        timeseries(
            "Monthly revenue by plan (ledger)",
            "Per UTC month, what the customers of each rate plan pay (each customer under its "
            "plan now; no plan: jobs without a customer, customers without a plan), from the "
            "customer × month rollup.",
            [
                sql(
                    f"""
SELECT (r.month::timestamp AT TIME ZONE 'UTC') AS time,
       COALESCE(c.plan_id, '(no plan)') AS metric, sum(r.price_usd) AS value
{CUSTOMER_MONTHS.strip()}
WHERE r.month BETWEEN {FROM_MONTH} AND {TO_DAY}
GROUP BY 1, 2
ORDER BY 1, 2
""",
                    time_series=True,
                )
            ],
            unit="currencyUSD",
            stacked=True,
            bars=True,
        ),
        table(
            "Revenue, actual cost and margin by plan (ledger)",
            "Per rate plan over the UTC months of the time range: the tier a customer is "
            "billed in is its plan (now); from the customer × month rollup.",
            [
                sql(f"""
SELECT COALESCE(c.plan_id, '(no plan)') AS "plan", count(DISTINCT r.customer_id) AS customers,
       sum(r.price_usd) AS "revenue", sum(r.actual_cost_usd) AS "actual cost",
       sum(r.margin_usd) AS "margin", sum(r.events) AS events
{CUSTOMER_MONTHS.strip()}
WHERE r.month BETWEEN {FROM_MONTH} AND {TO_DAY}
GROUP BY 1
ORDER BY "margin" DESC, 1
""")
            ],
            money_columns=("revenue", "actual cost", "margin"),
            width=12,
            height=8,
        ),
        table(
            "Top customers by margin",
            "Customers by price minus actual cost over the UTC months of the time range, from "
            "the customer × month rollup (usage of jobs without a customer as one row). "
            "GET /v1/customers/{id} has one customer's month to date; GET /v1/usage?group_by="
            "customer any range.",
            [
                sql(f"""
SELECT COALESCE(r.customer_id, '(no customer)') AS "customer", c.name AS "name",
       COALESCE(c.plan_id, '(no plan)') AS "plan",
       sum(r.price_usd) AS "revenue", sum(r.actual_cost_usd) AS "actual cost",
       sum(r.margin_usd) AS "margin", sum(r.events) AS events
{CUSTOMER_MONTHS.strip()}
WHERE r.month BETWEEN {FROM_MONTH} AND {TO_DAY}
GROUP BY r.customer_id, c.name, c.plan_id
ORDER BY "margin" DESC, 1
LIMIT 25
""")
            ],
            money_columns=("revenue", "actual cost", "margin"),
            height=8,
        ),
    ]


DRIFT_LABELS = "model, provider"


def drift_table() -> table_panel.Panel:
    """Reconciliation per model and provider: the drift ratio, its events and the alert's
    rule (beyond the tolerance over at least 20 events)."""
    return table(
        "Catalog drift by model and provider",
        "(provider-reported − catalog) / catalog cost of the events whose provider reported a "
        "cost and the catalog priced, over the current and previous UTC day. A model drifts "
        "beyond LUC_RECONCILIATION_TOLERANCE over at least 20 reported events (alert "
        "LucCatalogDrift); GET /v1/reconciliation?group_by=model,provider says why. "
        f"{LEDGER_NOTE}",
        [
            prom(ledger("luc_catalog_drift_ratio", DRIFT_LABELS), instant=True, table=True),
            prom(ledger("luc_catalog_drift_events", DRIFT_LABELS), instant=True, table=True),
        ],
        width=12,
        height=6,
        transformations=[
            models.DataTransformerConfig(id_val="merge", options={}),
            models.DataTransformerConfig(
                id_val="organize",
                options={
                    "excludeByName": {"Time": True},
                    "renameByName": {"Value #A": "drift ratio", "Value #B": "events"},
                },
            ),
        ],
        sort_by="drift ratio",
    ).override_by_name(
        "drift ratio",
        [
            models.DynamicConfigValue(id_val="unit", value="percentunit"),
            models.DynamicConfigValue(id_val="decimals", value=2),
        ],
    )


# Operations --------------------------------------------------------------------------------

PROCESS_NOTE = "Counted by each process and summed over replicas."
HTTP = "luc_http_request_duration_seconds"


def operations() -> dict[str, Any]:
    events = "luc_events_total"
    panels: list[Item] = [
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
            "Alert webhooks dead",
            "Budget and credit alerts whose webhook delivery died (retry window spent, or the "
            "receiver answered 410): the receiver never heard of them. GET "
            "/v1/alerts?delivery=dead lists them; POST /v1/alerts/{id}/redeliver sends one "
            "again. LucWebhookDeliveryDead fires when one dies.",
            prom(ledger('luc_webhook_deliveries{state="dead"}', "state"), instant=True),
            unit="short",
            decimals=0,
            thresholds=[(None, "green"), (1, "orange")],
        ),
        stat(
            "Oldest alert waiting for its webhook",
            "How long the oldest alert whose webhook delivery is pending has waited: its "
            "receiver keeps failing, or answers slowly (LucWebhookDeliveryStuck fires past "
            "15 minutes). GET /v1/alerts?delivery=pending lists them.",
            prom(ledger("luc_webhook_oldest_pending_seconds", ""), instant=True),
            unit="s",
            decimals=0,
            thresholds=[(None, "green"), (900, "orange")],
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
            "Time to price and commit one ingest transaction: a batch request, or single "
            "events and proxied calls committed together (a single event's wait for its "
            f"group is in the HTTP latency). {PROCESS_NOTE}",
            [
                prom(quantile(0.5, "luc_ingest_duration_seconds"), "p50"),
                prom(quantile(0.99, "luc_ingest_duration_seconds"), "p99"),
            ],
            unit="s",
        ),
        timeseries(
            "Events per ingest transaction",
            "How many events each ingest transaction committed: a batch request's, or the "
            f"single events and proxied calls grouped together. {PROCESS_NOTE}",
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
                    # increase() extrapolates to the range's edges (139.64 of 140 events):
                    # counts are whole.
                    f"round(sum by (outcome) (increase({events}[$__range])))",
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

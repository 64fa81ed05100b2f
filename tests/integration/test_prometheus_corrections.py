"""A real Prometheus scrapes LUC across a re-rating to a cheaper catalog version: the
finance dashboard shows the correction as what it is, spend taken back, and no counter
resets.

Before, the ledger's totals were counters: the re-rating lowered ``luc_cost_usd_total``,
Prometheus read the drop as a reset, and ``increase()`` over the range added the whole
total again (the dashboard's spend in range jumped by everything the ledger holds). Now
they are gauges of the ledger's net and the dashboard reads them with ``deriv()`` and
as the value now less the value at the range's start (``offset``).

Money by hand: openai/gpt-5.1 at 3 in / 12 out per 1M tokens (AIMS, version 1), two calls
of 100,000 input and 10,000 output tokens at 0.42 each; version 2 (effective 2026-10-01)
sells output at 6: 0.36 each, so the re-rating takes back 2 × 0.06 = 0.12.
"""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from tests.support.events import wire_event
from tests.support.prometheus import Prometheus, grafana_promql, panel_queries, require
from tests.support.servers import ServerProcess
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow

D = Decimal
GPT = "openai/gpt-5.1"
TOTAL = "sum(max by (agent, model, provider, tier) (luc_cost_usd))"
# Prometheus extrapolates delta() and deriv() to the ends of their window (by at most half
# a scrape interval at the start of the series): a range's change is the exact change
# scaled up by that much, never down, and never of the other sign.
EXTRAPOLATION = D("1.5")


def panel(title: str) -> str:
    """The PromQL of the finance panel with this title, as Grafana sends it."""
    (expr,) = [e for where, e in panel_queries("luc-prometheus") if f" / {title} / " in where]
    return grafana_promql(expr)


def test_a_re_rating_is_spend_taken_back_on_prometheus_not_a_counter_reset(
    database_url: str, tmp_path: Path
) -> None:
    binary = require("prometheus")
    server = ServerProcess(database_url, tmp_path / "luc.log")
    prometheus: Prometheus | None = None
    try:
        server.start()
        with httpx.Client(base_url=server.base_url, timeout=30) as http:
            call = {"occurred_at": "2026-10-10T12:00:00Z", "agent": "ORACLE", "model": GPT}
            tokens = {"input_tokens": 100_000, "output_tokens": 10_000}
            events = [
                wire_event("g1", **call, **tokens),
                wire_event("g2", **call, **tokens, provider="vertex"),
            ]
            answer = http.post("/v1/events/batch", json={"events": events}).json()
            assert answer["accepted"] == 2, answer

            prometheus = Prometheus(binary, tmp_path, f"127.0.0.1:{server.port}", key=None)
            scraped = prometheus

            def scraped_since(since: float) -> bool:
                """Prometheus holds a scrape from 2 s after ``since``: LUC answered it with
                the ledger as committed by then."""
                newest = scraped.query("max(timestamp(luc_database_up))")
                return bool(newest) and float(newest[0]["value"][1]) > since + 2

            started = time.time()
            wait_for(lambda: scraped_since(started), 30, "scrapes of the usage", 0.2)
            before = time.time()
            version = {
                "effective_from": "2026-10-01T00:00:00Z",
                "parent": 1,
                "models": [
                    {"id": GPT, "name": "GPT-5.1", "tier": "standard", "input": "3", "output": "6"}
                ],
            }
            assert http.post("/v1/catalog/versions", json=version).status_code == 201
            rerate = http.post("/v1/catalog/rerate", json={"since": "2026-10-01T00:00:00Z"})
            assert rerate.json()["events_changed"] == 2, rerate.text
            corrected = time.time()
            wait_for(lambda: scraped_since(corrected), 30, "scrapes of the correction", 0.2)

        # The finance dashboard over the range (the last hour: every sample): the spend
        # and revenue of the range are the correction, -0.12 (no usage came in it), and
        # the margin did not move (no plan: the price is the catalog cost).
        for title in ("Spend in the selected range", "Revenue in the selected range"):
            change = D(prometheus.value(panel(title)))
            assert D("-0.12") * EXTRAPOLATION < change <= D("-0.12") + D("1e-12"), title
        assert abs(D(prometheus.value(panel("Margin in the selected range")))) < D("1e-12")
        # Per hour, over the last 5 minutes: a correction, below zero, never a spike.
        rates = prometheus.query(panel("Spend rate by model"))
        assert [r["metric"]["model"] for r in rates] == [GPT]
        assert D(rates[0]["value"][1]) < 0
        # No counter LUC serves went down: increase() and rate() over any of them hold.
        names = httpx.get(f"{prometheus.url}/api/v1/label/__name__/values").json()["data"]
        counters = [n for n in names if n.startswith("luc_") and n.endswith("_total")]
        assert "luc_events_total" in counters
        assert [n for n in counters if prometheus.query(f"resets({n}[1h]) > 0")] == []
        # The ledger's net, before and after, as exact as the float is.
        assert abs(D(prometheus.value(TOTAL, at=before)) - D("0.84")) < D("1e-12")
        assert abs(D(prometheus.value(TOTAL)) - D("0.72")) < D("1e-12")

        # A range that began while Prometheus scraped: usage of a series born in it counts
        # whole. At version 2 a call is 100,000 × 3 + 10,000 × 6 = 0.36; one for ORACLE on
        # openrouter (a series before) and one for an agent new to the ledger: 0.72. With
        # delta() the new agent's series added nothing (its first value is its baseline).
        window_start = time.time()
        time.sleep(2)  # samples of the range's start on each side of it
        with httpx.Client(base_url=server.base_url, timeout=30) as http:
            later = {"occurred_at": "2026-10-11T12:00:00Z", "model": GPT, **tokens}
            events = [
                wire_event("g3", **later, agent="ORACLE"),
                wire_event("g4", **later, agent="NEWCOMER"),
            ]
            answer = http.post("/v1/events/batch", json={"events": events}).json()
            assert answer["accepted"] == 2, answer
        added = time.time()
        wait_for(lambda: scraped_since(added), 30, "scrapes of the new usage", 0.2)
        (raw,) = [
            e
            for where, e in panel_queries("luc-prometheus")
            if " / Spend in the selected range / " in where
        ]
        window = f"{int(time.time() - window_start) + 1}s"
        spend = D(prometheus.value(raw.replace("$__range", window)))
        assert abs(spend - D("0.72")) < D("1e-12"), spend
    finally:
        if prometheus is not None:
            prometheus.stop()
        server.stop()

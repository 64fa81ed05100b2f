"""The ledger's series, written straight from the snapshot's rows
(``LedgerCollector.text``), are what ``prometheus_client.generate_latest`` writes for the
same rows built as prometheus-client families (``LedgerCollector.collect``), byte for
byte: label values the format must escape, money with more digits than a float holds,
empty families, and a ledger that could not be read."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from service.metrics.instruments import Metrics
from service.metrics.rollup_series import LedgerCollector, LedgerSnapshot
from service.tokens import TOKEN_CLASSES
from tests.support.paths import PROJECT_ROOT


def _usage(
    agent: str, model: str, provider: str, tier: str, money: tuple[str, str, str, str], events: int
) -> dict[str, Any]:
    cost, provider_cost, actual, price = (Decimal(m) for m in money)
    row: dict[str, Any] = {
        "agent": agent,
        "model": model,
        "provider": provider,
        "tier": tier,
        "cost_usd": cost,
        "provider_cost_usd": provider_cost,
        "actual_cost_usd": actual,
        "price_usd": price,
        "events": events,
        "unpriced_events": events if tier == "unpriced" else 0,
        "unknown_price_events": events if tier == "unpriced" else 0,
        # Unpriced, and no cost reported: the actual cost is unknown too.
        "unknown_actual_events": events if tier == "unpriced" and not provider_cost else 0,
        # No plan: a price is known where the cost is; the margin with both.
        "margin_usd": price - actual if tier != "unpriced" else Decimal(0),
        "unknown_margin_events": events if tier == "unpriced" else 0,
    }
    for n, token_class in enumerate(TOKEN_CLASSES):
        row[token_class.name] = Decimal(7**n * events + n)
    return row


def _drift(model: str, provider: str, cost: str, reported: str, events: int) -> dict[str, Any]:
    return {
        "model": model,
        "provider": provider,
        "events": events + 1,
        "reported_events": events,
        "unpriced_reported_events": 0,
        "cost_usd": Decimal(cost),
        "provider_cost_usd": Decimal(reported),
        "unpriced_provider_cost_usd": Decimal("0"),
    }


MANY_DIGITS = "123456789012.123456789012345678901"  # more than a float (and Decimal's 28) holds


def _awkward() -> LedgerSnapshot:
    return LedgerSnapshot(
        usage=[
            _usage(
                'say "hi"',
                "openai/gpt-5.1",
                "openrouter",
                "standard",
                ("0.42", "0.4", "0.4", "0.50"),
                3,
            ),
            _usage(
                "back\\slash",
                "line\nbreak",
                'pro"vider\\',
                "fast",
                (MANY_DIGITS, "0", MANY_DIGITS, "0.000000000000000000000000000001"),
                1,
            ),
            _usage(
                "Ünïcødé 日本 🙂",
                "mistralai/mistral-large-2512",
                "openrouter",
                "unpriced",
                ("0", "0.123456789", "0.123456789", "0"),
                2,
            ),
            # The same agent and model at another tier: tokens of its own, as its cost.
            _usage(
                'say "hi"',
                "openai/gpt-5.1",
                "openrouter",
                "batch",
                ("1e22", "0", "1e22", "1e-7"),
                10**9,
            ),
            _usage('a\\"\n', "Ünïcødé", "p", "unpriced", ("0", "0", "0", "0"), 0),
        ],
        catalog={"id": 12, "label": 'v"2\\\nété'},
        budgets=[
            {
                "id": 7,
                "scope": 'agent:say "hi"\n',
                "period": "month",
                "spent_usd": Decimal(MANY_DIGITS),
                "limit_usd": Decimal("0.000000000000000003"),
            },
            {
                "id": 8,
                "scope": "agent:Ünïcødé\\",
                "period": "day",
                "spent_usd": Decimal("0"),
                "limit_usd": Decimal("1234567.891"),
            },
        ],
        drift=[
            _drift("line\nbreak", 'pro"vider\\', "3", "3.3", 30),
            _drift("Ünïcødé", "openrouter", "0", "1", 4),  # no ratio: catalog cost 0
            _drift("openai/gpt-5.1", "openai", MANY_DIGITS, "1", 0),
        ],
        tolerance=Decimal("0.0200000000000000000001"),
        credits={"balance_usd": Decimal(MANY_DIGITS), "exhausted": 1, "low": 0, "ok": 3},
        database_up=True,
    )


def _as_families(snapshot: LedgerSnapshot) -> bytes:
    """What the library writes for the ledger's rows built as its families."""
    collector = LedgerCollector()
    collector.update(snapshot)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return generate_latest(registry)


def test_the_ledger_s_text_is_what_prometheus_client_writes_for_its_families() -> None:
    snapshot = _awkward()
    text = LedgerCollector.text(snapshot).encode("utf-8")
    assert text == _as_families(snapshot)
    lines = text.decode().splitlines()
    # Hand-checked: escaped label values in name order, money rounded only by the float.
    assert (
        'luc_cost_usd{agent="back\\\\slash",model="line\\nbreak",provider="pro\\"vider\\\\",'
        'tier="fast"} 1.2345678901212346e+11'
    ) in lines
    assert (
        'luc_budget_limit_usd{budget_id="8",period="day",scope="agent:Ünïcødé\\\\"} 1.234567891e+06'
    ) in lines
    for tier, tokens in (("standard", "3.0"), ("batch", "1e+09")):
        assert (
            'luc_tokens{agent="say \\"hi\\"",class="input",model="openai/gpt-5.1",'
            f'provider="openrouter",tier="{tier}"}} {tokens}'
        ) in lines
    assert 'luc_catalog_info{label="v\\"2\\\\\\nété",version="12"} 1.0' in lines
    assert 'luc_unpriced_events{model="mistralai/mistral-large-2512"} 2.0' in lines
    assert not any(line.startswith('luc_unpriced_events{model="Ünïcødé"}') for line in lines)
    assert 'luc_catalog_drift_ratio{model="line\\nbreak",provider="pro\\"vider\\\\"} 0.1' in lines
    assert "luc_reconciliation_tolerance 0.02" in lines


def test_empty_and_unreadable_ledgers_are_written_alike() -> None:
    empty = LedgerSnapshot(database_up=True)
    assert LedgerCollector.text(empty).encode() == _as_families(empty)
    assert "# TYPE luc_cost_usd gauge" in LedgerCollector.text(empty)  # headers, no samples
    down = LedgerSnapshot(database_up=False)
    assert LedgerCollector.text(down) == (
        "# HELP luc_database_up 1 when the last scrape could read the ledger from PostgreSQL\n"
        "# TYPE luc_database_up gauge\n"
        "luc_database_up 0.0\n"
    )
    assert LedgerCollector.text(down).encode() == _as_families(down)


def test_a_scrape_is_the_ledger_s_text_then_this_process_s_series() -> None:
    metrics = Metrics()
    metrics.events.labels("accepted").inc(2)
    metrics.http_seconds.labels("/metrics", "GET", "200").observe(0.004)
    snapshot = _awkward()
    assert metrics.render(snapshot) == generate_latest(metrics.registry)
    assert metrics.registry.get_sample_value("luc_events_total", {"outcome": "accepted"}) == 2.0


def test_with_workers_a_scrape_is_their_series_then_the_ledger_s(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One worker of `luc serve --workers N` leaves its series in the multiprocess folder.
    script = (
        "from service.metrics.instruments import Metrics\n"
        "Metrics().events.labels('accepted').inc(4)\n"
    )
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PATH": ""}
    subprocess.run([sys.executable, "-c", script], env=env, cwd=PROJECT_ROOT, check=True)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    metrics = Metrics()  # as a worker started with the variable set sees it
    assert metrics.workers is not None
    snapshot = _awkward()
    registry = CollectorRegistry(auto_describe=False)
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # untyped in the library
    registry.register(metrics.ledger)
    text = metrics.render(snapshot)
    assert text == generate_latest(registry)
    assert b'\nluc_events_total{outcome="accepted"} 4.0\n' in text


def test_drifting_is_decided_on_the_exact_figures_as_rest_decides_it() -> None:
    # 20 events, catalog 5, reported 5.0500000000000000001: a ratio of
    # 0.01000000000000000002, over the tolerance of 0.01 by 2e-20. As floats both are 0.01,
    # and the alert compared them: no drift, where GET /v1/reconciliation said drift.
    snapshot = LedgerSnapshot(
        database_up=True,
        drift=[
            _drift("edge", "over", "5", "5.0500000000000000001", 20),
            _drift("edge", "at", "5", "5.05", 20),  # at the tolerance: no drift
            _drift("edge", "few", "5", "6", 19),  # too few events to drift
        ],
        tolerance=Decimal("0.01"),
    )
    lines = LedgerCollector.text(snapshot).splitlines()
    assert 'luc_catalog_drifting{model="edge",provider="over"} 1.0' in lines
    assert 'luc_catalog_drifting{model="edge",provider="at"} 0.0' in lines
    assert 'luc_catalog_drifting{model="edge",provider="few"} 0.0' in lines
    assert 'luc_catalog_drift_ratio{model="edge",provider="over"} 0.01' in lines

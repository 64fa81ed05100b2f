"""/metrics' text (``metrics.exposition.generate_text``) is what prometheus-client's own
``generate_latest`` writes, byte for byte: for the service's registry with awkward label
values and numbers, for every worker's series summed from multiprocess files, and for any
family the library can describe (names it must escape, timestamps, every type)."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from service.metrics.exposition import generate_text
from service.metrics.instruments import Metrics
from service.metrics.rollup_series import LedgerSnapshot
from service.tokens import TOKEN_CLASSES
from tests.support.paths import PROJECT_ROOT


def _usage(agent: str, model: str, tier: str, cost: str, price: str, events: int) -> dict[str, Any]:
    row: dict[str, Any] = {
        "agent": agent,
        "model": model,
        "provider": "openrouter",
        "tier": tier,
        "cost_usd": Decimal(cost),
        "provider_cost_usd": Decimal("0"),
        "actual_cost_usd": Decimal(cost),
        "price_usd": Decimal(price),
        "events": events,
        "unpriced_events": events if tier == "unpriced" else 0,
        # No plan: an unpriced event's price is unknown too.
        "unknown_price_events": events if tier == "unpriced" else 0,
        # ...and its actual cost, as none was reported.
        "unknown_actual_events": events if tier == "unpriced" else 0,
        "margin_usd": Decimal(price) - Decimal(cost) if tier != "unpriced" else Decimal(0),
        "unknown_margin_events": events if tier == "unpriced" else 0,
    }
    for n, token_class in enumerate(TOKEN_CLASSES):
        row[token_class.name] = Decimal(10**n * events)
    return row


def _snapshot() -> LedgerSnapshot:
    return LedgerSnapshot(
        usage=[
            # Label values the format must escape (quote, backslash, newline), and not ASCII.
            _usage('say "hi"', "openai/gpt-5.1", "standard", "0.42", "0.50", 3),
            _usage("back\\slash", "line\nbreak", "fast", "123456789.125", "0.1", 1),
            _usage("Ünïcødé", "mistralai/mistral-large-2512", "unpriced", "0", "0", 2),
            # Go's exponent form for large numbers.
            _usage("ORACLE", "openai/gpt-5.1", "standard", "1e22", "1e-7", 10**9),
        ],
        catalog={"id": 1, "label": "aims-v1", "effective_from": datetime(2025, 1, 1, tzinfo=UTC)},
        budgets=[
            {
                "id": 7,
                "scope": "agent:ORACLE",
                "period": "month",
                "spent_usd": Decimal("0.42"),
                "limit_usd": Decimal("0.50"),
            }
        ],
        drift=[],
        tolerance=Decimal("0.02"),
        credits={"balance_usd": Decimal("12.5"), "exhausted": 1, "low": 0, "ok": 3},
        database_up=True,
    )


def test_the_service_s_series_are_written_as_prometheus_client_writes_them() -> None:
    metrics = Metrics()
    metrics.http_seconds.labels("/metrics", "GET", "200").observe(0.004)
    metrics.http_seconds.labels("/v1/events", "POST", "207").observe(2.5)
    metrics.events.labels("accepted").inc(5)
    metrics.gateway_spool_pending.set(3)
    text = metrics.render(_snapshot())
    assert text == generate_latest(metrics.registry)
    lines = text.decode().splitlines()
    # Hand-checked: escaped label values, labels in name order, Go's number forms.
    assert (
        'luc_cost_usd{agent="say \\"hi\\"",model="openai/gpt-5.1",provider="openrouter",'
        'tier="standard"} 0.42'
    ) in lines
    assert (
        'luc_ledger_events{agent="back\\\\slash",model="line\\nbreak",'
        'provider="openrouter",tier="fast"} 1.0'
    ) in lines
    assert (
        'luc_actual_cost_usd{agent="ORACLE",model="openai/gpt-5.1",provider="openrouter",'
        'tier="standard"} 1e+22'
    ) in lines
    assert 'luc_unpriced_events{model="mistralai/mistral-large-2512"} 2.0' in lines
    assert (
        'luc_http_request_duration_seconds_bucket{le="+Inf",method="POST",route="/v1/events",'
        'status="207"} 1.0'
    ) in lines
    assert "luc_gateway_spool_pending_events 3.0" in lines


_WORKER = """
from service.metrics.instruments import Metrics
metrics = Metrics()
metrics.http_seconds.labels("/metrics", "GET", "200").observe({seconds})
metrics.events.labels("accepted").inc({events})
metrics.gateway_spool_pending.set({events})
metrics.gateway_stub_mode.set(1)
"""


def test_every_worker_s_series_summed_from_their_files_are_written_alike(tmp_path: Path) -> None:
    # Two workers of `luc serve --workers 2` leave their series in the multiprocess folder
    # (prometheus-client picks its file-backed values when the variable is set at import).
    for seconds, events in ((0.004, 5), (0.3, 7)):
        script = textwrap.dedent(_WORKER.format(seconds=seconds, events=events))
        subprocess.run(
            [sys.executable, "-c", script],
            env={"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PATH": ""},
            cwd=PROJECT_ROOT,
            check=True,
        )
    assert len(list(tmp_path.glob("counter_*.db"))) == 2
    registry = CollectorRegistry(auto_describe=False)
    MultiProcessCollector(registry, path=str(tmp_path))  # type: ignore[no-untyped-call]
    text = generate_text(registry)
    assert text == generate_latest(registry)
    lines = text.decode().splitlines()
    assert 'luc_events_total{outcome="accepted"} 12.0' in lines
    assert (
        'luc_http_request_duration_seconds_count{method="GET",route="/metrics",status="200"} 2.0'
        in lines
    )


_NAMES = st.text(alphabet="abcXYZ_:.-é0 9", min_size=1, max_size=12)
_VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1234567.0, 12345678.9, 1e22, 5e-324, math.inf, -math.inf]),
    st.integers(min_value=-(10**20), max_value=10**20),
)
_TYPES = [
    "counter",
    "gauge",
    "histogram",
    "summary",
    "info",
    "stateset",
    "gaugehistogram",
    "unknown",
]


@st.composite
def _families(draw: st.DrawFn) -> list[Metric]:
    families = []
    for _ in range(draw(st.integers(1, 4))):
        name = draw(_NAMES)
        family = Metric(name, draw(st.text(max_size=20)), draw(st.sampled_from(_TYPES)))
        label_names = draw(st.lists(_NAMES, max_size=3, unique=True))
        for _ in range(draw(st.integers(0, 4))):
            suffix = draw(st.sampled_from(["", "_total", "_created", "_gsum", "_gcount", "_x"]))
            labels = {k: draw(st.text(alphabet='ab"\\\n é', max_size=5)) for k in label_names}
            stamp = draw(st.one_of(st.none(), st.floats(0, 2e9)))
            family.add_sample(name + suffix, labels, draw(_VALUES), stamp)
        families.append(family)
    return families


class _Families:
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


@settings(max_examples=300, deadline=None)
@given(_families())
def test_any_family_is_written_as_prometheus_client_writes_it(families: list[Metric]) -> None:
    registry = _Families(families)
    assert generate_text(registry) == generate_latest(registry)

"""What the ledger must hold, worked out by the tests themselves.

Shared by the durability and concurrency tests: a deterministic stream of events, the
totals it must produce computed here with Decimal from the AIMS catalog file (never by the
code under test), and the checks that compare them with the REST answers and the tables.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from tests.support.events import wire_event

CATALOG_FILE = Path(__file__).resolve().parents[2] / "service" / "pricing" / "aims-v1.json"
MILLION = Decimal(1_000_000)
AGENTS = ("ACHEEVY", "Boomer_Ang", "ORACLE", "ByteRover")
UNKNOWN_MODEL = "mistralai/mistral-large-2512"
TOKEN_FIELDS = (
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
)


def _load_prices() -> tuple[dict[str, dict[str, Decimal]], dict[str, str]]:
    """Model id → prices per 1M tokens with SPEC §3's defaults, and the aliases."""
    doc = json.loads(CATALOG_FILE.read_text())
    prices = {}
    for m in doc["models"]:
        prices[m["id"]] = {
            "input": Decimal(m["input"]),
            "output": Decimal(m["output"]),
            "cache_read": Decimal(m.get("cache_read", m["input"])),
            "cache_write": Decimal(m.get("cache_write", m["input"])),
            "reasoning": Decimal(m.get("reasoning", m["output"])),
            "per_request": Decimal(m.get("per_request", "0")),
        }
    return prices, dict(doc["aliases"])


PRICES, ALIASES = _load_prices()
MODELS = (*PRICES, *ALIASES)  # every catalog model, and the alias


def resolved(model: str) -> str:
    return ALIASES.get(model, model)


def expected_cost(event: dict[str, Any]) -> Decimal | None:
    """SPEC §3's formula over one event; ``None`` when the catalog lacks the model."""
    price = PRICES.get(resolved(event["model"]))
    if price is None:
        return None
    cached = event.get("cached_input_tokens", 0)
    written = event.get("cache_write_tokens", 0)
    reasoning = event.get("reasoning_tokens", 0)
    per_million = (
        (event["input_tokens"] - cached - written) * price["input"]
        + cached * price["cache_read"]
        + written * price["cache_write"]
        + (event["output_tokens"] - reasoning) * price["output"]
        + reasoning * price["reasoning"]
    )
    return per_million / MILLION + price["per_request"]


@dataclass
class Expected:
    cost_usd: Decimal = Decimal(0)
    provider_cost_usd: Decimal = Decimal(0)
    events: int = 0
    unpriced_events: int = 0
    tokens: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TOKEN_FIELDS, 0))

    def add(self, event: dict[str, Any]) -> None:
        cost = expected_cost(event)
        if cost is None:
            self.unpriced_events += 1
        else:
            self.cost_usd += cost
        self.provider_cost_usd += Decimal(event.get("provider_cost_usd", "0"))
        self.events += 1
        for name in TOKEN_FIELDS:
            self.tokens[name] += event.get(name, 0)


def expected_jobs(events: list[dict[str, Any]]) -> dict[str, Expected]:
    """Totals per job of distinct events (each id once)."""
    assert len({e["id"] for e in events}) == len(events)
    jobs: dict[str, Expected] = defaultdict(Expected)
    for event in events:
        jobs[event["job_id"]].add(event)
    return dict(jobs)


def expected_lines(events: list[dict[str, Any]]) -> dict[tuple[str, str, str, str], Expected]:
    """Totals per job line key (job, agent, catalog model id, provider); one catalog version."""
    lines: dict[tuple[str, str, str, str], Expected] = defaultdict(Expected)
    for e in events:
        lines[(e["job_id"], e["agent"], resolved(e["model"]), e["provider"])].add(e)
    return dict(lines)


def make_events(
    prefix: str,
    count: int,
    jobs: list[str],
    seed: int,
    *,
    start: datetime,
    hot: tuple[str, str] | None = None,
    hot_share: float = 0.0,
) -> list[dict[str, Any]]:
    """``count`` valid events with every token class, spread over two UTC days.

    With ``hot`` = (job, agent), that share of the events all hit one job × agent × model
    key, the rows that concurrent batches fight over.
    """
    rng = random.Random(seed)
    events = []
    for i in range(count):
        if hot is not None and rng.random() < hot_share:
            job, agent, model, provider = hot[0], hot[1], "gemini-3.0-flash", "openrouter"
        else:
            job = rng.choice(jobs)
            agent = rng.choice(AGENTS)
            # About one event in 200 names a model the catalog lacks: kept, unpriced.
            model = UNKNOWN_MODEL if rng.random() < 0.005 else rng.choice(MODELS)
            provider = rng.choice(("openrouter", "openrouter", "vertex", "stub"))
        input_tokens = rng.randint(0, 40_000)
        cached = rng.randint(0, input_tokens // 2)
        written = rng.randint(0, input_tokens - cached) if rng.random() < 0.3 else 0
        output_tokens = rng.randint(0, 6_000)
        reasoning = rng.randint(0, output_tokens) if rng.random() < 0.4 else 0
        event = wire_event(
            f"{prefix}-{i:05d}",
            occurred_at=(start + timedelta(seconds=37 * i)).isoformat(),
            job_id=job,
            agent=agent,
            provider=provider,
            model=model,
            input_tokens=input_tokens,
            cached_input_tokens=cached,
            cache_write_tokens=written,
            output_tokens=output_tokens,
            reasoning_tokens=reasoning,
            attributes={"route": "/v1/chat/completions", "n": i},
        )
        if provider == "openrouter":
            # OpenRouter's usage.cost, with more digits than any catalog price.
            # Plain notation (SPEC §2): str() would write 5E-12 or 0E-12.
            cost = Decimal(rng.randint(0, 10**9)) / Decimal(10**12)
            event["provider_cost_usd"] = format(cost, "f")
        events.append(event)
    return events


def assert_jobs_match(base_url: str, events: list[dict[str, Any]]) -> None:
    """Each job's totals and lines over REST equal the expectation, to the last digit."""
    lines = expected_lines(events)
    with httpx.Client(base_url=base_url, timeout=30) as http:
        for job_id, want in expected_jobs(events).items():
            response = http.get(f"/v1/jobs/{job_id}")
            assert response.status_code == 200, response.text
            job = response.json()
            assert Decimal(job["cost_usd"]) == want.cost_usd, job_id
            assert Decimal(job["provider_cost_usd"]) == want.provider_cost_usd, job_id
            assert job["events"] == want.events, job_id
            assert job["unpriced_events"] == want.unpriced_events, job_id
            assert {n: job[n] for n in TOKEN_FIELDS} == want.tokens, job_id
            got_lines = {
                (job_id, line["agent"], line["model"], line["provider"]): line
                for line in job["lines"]
            }
            want_lines = {k: v for k, v in lines.items() if k[0] == job_id}
            assert set(got_lines) == set(want_lines), job_id
            for key, line in got_lines.items():
                want_line = want_lines[key]
                cost = None if line["cost_usd"] is None else Decimal(line["cost_usd"])
                assert cost == (want_line.cost_usd if not want_line.unpriced_events else None)
                assert line["events"] == want_line.events, key
                assert {n: line[n] for n in TOKEN_FIELDS} == want_line.tokens, key


_MEASURES = """
    {cost} AS cost, COALESCE(sum(provider_cost_usd), 0) AS provider_cost,
    sum(event_count) AS events, sum(unpriced_count) AS unpriced,
    sum(input_tokens) AS i, sum(cached_input_tokens) AS c, sum(cache_write_tokens) AS w,
    sum(output_tokens) AS o, sum(reasoning_tokens) AS r,
    min(occurred_at) AS first_at, max(occurred_at) AS last_at
"""
_STORED = """
    cost_usd AS cost, provider_cost_usd AS provider_cost, events, unpriced_events AS unpriced,
    input_tokens AS i, cached_input_tokens AS c, cache_write_tokens AS w,
    output_tokens AS o, reasoning_tokens AS r, first_event_at AS first_at,
    last_event_at AS last_at
"""
# (rollup table, its key columns, the same keys over ledger_entries, cost as the rollup sums it)
_ROLLUPS = (
    ("rollup_jobs", "job_id", "job_id", "COALESCE(sum(cost_usd), 0)"),
    (
        "rollup_job_lines",
        "job_id, agent, model, provider, catalog_version",
        "job_id, agent, model, provider, catalog_version",
        "sum(cost_usd)",  # a line stays NULL while unpriced
    ),
    (
        "rollup_usage",
        "agent, model, provider, tier",
        "agent, model, provider, tier",
        "COALESCE(sum(cost_usd), 0)",
    ),
    ("rollup_agent_days", "agent, day", "agent, billing_day", "COALESCE(sum(cost_usd), 0)"),
    ("rollup_model_days", "model, day", "model, billing_day", "COALESCE(sum(cost_usd), 0)"),
)


async def assert_ledger_holds_each_event_once(
    conn: asyncpg.Connection, events: list[dict[str, Any]]
) -> None:
    """One stored event and exactly one charge per id, nothing else; every rollup row
    equals the sums of its ledger entries."""
    ids = sorted(e["id"] for e in events)
    assert await conn.fetchval("SELECT count(*) FROM usage_events") == len(ids)
    stored = await conn.fetch("SELECT event_id FROM usage_events ORDER BY event_id")
    assert [r["event_id"] for r in stored] == ids
    charges = await conn.fetch(
        "SELECT event_id, kind, count(*) AS n FROM ledger_entries GROUP BY event_id, kind"
    )
    assert {(r["event_id"], r["kind"], r["n"]) for r in charges} == {(i, "charge", 1) for i in ids}
    await assert_rollups_equal_ledger(conn)


async def assert_rollups_equal_ledger(conn: asyncpg.Connection) -> None:
    """Every rollup row equals the sums of its ledger entries, exactly (SPEC §4)."""
    for table, keys, ledger_keys, cost in _ROLLUPS:
        from_ledger = await conn.fetch(
            f"SELECT {ledger_keys}, {_MEASURES.format(cost=cost)} "
            f"FROM ledger_entries GROUP BY {ledger_keys}"
        )
        stored_rows = await conn.fetch(f"SELECT {keys}, {_STORED} FROM {table}")
        width = len(keys.split(","))
        # Compared as values: Decimal(10) == 10, and a sum may print 1E+1 where a column has 10.
        assert {tuple(r)[:width]: tuple(r)[width:] for r in stored_rows} == {
            tuple(r)[:width]: tuple(r)[width:] for r in from_ledger
        }, table

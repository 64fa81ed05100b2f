"""What the ledger must hold, worked out by the tests themselves (never by the code under
test), and the checks that compare it with the REST answers and the tables.

- Prices: SPEC §3's defaults (``with_defaults``), the AIMS catalog file's prices, long
  context and aliases, and what a call costs at a price (``cost_at``), in Decimal.
- A deterministic stream of events (``make_events``) and the totals per job and per job
  line it must produce (``assert_jobs_match``, ``assert_ledger_holds_each_event_once``).
- Every rollup rebuilt from the ledger alone, in SQL (``rollup_differences``): rollups are
  projections of the ledger, and this is the rebuild that proves it.

Shared by the durability, concurrency, outage, demo, limits, re-rating and property tests.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import httpx

from tests.support.events import wire_event
from tests.support.paths import AIMS_CATALOG_FILE

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
"""The token classes of SPEC §2, as the tests spell them: wire fields, columns, totals."""

# Prices -------------------------------------------------------------------------------------


def with_defaults(
    input_price: Decimal,
    output_price: Decimal,
    cache_read: Decimal | None = None,
    cache_write: Decimal | None = None,
    reasoning: Decimal | None = None,
    per_request: Decimal | None = None,
) -> dict[str, Decimal]:
    """A model's prices per 1M tokens with SPEC §3's defaults for those not given."""
    return {
        "input": input_price,
        "output": output_price,
        "cache_read": input_price if cache_read is None else cache_read,
        "cache_write": input_price if cache_write is None else cache_write,
        "reasoning": output_price if reasoning is None else reasoning,
        "per_request": Decimal(0) if per_request is None else per_request,
    }


def _load_aims() -> tuple[datetime, dict[str, dict[str, Decimal]], dict[str, str]]:
    """The AIMS catalog file: when it takes effect, model id → prices, and the aliases."""
    doc = json.loads(AIMS_CATALOG_FILE.read_text())
    optional = ("cache_read", "cache_write", "reasoning", "per_request")
    prices = {
        m["id"]: with_defaults(
            Decimal(m["input"]),
            Decimal(m["output"]),
            *(Decimal(m[name]) if name in m else None for name in optional),
        )
        for m in doc["models"]
    }
    return datetime.fromisoformat(doc["effective_from"]), prices, dict(doc["aliases"])


AIMS_EFFECTIVE_FROM, PRICES, ALIASES = _load_aims()
MODELS = (*PRICES, *ALIASES)  # every catalog model, and the alias


def _load_long_context() -> dict[str, list[tuple[int, dict[str, Decimal]]]]:
    """The AIMS file's long-context entries: model id → (min_input_tokens, prices),
    ascending; inside an entry cache prices default to its input, reasoning to its output,
    and per_request stays the model's."""
    doc = json.loads(AIMS_CATALOG_FILE.read_text())
    optional = ("cache_read", "cache_write", "reasoning")
    return {
        m["id"]: sorted(
            (
                lc["min_input_tokens"],
                with_defaults(
                    Decimal(lc["input"]),
                    Decimal(lc["output"]),
                    **{name: Decimal(lc[name]) for name in optional if name in lc},
                    per_request=PRICES[m["id"]]["per_request"],
                ),
            )
            for lc in m.get("long_context", [])
        )
        for m in doc["models"]
    }


LONG_CONTEXT = _load_long_context()


def resolved(model: str) -> str:
    return ALIASES.get(model, model)


def cost_at(price: Mapping[str, Decimal], tokens: Mapping[str, int]) -> Decimal:
    """SPEC §3: each token class at its price per 1M tokens, plus the price per request.
    ``tokens`` holds the counts by wire field name; a class it lacks counts 0."""
    cached = tokens.get("cached_input_tokens", 0)
    written = tokens.get("cache_write_tokens", 0)
    reasoning = tokens.get("reasoning_tokens", 0)
    per_million = (
        (tokens["input_tokens"] - cached - written) * price["input"]
        + cached * price["cache_read"]
        + written * price["cache_write"]
        + (tokens["output_tokens"] - reasoning) * price["output"]
        + reasoning * price["reasoning"]
    )
    return per_million / MILLION + price["per_request"]


def expected_cost(event: dict[str, Any]) -> Decimal | None:
    """The cost of one wire event at the AIMS prices; ``None`` when they lack its model,
    zero for a stub answer (no LLM was called)."""
    model = resolved(event["model"])
    price = PRICES.get(model)
    if price is None:
        return None
    # SPEC §3: every token at the highest long-context entry the call's input reaches.
    for threshold, long_price in LONG_CONTEXT[model]:
        if event["input_tokens"] >= threshold:
            price = long_price
    return Decimal(0) if event["provider"] == "stub" else cost_at(price, event)


# Totals of an event stream ------------------------------------------------------------------


@dataclass
class Expected:
    cost_usd: Decimal = Decimal(0)
    actual_cost_usd: Decimal = Decimal(0)
    """The provider's reported cost of each event where present, else its catalog cost."""
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
        reported = event.get("provider_cost_usd")
        self.provider_cost_usd += Decimal(reported or "0")
        if reported is not None:
            self.actual_cost_usd += Decimal(reported)
        elif cost is not None:
            self.actual_cost_usd += cost
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
            assert Decimal(job["actual_cost_usd"]) == want.actual_cost_usd, job_id
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
                assert Decimal(line["actual_cost_usd"] or 0) == want_line.actual_cost_usd, key
                assert line["events"] == want_line.events, key
                assert {n: line[n] for n in TOKEN_FIELDS} == want_line.tokens, key


async def assert_ledger_holds_each_event_once(
    conn: asyncpg.Connection, events: list[dict[str, Any]]
) -> None:
    """One stored event and exactly one charge per id, nothing else; every rollup row
    equals the sums of its ledger entries."""
    ids = sorted(e["id"] for e in events)
    assert await conn.fetchval("SELECT count(*) FROM event_keys") == len(ids)
    stored = await conn.fetch("SELECT event_id FROM event_keys ORDER BY event_id")
    assert [r["event_id"] for r in stored] == ids
    charges = await conn.fetch(
        "SELECT event_id, kind, count(*) AS n FROM ledger_entries GROUP BY event_id, kind"
    )
    assert {(r["event_id"], r["kind"], r["n"]) for r in charges} == {(i, "charge", 1) for i in ids}
    await assert_rollups_equal_ledger(conn)


# What the ledger holds ------------------------------------------------------------------------

LEDGER = """
SELECT event_id, kind, job_id, agent, model, provider, input_tokens, cached_input_tokens,
       cache_write_tokens, output_tokens, reasoning_tokens, cost_usd, provider_cost_usd,
       actual_cost_usd
FROM ledger_entries ORDER BY id
"""
# The stored events as sent (migration 0028): each id's key row and its charge, which holds
# the event's own fields (the model as sent only when an alias, the status only when not ok).
STORED_EVENTS = """(
    SELECT k.event_id, k.occurred_at, c.recorded_at AS received_at, c.job_id, c.agent,
           c.provider, COALESCE(c.sent_model, c.model) AS model, c.input_tokens,
           c.cached_input_tokens, c.cache_write_tokens, c.output_tokens, c.reasoning_tokens,
           c.provider_cost_usd, COALESCE(c.status, 'ok') AS status, c.attributes,
           c.reservation_id, c.event_customer_id AS customer_id
    FROM event_keys AS k
    JOIN ledger_entries AS c
      ON c.event_id = k.event_id AND c.occurred_at = k.occurred_at AND c.kind = 'charge'
) AS stored_events"""
STORED_EVENT = f"SELECT status, attributes FROM {STORED_EVENTS} WHERE event_id = $1"


async def ledger(db: asyncpg.Connection) -> list[dict[str, Any]]:
    """Every ledger entry, in the order it was appended."""
    return [dict(r) for r in await db.fetch(LEDGER)]


# Rollups rebuilt from the ledger ----------------------------------------------------------

_FROM_LEDGER = """
    {cost}, {actual}, COALESCE(sum(provider_cost_usd), 0), {price}, sum(event_count),
    sum(unpriced_count),{unknown} sum(input_tokens), sum(cached_input_tokens),
    sum(cache_write_tokens), sum(output_tokens), sum(reasoning_tokens), min(occurred_at),
    max(occurred_at)
"""
_STORED = """
    cost_usd, actual_cost_usd, provider_cost_usd, price_usd, events, unpriced_events,{unknown}
    input_tokens,
    cached_input_tokens, cache_write_tokens, output_tokens, reasoning_tokens, first_event_at,
    last_event_at
"""
# The events whose price, and whose actual cost, is unknown (from migration 0030 on; the
# migration tests check ledgers at older revisions).
_UNKNOWN_FROM_LEDGER = """
    COALESCE(sum(event_count) FILTER (WHERE price_usd IS NULL), 0),
    COALESCE(sum(event_count) FILTER (WHERE COALESCE(provider_cost_usd, cost_usd) IS NULL), 0),"""
_UNKNOWN_STORED = " unknown_price_events, unknown_actual_events,"
_HAS_UNKNOWN = """
SELECT EXISTS (SELECT 1 FROM information_schema.columns
               WHERE table_name = 'rollup_jobs' AND column_name = 'unknown_price_events')
"""
# The margin over the entries whose price and actual cost are both known, and the events
# that do not know both (from migration 0032 on).
_MARGIN_FROM_LEDGER = """
    {margin},
    COALESCE(sum(event_count) FILTER (WHERE price_usd IS NULL
                                      OR COALESCE(provider_cost_usd, cost_usd) IS NULL), 0),"""
_MARGIN_STORED = " margin_usd, unknown_margin_events,"
_HAS_MARGIN = """
SELECT EXISTS (SELECT 1 FROM information_schema.columns
               WHERE table_name = 'rollup_jobs' AND column_name = 'unknown_margin_events')
"""
# table → (its key columns, the same keys over ledger_entries, whether an unknown cost stays
# NULL: an unpriced job line's cost is unknown, not zero, and so is its actual cost when
# none of its events reported one, and its price when none of its events has a known one;
# the other rollups count unknown as zero)
ROLLUPS = {
    "rollup_jobs": ("job_id", "job_id", False),
    "rollup_job_lines": (
        "job_id, agent, model, provider, catalog_version, long_context_from",
        "job_id, agent, model, provider, catalog_version, long_context_from",
        True,
    ),
    "rollup_usage": ("agent, model, provider, tier", "agent, model, provider, tier", False),
    "rollup_agent_days": ("agent, day", "agent, billing_day", False),
    "rollup_model_days": ("model, day", "model, billing_day", False),
    "rollup_customer_months": (
        "customer_id, month",
        "customer_id, date_trunc('month', billing_day)::date",
        False,
    ),
}


# Reconciliation (SPEC §5) per UTC day × model × provider: every event, the reported ones
# (their entries carry a provider cost), the reported unpriced ones, and the catalog and
# provider cost of the reported priced ones (entries carrying both costs), the provider
# cost of the reported unpriced ones apart.
_RECONCILIATION_FROM_LEDGER = """
    sum(event_count),
    COALESCE(sum(event_count) FILTER (WHERE provider_cost_usd IS NOT NULL), 0),
    COALESCE(sum(unpriced_count) FILTER (WHERE provider_cost_usd IS NOT NULL), 0),
    COALESCE(sum(cost_usd) FILTER (WHERE provider_cost_usd IS NOT NULL), 0),
    COALESCE(sum(provider_cost_usd) FILTER (WHERE cost_usd IS NOT NULL), 0),
    COALESCE(sum(provider_cost_usd) FILTER (WHERE cost_usd IS NULL), 0)
"""
_RECONCILIATION_STORED = """
    events, reported_events, unpriced_reported_events, cost_usd, provider_cost_usd,
    unpriced_provider_cost_usd
"""


def _summed(column: str, keep_unknown: bool) -> str:
    return f"sum({column})" if keep_unknown else f"COALESCE(sum({column}), 0)"


async def rollup_differences(conn: asyncpg.Connection) -> dict[str, list[tuple[Any, ...]]]:
    """Rebuild every rollup from the ledger in SQL; rows that differ either way, by table.

    EXCEPT compares values (numeric 0.30 = 0.3, NULL = NULL), so equal means exactly equal.
    """
    differences: dict[str, list[tuple[Any, ...]]] = {}
    counted = await conn.fetchval(_HAS_UNKNOWN)
    margins = await conn.fetchval(_HAS_MARGIN)
    stored_columns = _STORED.format(
        unknown=(_UNKNOWN_STORED if counted else "") + (_MARGIN_STORED if margins else "")
    )
    for table, (keys, ledger_keys, keep_unknown) in ROLLUPS.items():
        # The rule of SPEC §3 spelled out here, not read from the generated column:
        # the provider's reported cost where present, else the catalog's.
        sums = _FROM_LEDGER.format(
            cost=_summed("cost_usd", keep_unknown),
            actual=_summed("COALESCE(provider_cost_usd, cost_usd)", keep_unknown),
            price=_summed("price_usd", keep_unknown),
            unknown=(_UNKNOWN_FROM_LEDGER if counted else "")
            + (
                _MARGIN_FROM_LEDGER.format(
                    margin=_summed(
                        "price_usd - COALESCE(provider_cost_usd, cost_usd)", keep_unknown
                    )
                )
                if margins
                else ""
            ),
        )
        rebuilt = f"SELECT {ledger_keys}, {sums} FROM ledger_entries GROUP BY {ledger_keys}"
        stored = f"SELECT {keys}, {stored_columns} FROM {table}"
        rows = await conn.fetch(
            f"(({rebuilt}) EXCEPT ALL ({stored})) UNION ALL (({stored}) EXCEPT ALL ({rebuilt}))"
        )
        if rows:
            differences[table] = [tuple(r) for r in rows]
    rebuilt = (
        f"SELECT billing_day, model, provider, {_RECONCILIATION_FROM_LEDGER} "
        "FROM ledger_entries GROUP BY billing_day, model, provider"
    )
    stored = (
        f"SELECT day, model, provider, {_RECONCILIATION_STORED} FROM rollup_reconciliation_days"
    )
    rows = await conn.fetch(
        f"(({rebuilt}) EXCEPT ALL ({stored})) UNION ALL (({stored}) EXCEPT ALL ({rebuilt}))"
    )
    if rows:
        differences["rollup_reconciliation_days"] = [tuple(r) for r in rows]
    return differences


async def assert_rollups_equal_ledger(conn: asyncpg.Connection) -> None:
    """Every rollup row equals the sums of its ledger entries, exactly (SPEC §4)."""
    assert await rollup_differences(conn) == {}

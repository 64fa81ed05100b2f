"""/metrics across corrections: re-rating to a cheaper catalog version, pricing unpriced
events under a new model and alias, and re-pricing to a cheaper plan version.

Each correction appends adjustment entries that take money back (and move an event's
tokens and count from one label set to another when its model or tier changes). The
ledger's totals then go down for some label sets, so they are exposed as gauges: a counter
that goes down is read by Prometheus as a reset, and ``increase()`` or ``rate()`` over it
would add the whole value again. Every counter on /metrics must never go down; the
ledger's net must still be readable to the last digit.

Money by hand (AIMS catalog, version 1): openai/gpt-5.1 at 3 in / 12 out per 1M tokens; a
call of 100,000 input and 10,000 output tokens costs 0.30 + 0.12 = 0.42. Version 2
(effective 2026-10-01) sells its output at 6: 0.30 + 0.06 = 0.36.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import asyncpg
from prometheus_client.parser import text_string_to_metric_families

from tests.scenarios.test_customer_prices import make_customer, make_plan
from tests.support.events import record_accepted, wire_event
from tests.support.ledger_truth import assert_rollups_equal_ledger

D = Decimal
GPT = "openai/gpt-5.1"
MISTRAL = "mistralai/mistral-large-2512"
OCTOBER = "2026-10-01T00:00:00Z"
GPT_CALL = {"model": GPT, "input_tokens": 100_000, "output_tokens": 10_000}
# What /metrics reads from the ledger (rollup_usage): the net of every entry.
LEDGER_TOTALS = (
    "luc_cost_usd",
    "luc_provider_cost_usd",
    "luc_actual_cost_usd",
    "luc_price_usd",
    "luc_ledger_events",
    "luc_tokens",
)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], tuple[str, float]]


async def scrape(client: Any) -> Samples:
    """Every sample of /metrics: (name, labels) → (its family's type, value)."""
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    return {
        (s.name, tuple(sorted(s.labels.items()))): (family.type, s.value)
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def counters_that_went_down(before: Samples, after: Samples) -> dict[str, tuple[float, Any]]:
    """Counter samples lower after than before, or gone: Prometheus reads either as a
    reset and counts the whole value again."""
    return {
        f"{name}{dict(labels)}": (value, after.get((name, labels), (None, None))[1])
        for (name, labels), (kind, value) in before.items()
        if kind == "counter" and not after.get((name, labels), (None, -1.0))[1] >= value
    }


def value(samples: Samples, name: str, **labels: str) -> Decimal:
    """A sample's value as the exposition wrote it, read back exactly."""
    return D(repr(samples[(name, tuple(sorted(labels.items())))][1]))


async def test_re_rating_lowers_the_ledger_series_without_any_counter_going_down(
    client: Any, db: asyncpg.Connection
) -> None:
    at = "2026-10-10T12:00:00Z"
    await record_accepted(
        client,
        [
            wire_event("g1", occurred_at=at, agent="ORACLE", **GPT_CALL),
            wire_event("g2", occurred_at=at, agent="ORACLE", provider="vertex", **GPT_CALL),
            # A model and alias no version knows yet: unpriced, under the name it was sent.
            wire_event(
                "u1",
                occurred_at=at,
                agent="ACHEEVY",
                model="mistral-large",
                input_tokens=30_000,
                output_tokens=2_000,
                provider_cost_usd="0.02",
            ),
        ],
    )
    before = await scrape(client)

    # Version 2: GPT's output cheaper, and Mistral with its alias. The version prices u1
    # at once (under the model the alias names, tier standard: 30,000 × 0.50 + 2,000 ×
    # 1.50 = 18,000 per 1M); the re-rating moves g1 and g2 to 0.36 each.
    response = await client.post(
        "/v1/catalog/versions",
        json={
            "effective_from": OCTOBER,
            "parent": 1,
            "models": [
                {"id": GPT, "name": "GPT-5.1", "tier": "standard", "input": "3", "output": "6"},
                {
                    "id": MISTRAL,
                    "name": "Mistral Large 3",
                    "tier": "standard",
                    "input": "0.50",
                    "output": "1.50",
                },
            ],
            "aliases": {"mistral-large": MISTRAL},
        },
    )
    assert response.status_code == 201, response.text
    assert response.json()["repriced_events"] == 1
    rerate = await client.post("/v1/catalog/rerate", json={"since": OCTOBER})
    assert rerate.json()["events_changed"] == 2, rerate.text
    after = await scrape(client)

    assert counters_that_went_down(before, after) == {}
    gpt = {"agent": "ORACLE", "model": GPT, "provider": "openrouter", "tier": "standard"}
    sent = {"agent": "ACHEEVY", "model": "mistral-large", "provider": "openrouter"}
    tokens = {**sent, "tier": "unpriced", "class": "input"}
    assert value(before, "luc_cost_usd", **gpt) == D("0.42")
    assert value(before, "luc_ledger_events", **sent, tier="unpriced") == 1
    assert value(before, "luc_tokens", **tokens) == 30_000
    # The ledger's totals are gauges: the net, to the last digit, lower where money was
    # taken back.
    assert {after[(name, labels)][0] for name, labels in after if name in LEDGER_TOTALS} == {
        "gauge"
    }
    for provider in ("openrouter", "vertex"):
        labels = {**gpt, "provider": provider}
        assert value(after, "luc_cost_usd", **labels) == D("0.36")
        assert value(after, "luc_actual_cost_usd", **labels) == D("0.36")
        assert value(after, "luc_price_usd", **labels) == D("0.36")
        assert value(after, "luc_ledger_events", **labels) == 1
    # Adjustments move an event's count, tokens and reported cost when its model or tier
    # changes: they leave the label set it was booked under.
    moved = {"agent": "ACHEEVY", "model": MISTRAL, "provider": "openrouter", "tier": "standard"}
    assert value(after, "luc_ledger_events", **sent, tier="unpriced") == 0
    assert value(after, "luc_ledger_events", **moved) == 1
    assert value(after, "luc_provider_cost_usd", **sent, tier="unpriced") == 0
    assert value(after, "luc_provider_cost_usd", **moved) == D("0.02")
    assert value(after, "luc_cost_usd", **moved) == D("0.018")
    assert value(after, "luc_tokens", **sent, tier="unpriced", **{"class": "input"}) == 0
    assert value(after, "luc_tokens", **moved, **{"class": "input"}) == 30_000
    assert (("luc_unpriced_events", (("model", "mistral-large"),))) not in after

    # Summed, each series is REST's total exactly.
    total = (await client.get("/v1/usage")).json()["rows"][0]
    # (u1's actual cost is the 0.02 its provider reported; no plan: the price is the cost.)
    for name, field, want in (
        ("luc_cost_usd", "cost_usd", "0.738"),
        ("luc_provider_cost_usd", "provider_cost_usd", "0.02"),
        ("luc_actual_cost_usd", "actual_cost_usd", "0.74"),
        ("luc_price_usd", "price_usd", "0.738"),
    ):
        summed = sum(D(repr(v)) for (n, _), (_, v) in after.items() if n == name)
        assert summed == D(total[field]) == D(want), name
    await assert_rollups_equal_ledger(db)


async def test_re_pricing_lowers_the_price_series_without_any_counter_going_down(
    client: Any, db: asyncpg.Connection
) -> None:
    await make_plan(client, "markup", basis="catalog", markup="0.25")  # from 2026-10-01
    await make_customer(client, "acme", plan_id="markup")
    await record_accepted(
        client,
        [
            wire_event(
                "p1",
                job_id="job-p",
                customer_id="acme",
                occurred_at="2026-10-20T12:00:00Z",
                agent="ORACLE",
                **GPT_CALL,
            )
        ],
    )
    before = await scrape(client)

    # A plan version effective in the past at 10 %, and the re-pricing that reaches p1.
    added = await client.post(
        "/v1/plans/markup/versions",
        json={"effective_from": "2026-10-15T00:00:00Z", "basis": "catalog", "markup": "0.10"},
    )
    assert added.status_code == 201, added.text
    done = await client.post("/v1/plans/markup/reprice", json={"since": OCTOBER})
    assert done.json()["events_changed"] == 1, done.text
    after = await scrape(client)

    assert counters_that_went_down(before, after) == {}
    labels = {"agent": "ORACLE", "model": GPT, "provider": "openrouter", "tier": "standard"}
    assert value(before, "luc_price_usd", **labels) == D("0.525")  # 0.42 × 1.25
    assert value(after, "luc_price_usd", **labels) == D("0.462")  # 0.42 × 1.10
    assert value(after, "luc_actual_cost_usd", **labels) == D("0.42")
    # The margin is the difference of those two (0.042): no series of its own.
    assert not [name for name, _ in after if name == "luc_margin_usd"]
    assert value(after, "luc_cost_usd", **labels) == D("0.42")  # the cost never moves
    await assert_rollups_equal_ledger(db)


async def test_tokens_are_by_agent_model_provider_and_tier_as_the_cost_is(
    client: Any, db: asyncpg.Connection
) -> None:
    """SPEC §5: /metrics has cost *and tokens* by agent, model, provider and tier. The
    tokens were by agent and model only: a model called through two providers summed its
    tokens into one series, and no query could split them as /v1/usage?group_by=provider
    does. Each token series now has its cost series' labels."""
    at = "2026-10-10T12:00:00Z"
    await record_accepted(
        client,
        [
            wire_event("t1", occurred_at=at, agent="ORACLE", **GPT_CALL),
            wire_event(
                "t2",
                occurred_at=at,
                agent="ORACLE",
                provider="vertex",
                model=GPT,
                input_tokens=40_000,
                output_tokens=4_000,
            ),
        ],
    )
    samples = await scrape(client)
    gpt = {"agent": "ORACLE", "model": GPT, "tier": "standard"}
    for provider, inp, out in (("openrouter", 100_000, 10_000), ("vertex", 40_000, 4_000)):
        assert value(samples, "luc_tokens", **gpt, provider=provider, **{"class": "input"}) == inp
        assert value(samples, "luc_tokens", **gpt, provider=provider, **{"class": "output"}) == out
        assert value(samples, "luc_ledger_events", **gpt, provider=provider) == 1
    # Each is REST's figure for the same group.
    rows = (await client.get("/v1/usage", params={"group_by": "provider"})).json()["rows"]
    assert [(r["provider"], r["input_tokens"], r["output_tokens"]) for r in rows] == [
        ("openrouter", 100_000, 10_000),
        ("vertex", 40_000, 4_000),
    ]


async def test_the_margin_of_a_label_set_mixing_known_and_unknown_prices_is_on_metrics(
    client: Any, db: asyncpg.Connection
) -> None:
    # A model no catalog version prices, reported at 0.01 a call: acme's plan marks up the
    # catalog cost (unknown, so its price is unknown), globex's the reported cost (0.01 ×
    # 1.2 = 0.012). One label set holds both: price 0.024, actual cost 0.04, but the margin
    # is over globex's calls alone, 2 × (0.012 − 0.01) = 0.004; price − actual said −0.016.
    await make_plan(client, "on-catalog", basis="catalog", markup="0.5")
    await make_plan(client, "on-actual", basis="actual", markup="0.2")
    await make_customer(client, "acme", plan_id="on-catalog")
    await make_customer(client, "globex", plan_id="on-actual")
    call = {"model": "vendor/not-in-the-catalog", "input_tokens": 1_000, "output_tokens": 100,
            "provider_cost_usd": "0.01"}  # fmt: skip
    await record_accepted(
        client,
        [
            wire_event("m1", job_id="job-a", customer_id="acme", **call),
            wire_event("m2", job_id="job-a", **call),
            wire_event("m3", job_id="job-g", customer_id="globex", **call),
            wire_event("m4", job_id="job-g", **call),
        ],
    )
    rows = (await client.get("/v1/usage", params={"group_by": "model"})).json()["rows"]
    [row] = [r for r in rows if r["model"] == "vendor/not-in-the-catalog"]
    assert (row["price_usd"], row["actual_cost_usd"], row["margin_usd"]) == (
        "0.024",
        "0.04",
        "0.004",
    )
    samples = await scrape(client)
    labels = {"model": "vendor/not-in-the-catalog", "tier": "unpriced"}
    [margin] = [
        D(repr(v))
        for (name, sample_labels), (_, v) in samples.items()
        if name == "luc_margin_usd" and labels.items() <= dict(sample_labels).items()
    ]
    assert margin == D("0.004")
    # A label set whose events all know both has no margin series: the difference is it.
    await record_accepted(client, [wire_event("g1", job_id="job-g", **GPT_CALL)])
    assert [
        dict(labels)["model"] for name, labels in (await scrape(client)) if name == "luc_margin_usd"
    ] == ["vendor/not-in-the-catalog"]
    await assert_rollups_equal_ledger(db)

"""A margin counts only the events whose price and actual cost are both known (SPEC §11:
``margin_usd`` = ``price_usd`` − ``actual_cost_usd`` wherever both are known), on a job,
its lines and a usage group alike, and follows an event whose price becomes known.

AIMS prices (catalog version 1), USD per 1M tokens: Claude Sonnet 4.5 $3 in / $15 out.
``vendor/not-in-the-catalog`` is no catalog model until the test adds one ($1 in / $4 out).
The customer's plan: catalog basis, markup 10 %.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from tests.scenarios.test_customer_prices import make_customer, make_plan
from tests.scenarios.test_unpriced_billing import catalog_version
from tests.support.events import record_accepted, wire_event

SONNET = "anthropic/claude-sonnet-4.5"
UNKNOWN = "vendor/not-in-the-catalog"

october = partial(wire_event, occurred_at="2026-10-10T09:00:00Z", agent="ACHEEVY")


def money(totals: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(
        totals[k] for k in ("price_usd", "actual_cost_usd", "margin_usd", "unknown_margin_events")
    )


async def test_an_event_of_unknown_price_takes_nothing_off_the_margin(client: Any) -> None:
    await make_plan(client, "ten", basis="catalog", markup="0.10")
    await make_customer(client, "acme", plan_id="ten")
    await record_accepted(
        client,
        [
            # 100,000 × 3 = 0.30 catalog and actual cost (nothing reported); price 0.33;
            # margin 0.03.
            october("m1", job_id="job-m", customer_id="acme", model=SONNET,
                    input_tokens=100_000, output_tokens=0),
            # No catalog price, so no price under a catalog basis; the provider reported
            # 0.5: its actual cost, and no margin (its price is unknown).
            october("m2", job_id="job-m", customer_id="acme", model=UNKNOWN,
                    input_tokens=100_000, output_tokens=0, provider_cost_usd="0.5"),
        ],
    )  # fmt: skip
    job = (await client.get("/v1/jobs/job-m")).json()
    # Before, the margin was 0.33 − 0.80 = −0.47: the unknown price's cost taken off it.
    assert money(job) == ("0.33", "0.8", "0.03", 1)
    lines = {line["model"]: money(line) for line in job["lines"]}
    assert lines == {SONNET: ("0.33", "0.3", "0.03", 0), UNKNOWN: (None, "0.5", None, 1)}
    usage = await client.get(
        "/v1/usage",
        params={"group_by": "day", "from": "2026-10-10T00:00:00Z", "to": "2026-10-11T00:00:00Z"},
    )
    assert [money(r) for r in usage.json()["rows"]] == [("0.33", "0.8", "0.03", 1)]

    # A catalog version prices the model from September: re-rating books m2 again, at
    # 100,000 × 1 = 0.1 catalog cost, price 0.11, actual still the reported 0.5, margin
    # 0.11 − 0.5 = −0.39; the job's margin 0.03 − 0.39 = −0.36, every event known.
    await catalog_version(client, "2026-09-01T00:00:00Z", 1, UNKNOWN)
    job = (await client.get("/v1/jobs/job-m")).json()
    assert money(job) == ("0.44", "0.8", "-0.36", 0)
    usage = await client.get(
        "/v1/usage",
        params={"group_by": "day", "from": "2026-10-10T00:00:00Z", "to": "2026-10-11T00:00:00Z"},
    )
    assert [money(r) for r in usage.json()["rows"]] == [("0.44", "0.8", "-0.36", 0)]

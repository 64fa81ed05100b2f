"""A total whose every event is unpriced has no known catalog cost: ``cost_usd`` is null
there, never ``"0"`` (SPEC §3: unpriced is never silently zero), on every read that
answers totals: one job (beside its unpriced line, which already said null), the job
list, one agent and its days, the agent list, and the usage query (from a rollup and
from the ledger). A total with some priced events keeps their cost, with the unpriced
ones counted beside it; once a catalog version prices the model, the cost is known.

Events, by hand: job-u has two calls of ``mistral-large``, which catalog version 1 lacks
(agent Oracle-U, 2026-11-20 10:00 UTC); job-m has one of them (agent ACHEEVY) and one
call of gemini-3.0-flash: 1,000 × 0.10/M + 500 × 0.40/M = 0.0003 USD. Once Mistral
arrives (0.50 / 1.50 per 1M): 1,000 × 0.50/M + 500 × 1.50/M = 0.00125 USD a call.
"""

from __future__ import annotations

from typing import Any

from litestar.testing import AsyncTestClient

from tests.support.catalogs import mistral_arrives
from tests.support.clock import clear_of_end, earlier_this_month
from tests.support.events import record_accepted, wire_event

UNKNOWN = "mistral-large"


async def _get(client: AsyncTestClient[Any], path: str) -> Any:
    response = await client.get(path)
    assert response.status_code == 200, response.text
    return response.json()


async def test_a_total_of_unpriced_events_only_has_a_null_cost_everywhere(
    client: AsyncTestClient[Any],
) -> None:
    await record_accepted(
        client,
        [
            wire_event("u1", job_id="job-u", agent="Oracle-U", model=UNKNOWN),
            wire_event("u2", job_id="job-u", agent="Oracle-U", model=UNKNOWN),
            wire_event("m1", job_id="job-m", model=UNKNOWN),
            wire_event("m2", job_id="job-m"),
        ],
    )

    job = await _get(client, "/v1/jobs/job-u")
    assert (job["events"], job["unpriced_events"]) == (2, 2)
    assert job["cost_usd"] is None
    assert [line["cost_usd"] for line in job["lines"]] == [None]
    mixed = await _get(client, "/v1/jobs/job-m")
    assert (mixed["cost_usd"], mixed["unpriced_events"]) == ("0.0003", 1)

    listed = {j["job_id"]: j for j in (await _get(client, "/v1/jobs"))["items"]}
    assert listed["job-u"]["cost_usd"] is None
    assert listed["job-m"]["cost_usd"] == "0.0003"

    agent = await _get(client, "/v1/agents/Oracle-U")
    assert agent["cost_usd"] is None
    assert [(d["day"], d["cost_usd"], d["unpriced_events"]) for d in agent["days"]] == [
        ("2026-11-20", None, 2)
    ]
    agents = {a["agent"]: a for a in (await _get(client, "/v1/agents"))["items"]}
    assert agents["Oracle-U"]["cost_usd"] is None
    assert agents["ACHEEVY"]["cost_usd"] == "0.0003"

    # From a rollup (no time range), then from the ledger (a range not on midnights).
    for window in ("", "&from=2026-11-20T09:00:00Z&to=2026-11-20T11:00:00Z"):
        rows = (await _get(client, f"/v1/usage?group_by=model{window}"))["rows"]
        by_model = {r["model"]: r for r in rows}
        assert by_model[UNKNOWN]["cost_usd"] is None, window
        assert by_model[UNKNOWN]["unpriced_events"] == 3, window
        assert by_model["google/gemini-3.0-flash"]["cost_usd"] == "0.0003", window
        (total,) = (await _get(client, f"/v1/usage?group_by={window}"))["rows"]
        assert (total["cost_usd"], total["unpriced_events"]) == ("0.0003", 3), window

    # A version that prices the model re-rates the events: their cost is known now.
    assert (await mistral_arrives(client))["repriced_events"] == 3
    job = await _get(client, "/v1/jobs/job-u")
    assert (job["cost_usd"], job["unpriced_events"]) == ("0.0025", 0)
    agent = await _get(client, "/v1/agents/Oracle-U")
    assert agent["cost_usd"] == "0.0025"
    assert agent["days"][0]["cost_usd"] == "0.0025"


async def test_a_total_whose_price_no_event_knows_has_no_price_and_no_margin(
    client: AsyncTestClient[Any],
) -> None:
    # SPEC §11: an event whose basis cost is unknown is unpriced for its customer too
    # (price_usd null), and margin_usd = price_usd − actual_cost_usd only where both are
    # known. Its job line said so; the job, the job list, the agent, its day, the usage
    # query and the customer's month said price "0" and, with a reported cost, a margin of
    # "-0.5": a loss no one made. job-p: two unpriced calls for acme (a 25 % markup on the
    # catalog cost), one reporting 0.5 USD; job-q: one unpriced call without a customer
    # nor a reported cost (no actual cost either).
    plan = {"id": "markup25", "name": "M", "effective_from": "2026-10-01T00:00:00Z"}
    plan |= {"basis": "catalog", "markup": "0.25"}
    assert (await client.post("/v1/plans", json=plan)).status_code == 201
    acme = {"id": "acme", "name": "Acme", "plan_id": "markup25"}
    assert (await client.post("/v1/customers", json=acme)).status_code == 201
    await record_accepted(
        client,
        [
            wire_event("p1", job_id="job-p", agent="Oracle-P", model=UNKNOWN, customer_id="acme"),
            wire_event(
                "p2",
                job_id="job-p",
                agent="Oracle-P",
                model=UNKNOWN,
                customer_id="acme",
                provider_cost_usd="0.5",
            ),
            wire_event("q1", job_id="job-q", agent="Oracle-Q", model=UNKNOWN),
        ],
    )

    def money(totals: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(totals[k] for k in ("cost_usd", "actual_cost_usd", "price_usd", "margin_usd"))

    p = (None, "0.5", None, None)  # the actual cost one event reported, nothing else
    q = (None, None, None, None)
    job_p = await _get(client, "/v1/jobs/job-p")
    assert money(job_p) == p
    assert [money(line) for line in job_p["lines"]] == [p]
    assert money(await _get(client, "/v1/jobs/job-q")) == q
    listed = {j["job_id"]: money(j) for j in (await _get(client, "/v1/jobs"))["items"]}
    assert listed == {"job-p": p, "job-q": q}
    agent = await _get(client, "/v1/agents/Oracle-P")
    assert money(agent) == p
    assert [money(d) for d in agent["days"]] == [p]
    agents = {a["agent"]: money(a) for a in (await _get(client, "/v1/agents"))["items"]}
    assert agents == {"Oracle-P": p, "Oracle-Q": q}
    for window in ("", "&from=2026-11-20T09:00:00Z&to=2026-11-20T11:00:00Z"):
        rows = (await _get(client, f"/v1/usage?group_by=agent{window}"))["rows"]
        assert {r["agent"]: money(r) for r in rows} == {"Oracle-P": p, "Oracle-Q": q}, window
        (total,) = (await _get(client, f"/v1/usage?group_by={window}"))["rows"]
        assert money(total) == p, window
    by_customer = (await _get(client, "/v1/usage?group_by=customer"))["rows"]
    assert {r["customer"]: money(r) for r in by_customer} == {"acme": p, None: q}

    # Priced once the catalog knows the model: 0.00125 a call, 0.0015625 at acme's price.
    await mistral_arrives(client)
    job_p = await _get(client, "/v1/jobs/job-p")
    assert money(job_p) == ("0.0025", "0.50125", "0.003125", "-0.498125")


async def test_a_customer_s_month_of_events_no_one_priced_has_no_price_nor_margin(
    client: AsyncTestClient[Any],
) -> None:
    # GET /v1/customers/{id}: month to date, from the customer × month rollup (so now).
    plan = {"id": "markup25", "name": "M", "effective_from": "2026-01-01T00:00:00Z"}
    plan |= {"basis": "catalog", "markup": "0.25"}
    assert (await client.post("/v1/plans", json=plan)).status_code == 201
    globex = {"id": "globex", "name": "Globex", "plan_id": "markup25"}
    assert (await client.post("/v1/customers", json=globex)).status_code == 201
    month = ("month", "price_usd", "actual_cost_usd", "margin_usd")
    # Clear of the month's end, and calls of this month (in its first minute too).
    now = await clear_of_end("month")
    this_month = now.strftime("%Y-%m")
    fresh = await _get(client, "/v1/customers/globex")
    assert tuple(fresh[k] for k in month) == (this_month, "0", "0", "0")  # no usage yet
    at = earlier_this_month(now).isoformat()
    unknown = {"job_id": "job-g", "model": UNKNOWN, "customer_id": "globex", "occurred_at": at}
    await record_accepted(client, [wire_event("g1", **unknown)])
    known = await _get(client, "/v1/customers/globex")
    assert tuple(known[k] for k in month) == (this_month, None, None, None)
    await record_accepted(client, [wire_event("g2", **unknown, provider_cost_usd="0.5")])
    known = await _get(client, "/v1/customers/globex")
    assert tuple(known[k] for k in month) == (this_month, None, "0.5", None)

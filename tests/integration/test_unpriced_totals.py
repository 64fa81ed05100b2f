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

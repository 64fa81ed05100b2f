"""``GET /v1/usage`` answers from a rollup when one holds the answer exactly, and its rows
are the very rows that summing the ledger gives, to the last digit.

Three UTC days of events from three agents on four models, one event a second before
midnight and one on it, a model no catalog knows (kept unpriced), one sent by an alias
that a later version brings (re-rated: a reversal and a re-booking, so a model × day row
of the alias is left at zero), and a replay (counted once). Every query below runs both
ways: through the rollup it is planned on, and forced onto the ledger.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import msgspec

from service.api.schemas.common import totals_fields, wire_value
from service.rollups.models import MEASURE_NAMES, Totals
from service.rollups.service import USAGE_GROUPS, usage, usage_groups, usage_rollup_plan
from tests.support.catalogs import mistral_arrives
from tests.support.events import many_calls, record_accepted, wire_event


def ev(
    event_id: str, at: str, agent: str, provider: str, model: str, inp: int, out: int, **more: Any
) -> dict[str, Any]:
    """A call of job-a (job-b for ByteRover), its fields in the order the table below gives
    them."""
    return wire_event(
        event_id,
        occurred_at=at,
        job_id="job-a" if agent != "ByteRover" else "job-b",
        agent=agent,
        provider=provider,
        model=model,
        input_tokens=inp,
        output_tokens=out,
        **more,
    )


EVENTS = [
    # 10,000 × 3 + 1,000 × 15 = 45,000 per 1M
    ev("r1", "2026-10-10T09:00:00Z", "ACHEEVY", "openrouter", "anthropic/claude-sonnet-4.5",
       10_000, 1_000, provider_cost_usd="0.045"),
    # 15,000 × 0.10 + 5,000 cache reads × 0.01 + 2,000 × 0.40 = 2,350 per 1M
    ev("r2", "2026-10-10T23:59:59Z", "ORACLE", "vertex", "gemini-3.0-flash", 20_000, 2_000,
       cached_input_tokens=5_000),
    # 10,000 × 0.10 + 1,000 × 0.40 = 1,400 per 1M; on midnight: the 11th
    ev("r3", "2026-10-11T00:00:00Z", "ORACLE", "vertex", "google/gemini-3.0-flash", 10_000, 1_000),
    # unpriced until version 2: then 30,000 × 0.50 + 2,000 × 1.50 = 18,000 per 1M
    ev("r4", "2026-10-11T12:00:00Z", "ACHEEVY", "openrouter", "mistral-large", 30_000, 2_000),
    # 100,000 × 0.10 + 10,000 × 0.10 = 11,000 per 1M
    ev("r5", "2026-10-12T08:00:00Z", "ByteRover", "openrouter",
       "meta-llama/llama-3.3-70b-instruct", 100_000, 10_000, provider_cost_usd="0.0111"),
    # 4,000 × 0.80 + 500 × 4 = 5,200 per 1M; job-a's customer from here on (and r1–r4
    # re-priced for it): the customer × month rollup holds both jobs' customers
    ev("r6", "2026-10-12T09:00:00Z", "ACHEEVY", "openrouter", "anthropic/claude-haiku-4.5",
       4_000, 500, customer_id="acme"),
    ev("r7", "2026-10-12T10:00:00Z", "ByteRover", "stub", "acme/never-priced", 1_000, 100),
]  # fmt: skip

OCT_10, OCT_11, OCT_12, OCT_13 = (f"2026-10-{d}T00:00:00Z" for d in (10, 11, 12, 13))

# (group_by, from, to, filters, where the answer comes from)
QUERIES: list[tuple[list[str], str | None, str | None, dict[str, str], str]] = [
    ([], None, None, {}, "rollup_agent_days"),
    (["agent"], None, None, {}, "rollup_agent_days"),
    (["agent", "day"], OCT_10, OCT_12, {}, "rollup_agent_days"),
    (["day"], OCT_11, None, {"agent": "ACHEEVY"}, "rollup_agent_days"),
    # 02:00 at +02:00 is a UTC midnight too
    (["day", "agent"], "2026-10-11T02:00:00+02:00", OCT_13, {}, "rollup_agent_days"),
    (["model"], None, None, {}, "rollup_model_days"),
    (["model", "day"], OCT_10, OCT_13, {"model": "google/gemini-3.0-flash"}, "rollup_model_days"),
    # the alias's row was re-rated away: no row either way
    (["day"], None, None, {"model": "mistral-large"}, "rollup_model_days"),
    (["agent", "model", "provider", "tier"], None, None, {}, "rollup_usage"),
    (["tier"], None, None, {"provider": "vertex"}, "rollup_usage"),
    (["provider"], None, None, {"agent": "ORACLE", "model": "google/gemini-3.0-flash"},
     "rollup_usage"),
    # what no rollup can answer exactly
    (["agent", "day"], "2026-10-10T12:00:00Z", OCT_12, {}, "ledger"),
    (["provider"], OCT_10, OCT_12, {}, "ledger"),
    (["agent"], None, None, {"job_id": "job-a"}, "ledger"),
    (["catalog_version"], None, None, {}, "ledger"),
    (["agent", "model"], OCT_11, None, {}, "ledger"),
    # by customer: the customer × month rollup on month bounds, else the ledger
    (["customer"], None, None, {}, "rollup_customer_months"),
    (["customer"], "2026-10-01T00:00:00Z", "2026-11-01T00:00:00Z", {}, "rollup_customer_months"),
    ([], None, "2026-11-01T00:00:00Z", {"customer_id": "acme"}, "rollup_customer_months"),
    (["customer"], OCT_10, None, {}, "ledger"),
    (["customer", "agent"], None, None, {}, "ledger"),
]  # fmt: skip


def _filters(filters: dict[str, str]) -> dict[str, str | None]:
    return {
        "agent": None,
        "model": None,
        "job_id": None,
        "provider": None,
        "customer_id": None,
        **filters,
    }


async def usage_as_python_wrote_it(
    db: asyncpg.Connection,
    keys: list[str],
    lower: datetime | None,
    upper: datetime | None,
    filters: dict[str, str | None],
    use_rollups: bool,
) -> list[dict[str, Any]]:
    """The rows of the same groups as LUC wrote them before PostgreSQL did: each value read
    as a Decimal, an int or a datetime, then written by ``service.wire``."""
    sql, params = usage_groups(keys, lower, upper, filters, use_rollups=use_rollups)
    order = f"ORDER BY {', '.join(keys)}" if keys else ""
    rows = []
    for r in await db.fetch(f"SELECT * FROM ({sql}) AS g {order}", *params):
        if keys and not r["events"] and r["cost_usd"] == 0:
            continue  # a group whose entries cancel out entirely (fully re-rated away)
        if not keys and r["first_event_at"] is None:
            continue
        rows.append({**{k: wire_value(r[k]) for k in keys}, **totals_fields(Totals.from_row(r))})
    return rows


async def assert_usage_as_python_wrote_it(db: asyncpg.Connection) -> None:
    """Every query of ``QUERIES``, both ways: PostgreSQL's rows are Python's, in order and
    to the character (0.0150 and 0.015 would differ)."""
    for group_by, start, end, filters, _ in QUERIES:
        lower = None if start is None else datetime.fromisoformat(start)
        upper = None if end is None else datetime.fromisoformat(end)
        every = _filters(filters)
        for use_rollups in (True, False):
            answered = await usage(
                db, group_by=group_by, start=lower, end=upper, **every, use_rollups=use_rollups
            )
            rows = [msgspec.structs.asdict(r) for r in answered]
            expected = await usage_as_python_wrote_it(
                db, group_by, lower, upper, every, use_rollups
            )
            assert rows == expected, (group_by, start, end, filters, use_rollups)
            # the same types too: an amount is text, a count an int (1 == True, "1" != 1)
            assert [[type(v) for v in r.values()] for r in rows] == [
                [type(v) for v in r.values()] for r in expected
            ]


async def test_rollup_and_ledger_paths_give_identical_usage_rows(
    client: Any, db: asyncpg.Connection
) -> None:
    response = await client.post("/v1/events/batch", json={"events": [*EVENTS, EVENTS[0]]})
    assert response.status_code == 200, response.text
    assert (response.json()["accepted"], response.json()["duplicates"]) == (7, 1)
    version = await mistral_arrives(client, effective_from="2026-01-01T00:00:00Z")
    assert version["repriced_events"] == 1

    for group_by, start, end, filters, source in QUERIES:
        lower = None if start is None else datetime.fromisoformat(start)
        upper = None if end is None else datetime.fromisoformat(end)
        every = _filters(filters)
        plan = usage_rollup_plan(group_by, lower, upper, every)
        assert (plan[0] if plan else "ledger") == source, (group_by, start, end, filters)
        kwargs: dict[str, Any] = dict(group_by=group_by, start=lower, end=upper, **every)
        from_rollup = await usage(db, **kwargs)
        from_ledger = await usage(db, **kwargs, use_rollups=False)
        re_rated_away = filters.get("model") == "mistral-large"
        assert bool(from_rollup) != re_rated_away, (group_by, start, end, filters)
        # in wire form: every amount as text, so 0.0150 and 0.015 would differ
        assert from_rollup == from_ledger, (group_by, start, end, filters)
    await assert_usage_as_python_wrote_it(db)


async def test_usage_by_agent_and_day_on_midnights_reads_the_rollup_figures_by_hand(
    client: Any, db: asyncpg.Connection
) -> None:
    response = await client.post("/v1/events/batch", json={"events": EVENTS})
    assert response.status_code == 200, response.text
    await mistral_arrives(client, effective_from="2026-01-01T00:00:00Z")
    answer = await client.get(
        "/v1/usage", params={"group_by": "agent,day", "from": OCT_10, "to": OCT_12}
    )
    assert answer.status_code == 200, answer.text
    rows = [
        (r["agent"], r["day"], Decimal(r["cost_usd"]), r["events"], r["input_tokens"])
        for r in answer.json()["rows"]
    ]
    assert rows == [
        ("ACHEEVY", "2026-10-10", Decimal("0.045"), 1, 10_000),
        # r4, re-rated from unpriced: its reversal and re-booking net to one event
        ("ACHEEVY", "2026-10-11", Decimal("0.018"), 1, 30_000),
        ("ORACLE", "2026-10-10", Decimal("0.00235"), 1, 20_000),
        ("ORACLE", "2026-10-11", Decimal("0.0014"), 1, 10_000),
    ]


async def test_usage_answers_of_many_rows_are_those_python_wrote(
    client: Any, db: asyncpg.Connection
) -> None:
    """Four agents over 31 days (124 agent × day rows, as ``bench.reads`` asks), five models,
    37 jobs: the answers through the API, both ways, are the rows Python wrote."""
    events = many_calls(1_500)
    for at in range(0, len(events), 500):
        await record_accepted(client, events[at : at + 500])
    answer = await client.get(
        "/v1/usage",
        params={
            "group_by": "agent,day",
            "from": "2026-10-01T00:00:00Z",
            "to": "2026-11-01T00:00:00Z",
        },
    )
    assert answer.status_code == 200, answer.text
    rows = answer.json()["rows"]
    assert len(rows) == 124
    expected = await usage_as_python_wrote_it(
        db,
        ["agent", "day"],
        datetime.fromisoformat("2026-10-01T00:00:00Z"),
        datetime.fromisoformat("2026-11-01T00:00:00Z"),
        _filters({}),
        use_rollups=False,
    )
    assert rows == expected
    for group_by in ("job_id", "model,day", "catalog_version,provider", "customer", "tier"):
        answer = await client.get("/v1/usage", params={"group_by": group_by})
        expected = await usage_as_python_wrote_it(
            db, group_by.split(","), None, None, _filters({}), use_rollups=False
        )
        assert answer.json()["rows"] == expected, group_by
    await assert_usage_as_python_wrote_it(db)


def test_a_query_for_a_rollups_whole_key_reads_its_rows_without_aggregating() -> None:
    """Each (agent, day) is one row of ``rollup_agent_days``: nothing to sum (the rows are
    checked against the ledger's above); asked for agents alone, its days are summed."""
    midnight = datetime(2026, 10, 10, tzinfo=UTC)
    whole, _ = usage_groups(["day", "agent"], midnight, None, _filters({"agent": "ORACLE"}))
    part, _ = usage_groups(["agent"], midnight, None, _filters({}))
    assert "FROM rollup_agent_days" in whole and "FROM rollup_agent_days" in part
    assert "GROUP BY" not in whole and "sum(" not in whole
    assert "GROUP BY agent" in part


async def test_a_key_named_twice_groups_once_and_is_answered_once(client: Any) -> None:
    # The rows had one column per key, but the answer's group_by named the key twice, so a
    # client building its table from group_by got a column the rows do not have.
    await record_accepted(client, EVENTS[:3])
    answer = await client.get("/v1/usage", params={"group_by": "agent, day,agent"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["group_by"] == ["agent", "day"]
    assert [(r["agent"], r["day"], r["events"]) for r in answer.json()["rows"]] == [
        ("ACHEEVY", "2026-10-10", 1),
        ("ORACLE", "2026-10-10", 1),
        ("ORACLE", "2026-10-11", 1),
    ]


async def test_the_openapi_document_names_every_field_of_a_usage_row(client: Any) -> None:
    # A row was documented as an object of any fields: the contract's keys, cost_usd,
    # events and token counts (SPEC §5) were nowhere in the document.
    await record_accepted(client, EVENTS[:4])
    document = (await client.get("/schema/openapi.json")).json()
    schemas = document["components"]["schemas"]
    usage_out = document["paths"]["/v1/usage"]["get"]["responses"]["200"]["content"]
    out = schemas[usage_out["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]]
    row = schemas[out["properties"]["rows"]["items"]["$ref"].rsplit("/", 1)[1]]
    measures = set(MEASURE_NAMES)
    assert set(row["required"]) == measures
    assert set(row["properties"]) == measures | set(USAGE_GROUPS)
    every_key = ",".join(USAGE_GROUPS)
    answer = await client.get("/v1/usage", params={"group_by": every_key})
    assert answer.status_code == 200, answer.text
    rows = answer.json()["rows"]
    assert len(rows) == 4
    for r in rows:
        assert set(r) == measures | set(USAGE_GROUPS)
    # Each value of the type the document gives it (a key may be null: an unpriced event
    # has no tier nor catalog version, a job without a customer none).
    json_types = {str: "string", int: "integer", type(None): "null"}
    for r in rows:
        for name, v in r.items():
            declared = row["properties"][name]
            types = (
                {declared["type"]} if "type" in declared else {o["type"] for o in declared["oneOf"]}
            )
            assert json_types[type(v)] in types, (name, v, declared)

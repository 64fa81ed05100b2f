"""A month of one job's LLM calls, priced by hand and read back through every REST view.

The story: job ``job-scn-1`` runs across a catalog change. Until 2025-11-01 the AIMS
catalog (version 1, with its cache prices) prices it; from then on a second version with
explicit cache-read, cache-write, reasoning and per-request prices does. Four agents call
five models, with cached, cache-write and reasoning tokens, and one model no catalog knows.
Two smaller jobs sit beside it. Every amount below is worked out by hand from the catalog
prices (per 1M tokens) and compared to the last digit, as the decimal string the API
returns.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg

from service.catalog.service import NewCatalogVersion, create_version
from service.pricing.models import NewModelPrice
from tests.support.events import wire_event
from tests.support.ledger_truth import TOKEN_FIELDS

D = Decimal

# Version 2, effective 2025-11-01T00:00Z. A full snapshot: only these three models.
SCENARIO_V2 = NewCatalogVersion(
    effective_from=datetime(2025, 11, 1, tzinfo=UTC),
    label="scenario-v2",
    models=[
        # every class priced explicitly, no per-request fee
        NewModelPrice(
            model_id="anthropic/claude-sonnet-4.5",
            name="Claude Sonnet 4.5",
            tier="standard",
            input=D("3.00"),
            output=D("15.00"),
            cache_read=D("0.30"),
            cache_write=D("3.75"),
            reasoning=D("18.00"),
        ),
        # defaults: cache_read = cache_write = input, reasoning = output
        NewModelPrice(
            model_id="google/gemini-3.0-flash",
            name="Gemini 3.0 Flash",
            tier="fast",
            input=D("0.10"),
            output=D("0.40"),
        ),
        # every class priced, plus USD 0.002 per call
        NewModelPrice(
            model_id="acme/tool-model",
            name="Acme Tool Model",
            tier="economy",
            input=D("0.50"),
            output=D("1.50"),
            cache_read=D("0.05"),
            cache_write=D("0.625"),
            reasoning=D("2.00"),
            per_request=D("0.002"),
        ),
    ],
    aliases={
        "gemini-3.0-flash": "google/gemini-3.0-flash",
        "sonnet": "anthropic/claude-sonnet-4.5",
    },
)


def ev(
    event_id: str,
    occurred_at: str,
    job_id: str,
    agent: str,
    provider: str,
    model: str,
    tokens: tuple[int, int, int, int, int],
    provider_cost: str | None = None,
) -> dict[str, Any]:
    """tokens = (input, cached, cache_write, output, reasoning)."""
    inp, cached, written, out, reasoning = tokens
    return wire_event(
        event_id,
        occurred_at=occurred_at,
        job_id=job_id,
        agent=agent,
        provider=provider,
        model=model,
        input_tokens=inp,
        cached_input_tokens=cached,
        cache_write_tokens=written,
        output_tokens=out,
        reasoning_tokens=reasoning,
        provider_cost_usd=... if provider_cost is None else provider_cost,
    )


JOB = "job-scn-1"
UNKNOWN = "mistralai/unknown-model-x"

EVENTS = [
    # e1, v1 opus-4.6 (5 / 25, cache read 0.50, cache write 6.25, reasoning defaults to 25):
    #   (20000 − 12000 − 3000)·5 + 12000·0.50 + 3000·6.25 + (4000 − 1500)·25 + 1500·25
    #   = 25000 + 6000 + 18750 + 62500 + 37500 = 149750 per 1M → 0.14975
    ev(
        "scn-e1",
        "2025-10-30T09:00:00Z",
        JOB,
        "ACHEEVY",
        "openrouter",
        "anthropic/claude-opus-4.6",
        (20000, 12000, 3000, 4000, 1500),
        "0.2100",
    ),
    # e2, v1 gemini-3.0-flash by alias (0.10 / 0.40, cache read 0.01):
    #   10000·0.10 + 40000·0.01 + 2000·0.40 = 1000 + 400 + 800 = 2200 → 0.0022
    # one second before version 2 takes over, with an offset: 2025-10-31T23:59:59Z
    ev(
        "scn-e2",
        "2025-11-01T00:59:59+01:00",
        JOB,
        "ORACLE",
        "vertex",
        "gemini-3.0-flash",
        (50000, 40000, 0, 2000, 1000),
    ),
    # e3, v2 sonnet by alias:
    #   plain input (30000 − 20000 − 5000) = 5000 · 3.00 = 15000
    #   cache read 20000 · 0.30                        =  6000
    #   cache write 5000 · 3.75                        = 18750
    #   plain output (3000 − 1200) = 1800 · 15.00      = 27000
    #   reasoning 1200 · 18.00                         = 21600
    #   88350 per 1M → 0.08835
    ev(
        "scn-e3",
        "2025-11-20T10:00:00Z",
        JOB,
        "ACHEEVY",
        "openrouter",
        "sonnet",
        (30000, 20000, 5000, 3000, 1200),
        "0.0883",
    ),
    # e4, v2 sonnet by id, same line as e3:
    #   234·3.00 + 1000·3.75 + 567·15.00 = 702 + 3750 + 8505 = 12957 → 0.012957
    ev(
        "scn-e4",
        "2025-11-20T14:30:00Z",
        JOB,
        "ACHEEVY",
        "openrouter",
        "anthropic/claude-sonnet-4.5",
        (1234, 0, 1000, 567, 0),
    ),
    # e5, v2 acme/tool-model:
    #   plain input (7777 − 1111 − 2222) = 4444 · 0.50 = 2222
    #   cache read 1111 · 0.05                        =   55.55
    #   cache write 2222 · 0.625                      = 1388.75
    #   plain output (3333 − 444) = 2889 · 1.50       = 4333.5
    #   reasoning 444 · 2.00                          =  888
    #   8887.8 per 1M = 0.0088878, + 0.002 per request → 0.0108878
    ev(
        "scn-e5",
        "2025-11-21T08:15:00Z",
        JOB,
        "Boomer_Ang",
        "acme",  # the tool model's own provider
        "acme/tool-model",
        (7777, 1111, 2222, 3333, 444),
        "0.011",
    ),
    # e6, v2 acme/tool-model, a failed call with no tokens: the per-request fee alone, 0.002
    {
        **ev(
            "scn-e6",
            "2025-11-21T08:16:00Z",
            JOB,
            "Boomer_Ang",
            "acme",
            "acme/tool-model",
            (0, 0, 0, 0, 0),
        ),
        "status": "error",
    },
    # e7, a model no version knows: kept, unpriced, its line's cost null
    ev(
        "scn-e7",
        "2025-11-21T09:00:00Z",
        JOB,
        "ByteRover",
        "openrouter",
        UNKNOWN,
        (1000, 0, 0, 100, 0),
    ),
    # e8, v2 gemini-3.0-flash (defaults): 10000·0.10 + 1000·0.40 = 1400 → 0.0014
    ev(
        "scn-e8",
        "2025-11-22T00:00:00Z",
        JOB,
        "ORACLE",
        "vertex",
        "google/gemini-3.0-flash",
        (10000, 5000, 0, 1000, 0),
    ),
    # job-scn-2, v2 gemini-3.0-flash: 100000·0.10 + 10000·0.40 = 14000 → 0.014
    ev(
        "scn-f1",
        "2025-11-20T20:00:00Z",
        "job-scn-2",
        "ACHEEVY",
        "openrouter",
        "gemini-3.0-flash",
        (100000, 0, 0, 10000, 0),
    ),
    # job-scn-3, v1 llama-3.3-70b (0.10 / 0.10): 3000·0.10 + 2000·0.10 = 500 → 0.0005
    ev(
        "scn-g1",
        "2025-10-15T12:00:00Z",
        "job-scn-3",
        "ORACLE",
        "openrouter",
        "meta-llama/llama-3.3-70b-instruct",
        (3000, 0, 0, 2000, 0),
    ),
]


def token_counts(body: dict[str, Any]) -> tuple[int, ...]:
    return tuple(body[n] for n in TOKEN_FIELDS)


async def record_scenario(client: Any, db: asyncpg.Connection) -> int:
    """Add version 2, send every event in one batch; return version 2's id."""
    async with db.transaction():
        v2 = await create_version(db, SCENARIO_V2)
    response = await client.post("/v1/events/batch", json={"events": EVENTS})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["accepted"], answer["duplicates"], answer["conflicts"], answer["rejected"]) == (
        10,
        0,
        0,
        0,
    )
    assert [r["id"] for r in answer["results"]] == [e["id"] for e in EVENTS]
    return v2


async def test_a_jobs_cost_and_each_line_equal_the_hand_computed_amounts(
    client: Any, db: asyncpg.Connection
) -> None:
    v2 = await record_scenario(client, db)
    response = await client.get(f"/v1/jobs/{JOB}")
    assert response.status_code == 200, response.text
    job = response.json()

    # 0.14975 + 0.0022 + 0.08835 + 0.012957 + 0.0108878 + 0.002 + 0.0014 = 0.2675448
    assert job["cost_usd"] == "0.2675448"
    assert job["job_id"] == JOB
    assert job["events"] == 8
    assert job["unpriced_events"] == 1
    # input   20000 + 50000 + 30000 + 1234 + 7777 + 0 + 1000 + 10000 = 120011
    # cached  12000 + 40000 + 20000 +    0 + 1111 + 0 +    0 +  5000 =  78111
    # written  3000 +     0 +  5000 + 1000 + 2222 + 0 +    0 +     0 =  11222
    # output   4000 +  2000 +  3000 +  567 + 3333 + 0 +  100 +  1000 =  14000
    # reason   1500 +  1000 +  1200 +    0 +  444 + 0 +    0 +     0 =   4144
    assert token_counts(job) == (120011, 78111, 11222, 14000, 4144)
    # 0.2100 + 0.0883 + 0.011 = 0.3093
    assert job["provider_cost_usd"] == "0.3093"
    assert job["first_event_at"] == "2025-10-30T09:00:00Z"
    assert job["last_event_at"] == "2025-11-22T00:00:00Z"
    assert isinstance(job["cost_usd"], str)

    lines = {
        (line["agent"], line["model"], line["provider"], line["catalog_version"]): line
        for line in job["lines"]
    }
    expected = {
        # (agent, catalog model id, provider, version): (cost, events, unpriced, tokens)
        ("ACHEEVY", "anthropic/claude-opus-4.6", "openrouter", 1): (
            "0.14975",
            1,
            0,
            (20000, 12000, 3000, 4000, 1500),
        ),
        # 0.08835 + 0.012957 = 0.101307; tokens e3 + e4
        ("ACHEEVY", "anthropic/claude-sonnet-4.5", "openrouter", v2): (
            "0.101307",
            2,
            0,
            (31234, 20000, 6000, 3567, 1200),
        ),
        # 0.0108878 + 0.002 = 0.0128878
        ("Boomer_Ang", "acme/tool-model", "acme", v2): (
            "0.0128878",
            2,
            0,
            (7777, 1111, 2222, 3333, 444),
        ),
        ("ByteRover", UNKNOWN, "openrouter", None): (None, 1, 1, (1000, 0, 0, 100, 0)),
        # one model, two versions: two lines, each with its own unit price
        ("ORACLE", "google/gemini-3.0-flash", "vertex", 1): (
            "0.0022",
            1,
            0,
            (50000, 40000, 0, 2000, 1000),
        ),
        ("ORACLE", "google/gemini-3.0-flash", "vertex", v2): (
            "0.0014",
            1,
            0,
            (10000, 5000, 0, 1000, 0),
        ),
    }
    assert set(lines) == set(expected)
    for key, (cost, events, unpriced, tokens) in expected.items():
        line = lines[key]
        assert line["cost_usd"] == cost, key
        assert line["events"] == events, key
        assert line["unpriced_events"] == unpriced, key
        assert token_counts(line) == tokens, key

    # The unit prices a line names are the version's, defaults applied.
    sonnet = lines[("ACHEEVY", "anthropic/claude-sonnet-4.5", "openrouter", v2)]
    assert sonnet["unit_prices"] == {
        "input": "3",
        "output": "15",
        "cache_read": "0.3",
        "cache_write": "3.75",
        "reasoning": "18",
        "per_request": "0",
    }
    flash_v1 = lines[("ORACLE", "google/gemini-3.0-flash", "vertex", 1)]
    assert flash_v1["unit_prices"] == {
        "input": "0.1",
        "output": "0.4",
        "cache_read": "0.01",
        "cache_write": "0.1",
        "reasoning": "0.4",
        "per_request": "0",
    }
    assert lines[("ByteRover", UNKNOWN, "openrouter", None)]["unit_prices"] is None


async def test_a_jobs_ledger_entries_name_each_events_price_and_version(
    client: Any, db: asyncpg.Connection
) -> None:
    v2 = await record_scenario(client, db)
    first = (await client.get(f"/v1/jobs/{JOB}/entries", params={"limit": 5})).json()
    assert len(first["items"]) == 5
    assert first["next_cursor"] is not None
    second = (
        await client.get(
            f"/v1/jobs/{JOB}/entries", params={"limit": 5, "cursor": first["next_cursor"]}
        )
    ).json()
    assert len(second["items"]) == 3
    assert second["next_cursor"] is None
    entries = {e["event_id"]: e for e in first["items"] + second["items"]}
    assert [e["kind"] for e in entries.values()] == ["charge"] * 8
    assert {k: (e["cost_usd"], e["catalog_version"]) for k, e in entries.items()} == {
        "scn-e1": ("0.14975", 1),
        "scn-e2": ("0.0022", 1),
        "scn-e3": ("0.08835", v2),
        "scn-e4": ("0.012957", v2),
        "scn-e5": ("0.0108878", v2),
        "scn-e6": ("0.002", v2),
        "scn-e7": (None, None),
        "scn-e8": ("0.0014", v2),
    }
    # aliases are stored resolved
    assert entries["scn-e3"]["model"] == "anthropic/claude-sonnet-4.5"
    assert entries["scn-e2"]["model"] == "google/gemini-3.0-flash"
    assert entries["scn-e2"]["occurred_at"] == "2025-10-31T23:59:59Z"
    assert entries["scn-e5"]["unit_prices"]["per_request"] == "0.002"
    assert entries["scn-e5"]["provider_cost_usd"] == "0.011"
    unpriced = entries["scn-e7"]
    assert unpriced["unpriced_events"] == 1
    assert unpriced["unit_prices"] is None
    assert UNKNOWN in unpriced["reason"]


async def test_the_job_list_pages_and_filters_by_agent_and_time(
    client: Any, db: asyncpg.Connection
) -> None:
    await record_scenario(client, db)
    page1 = (await client.get("/v1/jobs", params={"limit": 2})).json()
    assert [j["job_id"] for j in page1["items"]] == ["job-scn-1", "job-scn-2"]
    assert page1["items"][0]["cost_usd"] == "0.2675448"
    assert "lines" not in page1["items"][0]
    page2 = (
        await client.get("/v1/jobs", params={"limit": 2, "cursor": page1["next_cursor"]})
    ).json()
    assert [(j["job_id"], j["cost_usd"]) for j in page2["items"]] == [("job-scn-3", "0.0005")]
    assert page2["next_cursor"] is None

    async def job_ids(**params: str) -> list[str]:
        response = await client.get("/v1/jobs", params=params)
        assert response.status_code == 200, response.text
        return [j["job_id"] for j in response.json()["items"]]

    assert await job_ids() == ["job-scn-1", "job-scn-2", "job-scn-3"]
    assert await job_ids(agent="Boomer_Ang") == ["job-scn-1"]
    assert await job_ids(agent="ACHEEVY") == ["job-scn-1", "job-scn-2"]
    assert await job_ids(agent="nobody") == []
    # job-scn-2's only event is at 2025-11-20T20:00Z; `to` is exclusive, `from` inclusive
    assert await job_ids(**{"from": "2025-11-20T20:00:00Z"}) == ["job-scn-1", "job-scn-2"]
    assert await job_ids(**{"from": "2025-11-20T20:00:00.000001Z"}) == ["job-scn-1"]
    assert await job_ids(**{"to": "2025-10-15T12:00:00Z"}) == []
    assert await job_ids(**{"to": "2025-10-15T12:00:01Z"}) == ["job-scn-3"]
    # job-scn-1 has events on 10-30, 10-31 and from 11-20: none between 11-01 and 11-20
    window = {"from": "2025-11-01T00:00:00Z", "to": "2025-11-20T00:00:00Z"}
    assert await job_ids(**window) == []
    window = {"from": "2025-10-01T00:00:00Z", "to": "2025-10-31T00:00:00Z"}
    assert await job_ids(**window) == ["job-scn-1", "job-scn-3"]
    # Together the filters hold of the same events: ORACLE's event on job-scn-1 is at
    # 10-31T23:59:59Z, past the window; Boomer_Ang worked on job-scn-1 only on 11-21.
    # (The filters apart kept job-scn-1 both times.)
    assert await job_ids(agent="ORACLE", **window) == ["job-scn-3"]
    assert await job_ids(agent="Boomer_Ang", **window) == []
    november = {"from": "2025-11-21T00:00:00Z", "to": "2025-11-22T00:00:00Z"}
    assert await job_ids(agent="Boomer_Ang", **november) == ["job-scn-1"]


async def test_a_cursor_this_api_did_not_issue_is_refused_never_read_as_the_start(
    client: Any, db: asyncpg.Connection
) -> None:
    await record_scenario(client, db)
    page1 = (await client.get("/v1/jobs", params={"limit": 2})).json()
    cursor = page1["next_cursor"]
    # Characters outside base64's alphabet were dropped before decoding: "!!!" read as the
    # empty cursor (the first page again, a client paging on would loop), and a cursor
    # with a character added as the very one issued.
    for tampered in ("!!!", f"{cursor}!", f"{cursor[:2]}*{cursor[2:]}", "%%", "a b"):
        for path in ("/v1/jobs", f"/v1/jobs/{JOB}/entries", "/v1/customers"):
            response = await client.get(path, params={"cursor": tampered})
            assert response.status_code == 400, (path, tampered, response.text)
            assert response.json()["detail"] == "cursor is not one this API issued"
    page2 = (await client.get("/v1/jobs", params={"limit": 2, "cursor": cursor})).json()
    assert [j["job_id"] for j in page2["items"]] == ["job-scn-3"]


async def test_a_forged_cursor_that_decodes_is_refused_as_not_issued(
    client: Any, db: asyncpg.Connection
) -> None:
    """A cursor that is valid base64 of a position no answer gives: digits that are not
    ASCII ("²" passed str.isdigit and failed int(), a 500), an entry id beyond 64 bits, a
    NUL (no id holds one). Each is refused as a cursor, never an internal error."""
    await record_scenario(client, db)

    def forged(position: str) -> str:
        return base64.urlsafe_b64encode(position.encode()).decode().rstrip("=")

    numbered = (f"/v1/jobs/{JOB}/entries", "/v1/usage/parked")
    for position, paths in (
        ("²", numbered),
        ("١", numbered),
        ("9" * 30, numbered),
        ("9" * 5_000, numbered),
        ("9223372036854775808", numbered),
        ("a\x00b", ("/v1/jobs", "/v1/customers", "/v1/unpriced", *numbered)),
    ):
        for path in paths:
            response = await client.get(path, params={"cursor": forged(position)})
            assert response.status_code == 400, (path, position, response.text)
            assert response.json()["detail"] == "cursor is not one this API issued"
    # The largest entry id there can be is a position, after every entry.
    page = await client.get(
        f"/v1/jobs/{JOB}/entries", params={"cursor": forged("9223372036854775807")}
    )
    assert page.status_code == 200, page.text
    assert page.json()["items"] == []


async def test_agents_show_totals_and_daily_series_for_whole_and_partial_days(
    client: Any, db: asyncpg.Connection
) -> None:
    await record_scenario(client, db)
    agents = {a["agent"]: a for a in (await client.get("/v1/agents")).json()["items"]}
    assert {a: (v["cost_usd"], v["events"], v["unpriced_events"]) for a, v in agents.items()} == {
        # e1 0.14975 + e3 0.08835 + e4 0.012957 + f1 0.014 = 0.265057
        "ACHEEVY": ("0.265057", 4, 0),
        # e5 0.0108878 + e6 0.002
        "Boomer_Ang": ("0.0128878", 2, 0),
        # only the unpriced call: no known cost (null, not zero), and it says so
        "ByteRover": (None, 1, 1),
        # e2 0.0022 + e8 0.0014 + g1 0.0005 = 0.0041
        "ORACLE": ("0.0041", 3, 0),
    }
    # 20000 + 30000 + 1234 + 100000 input tokens; 4000 + 3000 + 567 + 10000 output
    assert token_counts(agents["ACHEEVY"]) == (151234, 32000, 9000, 17567, 2700)

    whole = (await client.get("/v1/agents/ACHEEVY")).json()
    assert whole["cost_usd"] == "0.265057"
    assert [(d["day"], d["cost_usd"], d["events"]) for d in whole["days"]] == [
        ("2025-10-30", "0.14975", 1),
        # e3 0.08835 + e4 0.012957 + f1 0.014 = 0.115307
        ("2025-11-20", "0.115307", 3),
    ]

    # UTC midnights (one written with an offset): the whole day of 11-20
    day = (
        await client.get(
            "/v1/agents/ACHEEVY",
            params={"from": "2025-11-20T01:00:00+01:00", "to": "2025-11-21T00:00:00Z"},
        )
    ).json()
    assert (day["cost_usd"], day["events"]) == ("0.115307", 3)
    assert [(d["day"], d["cost_usd"]) for d in day["days"]] == [("2025-11-20", "0.115307")]
    assert token_counts(day) == (131234, 20000, 6000, 13567, 1200)

    # mid-day bounds: only e4 (14:30); f1 at 20:00 is excluded by the exclusive `to`
    part = (
        await client.get(
            "/v1/agents/ACHEEVY",
            params={"from": "2025-11-20T12:00:00Z", "to": "2025-11-20T20:00:00Z"},
        )
    ).json()
    assert (part["cost_usd"], part["events"]) == ("0.012957", 1)
    assert [(d["day"], d["cost_usd"], d["events"]) for d in part["days"]] == [
        ("2025-11-20", "0.012957", 1)
    ]
    assert token_counts(part) == (1234, 0, 1000, 567, 0)

    oracle = (
        await client.get(
            "/v1/agents/ORACLE",
            params={"from": "2025-10-31T12:00:00Z", "to": "2025-11-22T00:00:01Z"},
        )
    ).json()
    # e2 (10-31 23:59:59) and e8 (11-22 00:00:00): 0.0022 + 0.0014
    assert [(d["day"], d["cost_usd"]) for d in oracle["days"]] == [
        ("2025-10-31", "0.0022"),
        ("2025-11-22", "0.0014"),
    ]
    assert oracle["cost_usd"] == "0.0036"


async def test_the_usage_query_groups_and_filters_to_the_last_digit(
    client: Any, db: asyncpg.Connection
) -> None:
    v2 = await record_scenario(client, db)

    async def rows(**params: str) -> list[dict[str, Any]]:
        response = await client.get("/v1/usage", params=params)
        assert response.status_code == 200, response.text
        result: list[dict[str, Any]] = response.json()["rows"]
        return result

    by_model = {r["model"]: (r["cost_usd"], r["events"]) for r in await rows(group_by="model")}
    assert by_model == {
        "acme/tool-model": ("0.0128878", 2),
        "anthropic/claude-opus-4.6": ("0.14975", 1),
        "anthropic/claude-sonnet-4.5": ("0.101307", 2),
        # e2 0.0022 + e8 0.0014 + f1 0.014
        "google/gemini-3.0-flash": ("0.0176", 3),
        "meta-llama/llama-3.3-70b-instruct": ("0.0005", 1),
        UNKNOWN: (None, 1),  # unpriced only: unknown, not zero
    }

    by_tier = {
        r["tier"]: (r["cost_usd"], r["unpriced_events"]) for r in await rows(group_by="tier")
    }
    assert by_tier == {
        "premium": ("0.14975", 0),
        "standard": ("0.101307", 0),
        "fast": ("0.0176", 0),
        # acme 0.0128878 + llama 0.0005
        "economy": ("0.0133878", 0),
        None: (None, 1),
    }

    by_version = {
        r["catalog_version"]: r["cost_usd"] for r in await rows(group_by="catalog_version")
    }
    # v1: 0.14975 + 0.0022 + 0.0005; v2: 0.101307 + 0.0128878 + 0.0014 + 0.014
    assert by_version == {1: "0.15245", v2: "0.1295948", None: None}

    job_days = await rows(group_by="agent,day", job_id=JOB)
    assert [(r["agent"], r["day"], r["cost_usd"]) for r in job_days] == [
        ("ACHEEVY", "2025-10-30", "0.14975"),
        ("ACHEEVY", "2025-11-20", "0.101307"),
        ("Boomer_Ang", "2025-11-21", "0.0128878"),
        ("ByteRover", "2025-11-21", None),  # unpriced only
        ("ORACLE", "2025-10-31", "0.0022"),
        ("ORACLE", "2025-11-22", "0.0014"),
    ]

    november = await rows(
        group_by="provider", **{"from": "2025-11-01T00:00:00Z", "to": "2025-12-01T00:00:00Z"}
    )
    assert {r["provider"]: (r["cost_usd"], r["events"]) for r in november} == {
        # e3 0.08835 + e4 0.012957 + f1 0.014; e7 unpriced
        "openrouter": ("0.115307", 4),
        "acme": ("0.0128878", 2),
        "vertex": ("0.0014", 1),
    }

    flash = await rows(group_by="agent", model="google/gemini-3.0-flash")
    assert [(r["agent"], r["cost_usd"]) for r in flash] == [
        ("ACHEEVY", "0.014"),
        ("ORACLE", "0.0036"),
    ]

    total = await rows(agent="ACHEEVY", **{"to": "2025-11-20T14:30:00Z"})
    # e1 0.14975 + e3 0.08835 (e4 at 14:30 is excluded)
    assert [(r["cost_usd"], r["events"]) for r in total] == [("0.2381", 2)]
    assert token_counts(total[0]) == (50000, 32000, 8000, 7000, 2700)

    bad = await client.get("/v1/usage", params={"group_by": "colour"})
    assert bad.status_code in (400, 422)
    assert "group_by" in bad.json()["detail"]


async def test_an_unknown_model_is_kept_listed_and_never_priced_at_zero(
    client: Any, db: asyncpg.Connection
) -> None:
    await record_scenario(client, db)
    unpriced = (await client.get("/v1/unpriced")).json()
    assert [(u["id"], u["model"], u["job_id"]) for u in unpriced["items"]] == [
        ("scn-e7", UNKNOWN, JOB)
    ]
    assert unpriced["items"][0]["input_tokens"] == 1000
    assert UNKNOWN in unpriced["items"][0]["reason"]
    assert (await client.get("/v1/unpriced", params={"model": UNKNOWN})).json()["items"]
    assert not (await client.get("/v1/unpriced", params={"job_id": "job-scn-2"})).json()["items"]

    job = (await client.get(f"/v1/jobs/{JOB}")).json()
    line = next(ln for ln in job["lines"] if ln["model"] == UNKNOWN)
    assert line["cost_usd"] is None
    assert line["catalog_version"] is None
    assert job["unpriced_events"] == 1
    stored = await db.fetchrow(
        "SELECT cost_usd, catalog_version, unpriced_count FROM ledger_entries WHERE event_id = $1",
        "scn-e7",
    )
    assert stored is not None
    assert (stored["cost_usd"], stored["catalog_version"], stored["unpriced_count"]) == (
        None,
        None,
        1,
    )


async def test_an_unknown_job_or_agent_is_not_found(client: Any, db: asyncpg.Connection) -> None:
    await record_scenario(client, db)
    for path in ("/v1/jobs/no-such-job", "/v1/jobs/no-such-job/entries", "/v1/agents/Nobody"):
        response = await client.get(path)
        assert response.status_code == 404, path
        assert response.json()["status_code"] == 404
        assert "no recorded usage" in response.json()["detail"]

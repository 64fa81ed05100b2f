"""Three costs per event (SPEC §3): the catalog's list price (``cost_usd``), what the
provider reported (``provider_cost_usd``) and what was actually paid (``actual_cost_usd``:
the provider's figure where reported, else the catalog's), through every reader.

The story runs on a catalog of its own (effective 2026-06-01, so the AIMS prices play no
part), USD per 1M tokens: vendor/alpha (standard) 2 in / 10 out, vendor/beta (fast)
0.50 / 1.50; vendor/gamma is unknown at first.

    event  agent    model  provider    tokens in/out   catalog   reported  actual
    a1     ACHEEVY  alpha  openrouter  100,000/10,000  0.3       0.29      0.29
    a2     ACHEEVY  alpha  vertex       50,000/2,000   0.12      —         0.12
    b1     ORACLE   beta   openrouter   40,000/4,000   0.026     0.0259    0.0259
    u1     ORACLE   gamma  openrouter   10,000/1,000   unpriced  0.0123    0.0123
    u2     ORACLE   gamma  vertex       20,000/2,000   unpriced  —         unknown
    u3     ORACLE   gamma  openrouter    5,000/500     unpriced  —         unknown

a1: 100,000 × 2 + 10,000 × 10 = 300,000 per 1M; a2: 100,000 + 20,000 = 120,000;
b1: 40,000 × 0.5 + 4,000 × 1.5 = 26,000. u3 is recorded before u1, in a batch of its own:
their job line (ORACLE, gamma, openrouter, no version) first knows no actual cost, then
knows u1's.

Then a version created later with the same effective_from (it wins the tie) raises alpha's
input to 3 and adds gamma at 1 / 2 (economy): creating it prices the gamma events
(u1 12,000 → 0.012, u2 24,000 → 0.024, u3 6,000 → 0.006) and re-rating since 2026-06-01
moves alpha (a1 400,000 → 0.4, a2 170,000 → 0.17). An event the provider reported keeps
its actual cost whatever its catalog cost does (a1, u1); one it did not report follows the
catalog by the same delta (a2: +0.05), or gets an actual cost once priced (u2, u3).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import asyncpg
from prometheus_client.parser import text_string_to_metric_families

from tests.support.catalogs import ALPHA, BETA, CATALOG, CORRECTION, EFFECTIVE, GAMMA
from tests.support.events import record_accepted, wire_event
from tests.support.ledger_truth import assert_rollups_equal_ledger

D = Decimal
JOB = "job-3c"


def call(
    event_id: str,
    day: int,
    agent: str,
    model: str,
    provider: str,
    tokens: tuple[int, int],
    **more: Any,
) -> dict[str, Any]:
    return wire_event(
        event_id,
        occurred_at=f"2026-07-0{day}T10:00:00Z",
        job_id=JOB,
        agent=agent,
        model=model,
        provider=provider,
        input_tokens=tokens[0],
        output_tokens=tokens[1],
        **more,
    )


U3 = call("u3", 2, "ORACLE", GAMMA, "openrouter", (5_000, 500))
EVENTS = [
    call("a1", 1, "ACHEEVY", ALPHA, "openrouter", (100_000, 10_000), provider_cost_usd="0.29"),
    call("a2", 1, "ACHEEVY", ALPHA, "vertex", (50_000, 2_000)),
    call("b1", 2, "ORACLE", BETA, "openrouter", (40_000, 4_000), provider_cost_usd="0.0259"),
    call("u1", 2, "ORACLE", GAMMA, "openrouter", (10_000, 1_000), provider_cost_usd="0.0123"),
    call("u2", 3, "ORACLE", GAMMA, "vertex", (20_000, 2_000)),
]


def costs(row: dict[str, Any]) -> tuple[Decimal | None, ...]:
    """(catalog, actual, reported) of a wire row, as exact decimals."""
    return tuple(
        None if row[k] is None else D(row[k])
        for k in ("cost_usd", "actual_cost_usd", "provider_cost_usd")
    )


async def get(client: Any, path: str, **params: Any) -> Any:
    response = await client.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def start(client: Any) -> None:
    response = await client.post("/v1/catalog/versions", json=CATALOG)
    assert response.status_code == 201, response.text
    await record_accepted(client, [U3])
    await record_accepted(client, EVENTS)


async def test_every_reader_shows_list_reported_and_actual_cost(
    client: Any, db: asyncpg.Connection
) -> None:
    await start(client)

    job = await get(client, f"/v1/jobs/{JOB}")
    # catalog 0.3 + 0.12 + 0.026; reported 0.29 + 0.0259 + 0.0123;
    # actual 0.29 + 0.12 + 0.0259 + 0.0123 (u2 and u3 have none)
    assert costs(job) == (D("0.446"), D("0.4482"), D("0.3282"))
    assert (job["events"], job["unpriced_events"]) == (6, 3)
    lines = {(x["agent"], x["model"], x["provider"]): costs(x) for x in job["lines"]}
    assert lines == {
        ("ACHEEVY", ALPHA, "openrouter"): (D("0.3"), D("0.29"), D("0.29")),
        ("ACHEEVY", ALPHA, "vertex"): (D("0.12"), D("0.12"), D(0)),
        ("ORACLE", BETA, "openrouter"): (D("0.026"), D("0.0259"), D("0.0259")),
        # unpriced: the list price is unknown; the actual cost is what was reported (u1),
        # and unknown on the line where nothing was (u2)
        ("ORACLE", GAMMA, "openrouter"): (None, D("0.0123"), D("0.0123")),
        ("ORACLE", GAMMA, "vertex"): (None, None, D(0)),
    }
    (listed,) = (await get(client, "/v1/jobs"))["items"]
    assert costs(listed) == costs(job)

    entries = (await get(client, f"/v1/jobs/{JOB}/entries"))["items"]
    assert {e["event_id"]: costs(e) for e in entries} == {
        "u3": (None, None, None),
        "a1": (D("0.3"), D("0.29"), D("0.29")),
        "a2": (D("0.12"), D("0.12"), None),
        "b1": (D("0.026"), D("0.0259"), D("0.0259")),
        "u1": (None, D("0.0123"), D("0.0123")),
        "u2": (None, None, None),
    }

    agents = {a["agent"]: costs(a) for a in (await get(client, "/v1/agents"))["items"]}
    assert agents == {
        "ACHEEVY": (D("0.42"), D("0.41"), D("0.29")),
        "ORACLE": (D("0.026"), D("0.0382"), D("0.0382")),
    }
    oracle = await get(client, "/v1/agents/ORACLE")
    assert costs(oracle) == agents["ORACLE"]
    # b1, u1 and u3 on July 2nd; u2 on the 3rd, with no cost known at all: its list price
    # and its actual cost are null (every event of the day is unpriced, none reported)
    assert [(d["day"], costs(d)) for d in oracle["days"]] == [
        ("2026-07-02", (D("0.026"), D("0.0382"), D("0.0382"))),
        ("2026-07-03", (None, None, D(0))),
    ]

    by_provider = {
        r["provider"]: costs(r)
        for r in (await get(client, "/v1/usage", group_by="provider"))["rows"]
    }
    assert by_provider == {
        "openrouter": (D("0.326"), D("0.3282"), D("0.3282")),
        "vertex": (D("0.12"), D("0.12"), D(0)),
    }
    # A range that is not whole UTC days is summed from the ledger: the same figures.
    partial = await get(
        client, "/v1/usage", group_by="provider", **{"from": "2026-06-30T12:00:00Z"}
    )
    assert {r["provider"]: costs(r) for r in partial["rows"]} == by_provider

    metrics = await client.get("/metrics")
    assert metrics.status_code == 200, metrics.text
    actual = {
        (s.labels["agent"], s.labels["model"], s.labels["provider"], s.labels["tier"]): s.value
        for family in text_string_to_metric_families(metrics.text)
        if family.name == "luc_actual_cost_usd"
        for s in family.samples
    }
    assert actual == {
        ("ACHEEVY", ALPHA, "openrouter", "standard"): float(D("0.29")),
        ("ACHEEVY", ALPHA, "vertex", "standard"): float(D("0.12")),
        ("ORACLE", BETA, "openrouter", "fast"): float(D("0.0259")),
        ("ORACLE", GAMMA, "openrouter", "unpriced"): float(D("0.0123")),
        # u2 alone (vertex, unpriced, no cost reported): its actual cost is unknown, as
        # REST's null says, so no series rather than a false zero.
    }
    assert "# TYPE luc_actual_cost_usd gauge" in metrics.text  # the net: re-rating lowers it

    await assert_rollups_equal_ledger(db)


async def test_invoices_bill_the_catalog_cost_and_show_the_actual_cost_only_to_finance(
    client: Any, db: asyncpg.Connection
) -> None:
    await start(client)
    preview = await get(client, f"/v1/jobs/{JOB}/invoice")
    lines = {(x["model"], x["provider"]): x["amount_usd"] for x in preview["lines"]}
    assert lines == {
        (ALPHA, "openrouter"): "0.3",
        (ALPHA, "vertex"): "0.12",
        (BETA, "openrouter"): "0.026",
    }
    # What the calls cost LUC is never on the customer's invoice.
    assert all("actual_cost_usd" not in x and "cost_usd" not in x for x in preview["lines"])
    assert (preview["subtotal_usd"], preview["total_usd"]) == ("0.446", "0.45")

    issued = await client.post(f"/v1/jobs/{JOB}/invoices")
    assert issued.status_code == 201, issued.text
    invoice = issued.json()
    assert invoice["lines"] == preview["lines"]
    assert invoice["subtotal_usd"] == "0.446"

    number = invoice["number"]
    stored = await get(client, f"/v1/invoices/{number}")
    assert stored == invoice
    columns = await db.fetch(
        "SELECT amount_usd, cost_usd, provider_cost_usd, actual_cost_usd FROM invoice_lines"
        " WHERE invoice_number = $1 ORDER BY position",
        number,
    )
    assert [tuple(r) for r in columns] == [
        (D("0.3"), D("0.3"), D("0.29"), D("0.29")),
        (D("0.12"), D("0.12"), None, D("0.12")),
        (D("0.026"), D("0.026"), D("0.0259"), D("0.0259")),
    ]
    # Finance's view: each line's catalog cost, the providers' bill (a2's provider reported
    # none), actual cost and margin (amount − actual cost; without a customer or plan the
    # amount is the catalog cost).
    internal = await get(client, f"/v1/invoices/{number}", view="internal")
    assert internal["view"] == "internal" and "digest" not in internal
    assert [
        (
            x["model"],
            x["provider"],
            x["amount_usd"],
            x["cost_usd"],
            x["provider_cost_usd"],
            x["actual_cost_usd"],
        )
        for x in internal["lines"]
    ] == [
        (ALPHA, "openrouter", "0.3", "0.3", "0.29", "0.29"),
        (ALPHA, "vertex", "0.12", "0.12", None, "0.12"),
        (BETA, "openrouter", "0.026", "0.026", "0.0259", "0.0259"),
    ]
    assert [x["margin_usd"] for x in internal["lines"]] == ["0.01", "0", "0.0001"]
    # 0.29 + 0.12 + 0.0259 = 0.4359; margin 0.446 − 0.4359 = 0.0101; reported 0.29 + 0.0259
    assert (
        internal["cost_usd"],
        internal["provider_cost_usd"],
        internal["actual_cost_usd"],
        internal["margin_usd"],
    ) == ("0.446", "0.3159", "0.4359", "0.0101")
    response = await client.get(f"/v1/invoices/{number}", params={"format": "csv"})
    assert "0.29" not in response.text and "actual" not in response.text
    html = (await client.get(f"/v1/invoices/{number}", params={"format": "html"})).text
    assert "Actual cost" not in html and "0.0259" not in html and "0.29" not in html
    refused = await client.get(
        f"/v1/invoices/{number}", params={"format": "csv", "view": "internal"}
    )
    assert refused.status_code == 400
    assert refused.json()["detail"] == (
        "view=internal is JSON only: the CSV and HTML forms are the customer's"
    )


async def test_rerating_moves_the_actual_cost_only_where_the_provider_reported_none(
    client: Any, db: asyncpg.Connection
) -> None:
    await start(client)
    first = await client.post(f"/v1/jobs/{JOB}/invoices")
    assert first.status_code == 201, first.text

    response = await client.post("/v1/catalog/versions", json=CORRECTION)
    assert response.status_code == 201, response.text
    assert response.json()["repriced_events"] == 3  # u1, u2, u3
    entries = (await get(client, f"/v1/jobs/{JOB}/entries"))["items"]
    priced = {
        e["event_id"]: costs(e) for e in entries if e["catalog_version"] == response.json()["id"]
    }
    assert priced == {
        "u1": (D("0.012"), D("0.0123"), D("0.0123")),  # reported: stays what was paid
        "u2": (D("0.024"), D("0.024"), None),  # unknown until now: the catalog's
        "u3": (D("0.006"), D("0.006"), None),
    }
    # The reversal of an unpriced booking takes back exactly what it held.
    reversals = [
        (e["event_id"], costs(e))
        for e in entries
        if e["kind"] == "adjustment" and e["catalog_version"] is None
    ]
    assert sorted(reversals) == [
        ("u1", (None, D("-0.0123"), D("-0.0123"))),
        ("u2", (None, None, None)),
        ("u3", (None, None, None)),
    ]

    rerate = await client.post("/v1/catalog/rerate", json={"since": EFFECTIVE})
    assert rerate.status_code == 200, rerate.text
    report = rerate.json()
    assert report["events_changed"] == 2  # a1, a2: beta's and gamma's prices stand
    # a1 0.3 → 0.4 (reported 0.29 stays), a2 0.12 → 0.17 (not reported: +0.05)
    assert (D(report["delta_usd"]), D(report["actual_delta_usd"])) == (D("0.15"), D("0.05"))
    assert [(d["key"], D(d["delta_usd"]), D(d["actual_delta_usd"])) for d in report["agents"]] == [
        ("ACHEEVY", D("0.15"), D("0.05"))
    ]

    job = await get(client, f"/v1/jobs/{JOB}")
    # catalog 0.4 + 0.17 + 0.026 + 0.012 + 0.024 + 0.006;
    # actual 0.29 + 0.17 + 0.0259 + 0.0123 + 0.024 + 0.006; reported as before
    assert costs(job) == (D("0.638"), D("0.5282"), D("0.3282"))
    assert job["unpriced_events"] == 0
    assert [x for x in job["lines"] if x["cost_usd"] is None or x["actual_cost_usd"] is None] == []

    # The follow-up bills the catalog's changes; its lines' actual costs carry the rest.
    follow_up = await client.post(f"/v1/jobs/{JOB}/invoices")
    assert follow_up.status_code == 201, follow_up.text
    second = follow_up.json()
    assert D(second["subtotal_usd"]) == D("0.638") - D("0.446")
    first_costs = await get(client, f"/v1/invoices/{first.json()['number']}", view="internal")
    second_costs = await get(client, f"/v1/invoices/{second['number']}", view="internal")
    initial = sum(D(x["actual_cost_usd"]) for x in first_costs["lines"])
    change = sum(D(x["actual_cost_usd"]) for x in second_costs["lines"])
    # 0.29 + 0.12 + 0.0259; then a2 +0.05 and the gamma events 0.0123 + 0.024 + 0.006
    assert (initial, change) == (D("0.4359"), D("0.0923"))
    assert initial + change == D("0.5282")

    await assert_rollups_equal_ledger(db)

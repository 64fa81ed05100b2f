"""A finance person reconciles LUC against a real ``luc serve``: after the hard money paths
(cache and long-context pricing, provider-reported cost, an unpriced model, duplicates, a
catalog correction re-rating the past, a job's customer set late, a plan version effective
in the past, expiring and permanent prepaid credits, invoices, follow-ups and credit
notes), every surface tells the same story, to the cent and exactly.

Prices, USD per 1M tokens (AIMS catalog, version 1): Claude Sonnet 4.5 3 in / 15 out,
cache read 0.30, cache write 3.75, and from 200,001 input tokens 6 / 22.50 for every token;
GPT-5.1 3 / 12 (cache read 0.30); Gemini 3.0 Flash 0.10 / 0.40; Claude Haiku 4.5 0.80 / 4.
``acme/mystery-1`` is in no catalog until version 2.

Plans (from 2026-01-01): ``house`` (LUC_DEFAULT_PLAN) catalog + 50 %; ``retail`` catalog
+ 25 % + 0.01 per call, Flash at its own 0.20 / 0.80, a monthly minimum of 2.00;
``wholesale`` actual cost + 10 %. Acme is on wholesale, invoiced per job; Globex on retail,
invoiced monthly, with 1.00 of credits expiring 2026-12-31 and 2.00 that never expire;
Initech has no plan (house prices it).

Each event's final figures (cost / actual / price), worked in the comments where it is
recorded or changed:

| event | job    | cost   | actual | provider | price   |
|-------|--------|--------|--------|----------|---------|
| a1    | acme-1 | 0.2745 | 0.28   | 0.28     | 0.308   |
| a2    | acme-1 | 1.725  | 1.725  |          | 1.8975  |
| a3    | acme-1 | 0.012  | 0.05   | 0.05     | 0.055   |
| a4    | acme-1 | 0.12   | 0.12   |          | 0.132   |
| a5    | acme-1 | 0.045  | 0.045  |          | 0.0495  |
| a6 a7 | acme-2 | 0.045  | 0.045  |          | 0.0495  | (each; November)
| g1    | gx-1   | 0.14   | 0.14   |          | 0.154   | (Acme's in the end)
| g2    | gx-1   | 0.72   | 0.72   |          | 0.792   |
| g4    | gx-1   | 0.014  | 0.014  |          | 0.0154  | (November)
| g7    | gx-1   | 0.014  | 0.014  |          | 0.0154  |
| g3    | gx-2   | 0.225  | 0.30   | 0.30     | 0.29125 |
| g5    | gx-2   | 2.00   | 2.00   |          | 2.51    |
| g6    | gx-3   | 0.014  | 0.014  |          | 0.0154  | (October in UTC; Acme's)
| n1    | nc-1   | 0.0014 | 0.0014 |          | 0.0028  |
| n2    | nc-2   | 0.012  | 0.012  |          | 0.024   |
| i1    | in-1   | 0.012  | 0.012  |          | 0.024   |

In all: cost 5.4189, actual 5.5374, provider 0.63, price 6.38525 over 17 events.

The dates follow the day the test runs: "October" above and below is the month before it,
"November" the month it runs in (its first day, never in the future), "2026-12-31" the 28th
of the month after; the plans start long before either.
"""

from __future__ import annotations

import csv
import html
import io
import re
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.events import wire_event
from tests.support.servers import ServerProcess

pytestmark = pytest.mark.slow

D = Decimal
SONNET = "anthropic/claude-sonnet-4.5"
GPT = "openai/gpt-5.1"
FLASH = "google/gemini-3.0-flash"
HAIKU = "anthropic/claude-haiku-4.5"
MYSTERY = "acme/mystery-1"
THIS_MONTH = datetime.now(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
LAST_MONTH = (THIS_MONTH - timedelta(days=1)).replace(day=1)
NEXT_MONTH = (THIS_MONTH + timedelta(days=32)).replace(day=1)


def _at(month: datetime, day: int = 1, hour: int = 0) -> str:
    return month.replace(day=day, hour=hour).strftime("%Y-%m-%dT%H:%M:%SZ")


OCT = _at(LAST_MONTH, 10, 9)
SINCE = _at(LAST_MONTH)
NOV = _at(THIS_MONTH)
OCTOBER, NOVEMBER = LAST_MONTH.strftime("%Y-%m"), THIS_MONTH.strftime("%Y-%m")
JOBS = ("acme-1", "acme-2", "gx-1", "gx-2", "gx-3", "nc-1", "nc-2", "in-1")
AGENTS = ("ORACLE", "ACHEEVY", "Boomer_Ang", "ByteRover")
MONEY = ("cost_usd", "actual_cost_usd", "provider_cost_usd", "price_usd")
Totals = dict[str, Decimal]


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, (str(response.request.url), response.text)
    return response.json()


def totals(rows: Iterable[dict[str, Any]]) -> Totals:
    """The money and event counts of ``rows`` summed, a missing or null amount as none."""
    out = {name: D(0) for name in (*MONEY, "events")}
    for row in rows:
        for name in out:
            if row.get(name) is not None:
                out[name] += D(str(row[name]))
    return out


def grouped(
    entries: list[dict[str, Any]], key: Callable[[dict[str, Any]], Any]
) -> dict[Any, Totals]:
    groups: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for entry in entries:
        groups[key(entry)].append(entry)
    # A group whose entries net to nothing (an unpriced event's tier before a version
    # priced it) is no group: its money and its events moved to another.
    return {k: t for k, v in groups.items() if any((t := totals(v)).values())}


def day(entry: dict[str, Any]) -> str:
    return str(entry["occurred_at"])[:10]  # occurred_at is written in UTC


def ledger(http: httpx.Client) -> list[dict[str, Any]]:
    """Every ledger entry, job by job (each page of a job in turn)."""
    entries: list[dict[str, Any]] = []
    for job in JOBS:
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 100, **({"cursor": cursor} if cursor else {})}
            page = ok(http.get(f"/v1/jobs/{job}/entries", params=params))
            entries += page["items"]
            cursor = page["next_cursor"]
            if not cursor:
                break
    return entries


def assert_read_side_agrees(http: httpx.Client, entries: list[dict[str, Any]]) -> None:
    """Jobs, their lines, agents, their days, every usage grouping, the FOCUS export and
    the /metrics ledger series hold exactly what the ledger entries sum to."""
    truth = totals(entries)
    jobs = ok(http.get("/v1/jobs", params={"limit": 100}))["items"]
    assert totals(jobs) == truth
    for job_id in JOBS:
        mine = totals(e for e in entries if e["job_id"] == job_id)
        job = ok(http.get(f"/v1/jobs/{job_id}"))
        assert totals([job]) == mine, job_id
        assert totals(job["lines"]) == mine, job_id
    for agent in AGENTS:
        mine_entries = [e for e in entries if e["agent"] == agent]
        shown = ok(http.get(f"/v1/agents/{agent}"))
        assert totals([shown]) == totals(mine_entries), agent
        by_day = grouped(mine_entries, day)
        assert {d["day"]: totals([d]) for d in shown["days"]} == by_day, agent
    listed_agents = ok(http.get("/v1/agents"))["items"]
    assert {a["agent"]: totals([a]) for a in listed_agents} == grouped(
        entries, lambda e: e["agent"]
    )
    for group_by in (
        "agent",
        "model",
        "provider",
        "tier",
        "day",
        "job_id",
        "model,day",
        "agent,model",
    ):
        keys = group_by.split(",")
        rows = ok(http.get("/v1/usage", params={"group_by": group_by}))["rows"]

        def key(e: dict[str, Any], keys: list[str] = keys) -> tuple[Any, ...]:
            return tuple(day(e) if k == "day" else e[k] for k in keys)

        expected = grouped(entries, key)
        assert {tuple(r[k] for k in keys): totals([r]) for r in rows} == expected, group_by
    # FOCUS: one row per UTC day × job × agent × model × provider; ListCost is the catalog
    # cost, EffectiveCost and BilledCost the actual cost.
    focus = http.get("/v1/exports/focus", params={"from": SINCE, "to": _at(NEXT_MONTH)})
    assert focus.status_code == 200, focus.text
    expected = grouped(
        entries, lambda e: (day(e), e["job_id"], e["agent"], e["model"], e["provider"])
    )
    shown_focus = {
        (r["ChargePeriodStart"][:10], r["x_JobId"], r["x_Agent"], r["x_Model"], r["x_Provider"]): {
            "cost_usd": D(r["ListCost"] or 0),
            "actual_cost_usd": D(r["EffectiveCost"] or 0),
            "provider_cost_usd": D(r["x_ProviderReportedCost"] or 0),
            "price_usd": expected.get(
                (
                    r["ChargePeriodStart"][:10],
                    r["x_JobId"],
                    r["x_Agent"],
                    r["x_Model"],
                    r["x_Provider"],
                ),
                {},
            ).get("price_usd", D(0)),  # FOCUS carries no customer price
            "events": D(r["x_Events"]),
        }
        for r in csv.DictReader(io.StringIO(focus.text))
    }
    assert shown_focus == expected
    assert (
        sum(D(r["BilledCost"]) for r in csv.DictReader(io.StringIO(focus.text)))
        == truth["actual_cost_usd"]
    )
    # /metrics: the ledger's net per agent × model × provider × tier (floats: compared as the
    # float of the exact sum).
    series: dict[str, dict[tuple[str, str], float]] = defaultdict(dict)
    for line in http.get("/metrics").text.splitlines():
        m = re.match(r"luc_(cost|actual_cost|provider_cost|price)_usd\{(.*)\} (\S+)$", line)
        if m:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
            if float(m.group(3)) != 0:  # a label set an event moved away from keeps a 0
                series[f"{m.group(1)}_usd"][(labels["agent"], labels["model"])] = float(m.group(3))
    by_agent_model = grouped(entries, lambda e: (e["agent"], e["model"]))
    for name in MONEY:
        expected_series = {k: float(v[name]) for k, v in by_agent_model.items() if v[name] != 0}
        assert series[name] == expected_series, name


def assert_invoice_forms_agree(http: httpx.Client, invoice: dict[str, Any]) -> None:
    """The JSON, its CSV rows and the HTML's printed figures say the same; the amount due
    and the credits applied add up to the total (the due rounding shown)."""
    number = invoice["number"]
    assert ok(http.get(f"/v1/invoices/{number}")) == invoice
    total, credits = D(invoice["total_usd"]), D(invoice["credits_applied_usd"])
    due, due_rounding = D(invoice["amount_due_usd"]), D(invoice.get("amount_due_rounding_usd", 0))
    assert sum(D(line["amount_usd"]) for line in invoice["lines"]) == D(invoice["subtotal_usd"])
    assert D(invoice["subtotal_usd"]) + D(invoice["rounding_usd"]) == total
    assert due - due_rounding == total - credits
    text = http.get(f"/v1/invoices/{number}?format=csv").text.removeprefix("\ufeff")  # BOM
    rows = list(csv.DictReader(io.StringIO(text)))
    assert {(r["invoice"], r["customer_id"]) for r in rows} == {
        (number, (invoice["customer"] or {}).get("id", ""))
    }
    exact = [D(r["amount_exact_usd"]) for r in rows if r["row_type"] in ("line", "minimum")]
    assert sum(exact) == D(invoice["subtotal_usd"]), number
    (csv_total,) = [D(r["amount_usd"]) for r in rows if r["row_type"] == "total"]
    (csv_due,) = [D(r["amount_usd"]) for r in rows if r["row_type"] == "amount_due"]
    assert (csv_total, csv_due) == (total, due), number
    page = http.get(f"/v1/invoices/{number}?format=html").text
    text = html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page)))
    printed = {
        label: D(m.group(1).replace(",", ""))
        for label in (
            "Total (USD)",
            "Total credit (USD)",
            "Prepaid credits applied (USD)",
            "Amount due (USD)",
            "Credit due to you (USD)",
        )
        if (m := re.search(re.escape(label) + r" (-?[\d,.]+)", text))
    }
    assert printed.get("Total (USD)", printed.get("Total credit (USD)")) == total, number
    assert printed["Prepaid credits applied (USD)"] == credits, number
    assert printed.get("Amount due (USD)", printed.get("Credit due to you (USD)")) == due, number
    internal = ok(http.get(f"/v1/invoices/{number}", params={"view": "internal"}))
    for name in ("cost_usd", "actual_cost_usd", "margin_usd"):
        assert sum(D(line[name]) for line in internal["lines"]) == D(internal[name]), name
    # margin = price − actual, over the lines the customer pays (a minimum line included)
    assert D(internal["margin_usd"]) == D(invoice["subtotal_usd"]) - D(internal["actual_cost_usd"])


def test_every_surface_tells_the_same_story_to_the_cent(database_url: str, tmp_path: Path) -> None:
    server = ServerProcess(database_url, tmp_path / "luc.log")
    try:
        server.start()
        with httpx.Client(base_url=server.base_url, timeout=60) as http:
            plan = {"effective_from": "2020-01-01T00:00:00Z", "basis": "catalog"}
            ok(
                http.post(
                    "/v1/plans", json={**plan, "id": "house", "name": "House", "markup": "0.5"}
                ),
                201,
            )
            ok(
                http.post(
                    "/v1/plans",
                    json={
                        **plan,
                        "id": "retail",
                        "name": "Retail",
                        "markup": "0.25",
                        "per_request_usd": "0.01",
                        "minimum_monthly_usd": "2.00",
                        "models": {FLASH: {"input": "0.20", "output": "0.80"}},
                    },
                ),
                201,
            )
            ok(
                http.post(
                    "/v1/plans",
                    json={
                        **plan,
                        "basis": "actual",
                        "id": "wholesale",
                        "name": "Wholesale",
                        "markup": "0.10",
                    },
                ),
                201,
            )
            ok(
                http.post(
                    "/v1/customers", json={"id": "acme", "name": "Acme", "plan_id": "wholesale"}
                ),
                201,
            )
            ok(
                http.post(
                    "/v1/customers",
                    json={
                        "id": "globex",
                        "name": "Globex",
                        "plan_id": "retail",
                        "invoicing": "monthly",
                    },
                ),
                201,
            )
            ok(http.post("/v1/customers", json={"id": "initech", "name": "Initech"}), 201)
            ok(
                http.post(
                    "/v1/customers/globex/credits",
                    json={"amount_usd": "1.00", "expires_at": _at(NEXT_MONTH, 28)},
                ),
                201,
            )
            ok(http.post("/v1/customers/globex/credits", json={"amount_usd": "2.00"}), 201)
        # The default plan must exist before the service names it: restart with it.
        server.stop()
        server.env["LUC_DEFAULT_PLAN"] = "house"
        server.start()
        with httpx.Client(base_url=server.base_url, timeout=60) as http:
            acme = {
                "occurred_at": OCT,
                "job_id": "acme-1",
                "agent": "ORACLE",
                "customer_id": "acme",
            }
            gx = {"occurred_at": OCT, "agent": "ACHEEVY", "customer_id": "globex", "job_id": "gx-1"}
            g2 = wire_event("g2", **gx, model=GPT, input_tokens=200_000, output_tokens=20_000)
            events = [
                # 50,000 × 3 + 40,000 × 0.30 + 10,000 × 3.75 + 4,000 × 15 + 1,000 × 15
                # = 274,500 per 1M = 0.2745; the provider says 0.28; + 10 % of 0.28 = 0.308
                wire_event(
                    "a1",
                    **acme,
                    model=SONNET,
                    input_tokens=100_000,
                    cached_input_tokens=40_000,
                    cache_write_tokens=10_000,
                    output_tokens=5_000,
                    reasoning_tokens=1_000,
                    provider_cost_usd="0.28",
                ),
                # long context, every token: 250,000 × 6 + 10,000 × 22.50 = 1.725; × 1.1 = 1.8975
                wire_event("a2", **acme, model=SONNET, input_tokens=250_000, output_tokens=10_000),
                # unpriced, but reported: actual 0.05, price 0.055 (actual basis)
                wire_event(
                    "a3",
                    **acme,
                    model=MYSTERY,
                    input_tokens=10_000,
                    output_tokens=1_000,
                    provider_cost_usd="0.05",
                ),
                # unpriced, unreported: no cost, no actual, no price until version 2
                wire_event("a4", **acme, model=MYSTERY, input_tokens=100_000, output_tokens=10_000),
                # Flash at retail's own price: 1,000,000 × 0.20 + 100,000 × 0.80 = 0.28 (cost 0.14)
                wire_event("g1", **gx, model=FLASH, input_tokens=1_000_000, output_tokens=100_000),
                # 200,000 × 3 + 20,000 × 12 = 0.84; × 1.25 + 0.01 = 1.06
                g2,
                # 50,000 × 3 + 50,000 × 0.30 + 10,000 × 12 = 0.285; × 1.25 + 0.01 = 0.36625
                wire_event(
                    "g3",
                    **{**gx, "agent": "Boomer_Ang", "job_id": "gx-2"},
                    model=GPT,
                    input_tokens=100_000,
                    cached_input_tokens=50_000,
                    output_tokens=10_000,
                    provider_cost_usd="0.30",
                ),
                # November: 100,000 × 0.20 + 10,000 × 0.80 = 0.028 (cost 0.014)
                wire_event(
                    "g4",
                    **{**gx, "occurred_at": NOV},
                    model=FLASH,
                    input_tokens=100_000,
                    output_tokens=10_000,
                ),
                # no customer: house, 10,000 × 0.10 + 1,000 × 0.40 = 0.0014; × 1.5 = 0.0021
                wire_event(
                    "n1",
                    occurred_at=OCT,
                    job_id="nc-1",
                    agent="ByteRover",
                    model="gemini-3.0-flash",
                    input_tokens=10_000,
                    output_tokens=1_000,
                ),
                # 10,000 × 0.80 + 1,000 × 4 = 0.012; × 1.5 = 0.018
                wire_event(
                    "n2",
                    occurred_at=OCT,
                    job_id="nc-2",
                    agent="ByteRover",
                    model=HAIKU,
                    input_tokens=10_000,
                    output_tokens=1_000,
                ),
            ]
            assert ok(http.post("/v1/events/batch", json={"events": events}))["accepted"] == 10
            again = ok(
                http.post(
                    "/v1/events/batch", json={"events": [g2, {**g2, "output_tokens": 20_001}]}
                )
            )
            assert [r["status"] for r in again["results"]] == ["duplicate", "conflict"]
            # Globex's credits: 3.00 − (0.28 + 1.06 + 0.36625 + 0.028) = 1.26575, the
            # expiring grant drawn first and empty.
            credits = ok(http.get("/v1/customers/globex/credits"))
            assert credits["balance_usd"] == "1.26575"
            assert [g["remaining_usd"] for g in credits["grants"]] == ["0", "1.26575"]
            assert [u["id"] for u in ok(http.get("/v1/unpriced"))["items"]] == ["a3", "a4"]

            # Unpriced is never zero: acme-1 knows the cost of a1 + a2 (0.2745 + 1.725 =
            # 1.9995), the actual of a1–a3 (0.28 + 1.725 + 0.05 = 2.055) and the price of
            # a1–a3 (0.308 + 1.8975 + 0.055 = 2.2605), and counts what it does not know.
            before = ok(http.get("/v1/jobs/acme-1"))
            assert [
                before[k]
                for k in (
                    "cost_usd",
                    "actual_cost_usd",
                    "price_usd",
                    "unpriced_events",
                    "unknown_actual_events",
                    "unknown_price_events",
                )
            ] == ["1.9995", "2.055", "2.2605", 2, 1, 1]
            assert 'luc_unpriced_events{model="acme/mystery-1"} 2.0' in http.get("/metrics").text
            # A catalog correction from October: GPT-5.1 output at 6, and the mystery model
            # priced (1 / 2): a4 costs 0.12 (price 0.132), a3 0.012 (actual stays 0.05).
            fix = {
                "effective_from": SINCE,
                "parent": 1,
                "label": "fix",
                "models": [
                    {
                        "id": GPT,
                        "name": "GPT-5.1",
                        "tier": "standard",
                        "input": "3.00",
                        "output": "6.00",
                        "cache_read": "0.30",
                    },
                    {
                        "id": MYSTERY,
                        "name": "Mystery",
                        "tier": "economy",
                        "input": "1.00",
                        "output": "2.00",
                    },
                ],
            }
            ok(http.post("/v1/catalog/versions", json=fix), 201)
            assert ok(http.get("/v1/unpriced"))["items"] == []
            rerate = ok(http.post("/v1/catalog/rerate", json={"since": SINCE, "dry_run": False}))
            # g2: 0.84 → 0.72 (price 0.91); g3: 0.285 → 0.225 (price 0.29125, actual 0.30)
            assert (rerate["delta_usd"], rerate["actual_delta_usd"], rerate["price_delta_usd"]) == (
                "-0.18",
                "-0.12",
                "-0.225",
            )
            # nc-1 is Globex's after all: n1 at retail's Flash price, 0.002 + 0.0008 = 0.0028.
            ok(http.patch("/v1/jobs/nc-1", json={"customer_id": "globex"}))
            # Wholesale at 20 % from October: + 10 % of acme's actual 2.175 = 0.2175.
            ok(
                http.post(
                    "/v1/plans/wholesale/versions",
                    json={"effective_from": SINCE, "basis": "actual", "markup": "0.20"},
                ),
                201,
            )
            repriced = ok(
                http.post("/v1/plans/wholesale/reprice", json={"since": SINCE, "dry_run": False})
            )
            assert repriced["price_delta_usd"] == "0.2175"
            # The price falls gave credit back (0.15 + 0.075), n1 drew 0.0028:
            # 1.26575 + 0.225 − 0.0028 = 1.48795.
            assert ok(http.get("/v1/customers/globex/credits"))["balance_usd"] == "1.48795"

            invoices = [ok(http.post("/v1/jobs/acme-1/invoices"), 201)]
            # acme-1 at 20 %: 1.2 × (0.28 + 1.725 + 0.05 + 0.12) = 2.61
            assert invoices[-1]["total_usd"] == "2.61"
            invoices.append(
                ok(http.post("/v1/customers/globex/invoices", json={"month": OCTOBER}), 201)
            )
            # October: 0.28 + 0.91 + 0.29125 + 0.0028 = 1.48405, all paid by credits; the
            # minimum line tops it up by 0.51595 to 2.00, due 0.52.
            assert [
                invoices[-1][k]
                for k in ("subtotal_usd", "total_usd", "credits_applied_usd", "amount_due_usd")
            ] == ["2", "2.00", "1.48405", "0.52"]
            invoices.append(ok(http.post("/v1/jobs/nc-2/invoices"), 201))
            assert invoices[-1]["subtotal_usd"] == "0.018"
            late = [
                # 10,000 × 3 + 1,000 × 15 = 0.045; × 1.2 = 0.054
                wire_event(
                    "a5",
                    **{**acme, "occurred_at": _at(LAST_MONTH, 20)},
                    model=SONNET,
                    input_tokens=10_000,
                    output_tokens=1_000,
                ),
                # 1,000,000 × 3 = 3.00; × 1.25 + 0.01 = 3.76, drawing the last 1.48795
                wire_event(
                    "g5",
                    **{**gx, "occurred_at": _at(LAST_MONTH, 20), "job_id": "gx-2"},
                    model=GPT,
                    input_tokens=1_000_000,
                    output_tokens=0,
                ),
            ]
            assert ok(http.post("/v1/events/batch", json={"events": late}))["accepted"] == 2
            invoices.append(ok(http.post("/v1/jobs/acme-1/invoices"), 201))
            assert (invoices[-1]["subtotal_usd"], invoices[-1]["follow_up_of"]) == (
                "0.054",
                invoices[0]["number"],
            )
            invoices.append(
                ok(http.post("/v1/customers/globex/invoices", json={"month": OCTOBER}), 201)
            )
            # 3.76, and the minimum taken back (the month is past it): 3.76 − 0.51595 = 3.24405
            assert [
                invoices[-1][k] for k in ("subtotal_usd", "credits_applied_usd", "amount_due_usd")
            ] == ["3.24405", "1.48795", "1.76"]
            # Wholesale back to 10 %: − 10 % of acme-1's actual 2.22 = −0.222, a credit note.
            ok(
                http.post(
                    "/v1/plans/wholesale/versions",
                    json={"effective_from": SINCE, "basis": "actual", "markup": "0.10"},
                ),
                201,
            )
            reprice = {"since": SINCE, "dry_run": True}
            dry = ok(http.post("/v1/plans/wholesale/reprice", json=reprice))
            wet = ok(http.post("/v1/plans/wholesale/reprice", json={**reprice, "dry_run": False}))
            same = ("price_delta_usd", "events_changed", "customers", "jobs")
            assert [dry[k] for k in same] == [wet[k] for k in same]
            assert wet["price_delta_usd"] == "-0.222"
            again = ok(http.post("/v1/plans/wholesale/reprice", json={**reprice, "dry_run": False}))
            assert (again["entries_appended"], again["price_delta_usd"]) == (0, "0")
            invoices.append(ok(http.post("/v1/jobs/acme-1/invoices"), 201))
            assert [invoices[-1][k] for k in ("kind", "subtotal_usd", "total_usd")] == [
                "credit_note",
                "-0.222",
                "-0.22",
            ]
            # GPT-5.1 input at 2 from 2026-10-15: g5 costs 2.00, price 2.51 (− 1.25). Credits
            # burn before money: g5 keeps its credits, the credit note owes 1.25 in money.
            cut = {
                "effective_from": _at(LAST_MONTH, 15),
                "parent": 2,
                "models": [
                    {
                        "id": GPT,
                        "name": "GPT-5.1",
                        "tier": "standard",
                        "input": "2.00",
                        "output": "6.00",
                        "cache_read": "0.30",
                    }
                ],
            }
            ok(http.post("/v1/catalog/versions", json=cut), 201)
            dry = ok(http.post("/v1/catalog/rerate", json={"since": SINCE, "dry_run": True}))
            wet = ok(http.post("/v1/catalog/rerate", json={"since": SINCE, "dry_run": False}))
            assert {k: v for k, v in dry.items() if k not in ("dry_run", "entries_appended")} == {
                k: v for k, v in wet.items() if k not in ("dry_run", "entries_appended")
            }
            assert wet["price_delta_usd"] == "-1.25"
            assert ok(http.post("/v1/catalog/rerate", json={"since": SINCE}))["events_changed"] == 0
            invoices.append(
                ok(http.post("/v1/customers/globex/invoices", json={"month": OCTOBER}), 201)
            )
            assert [
                invoices[-1][k]
                for k in ("kind", "total_usd", "credits_applied_usd", "amount_due_usd")
            ] == ["credit_note", "-1.25", "0.00", "-1.25"]

            # Acme buys 5.00 expiring in seconds and 0.50 for good; a November call
            # (0.045 × 1.1 = 0.0495) draws on the expiring one, the next, after its expiry,
            # on the permanent one: 0.50 − 0.0495 = 0.4505.
            soon = (datetime.now(UTC) + timedelta(seconds=3)).isoformat()
            ok(
                http.post(
                    "/v1/customers/acme/credits", json={"amount_usd": "5.00", "expires_at": soon}
                ),
                201,
            )
            ok(http.post("/v1/customers/acme/credits", json={"amount_usd": "0.50"}), 201)
            nov = {
                **acme,
                "job_id": "acme-2",
                "occurred_at": NOV,
                "model": SONNET,
                "input_tokens": 10_000,
                "output_tokens": 1_000,
            }
            ok(http.post("/v1/events/batch", json={"events": [wire_event("a6", **nov)]}))
            assert ok(http.get("/v1/customers/acme/credits"))["balance_usd"] == "5.4505"
            time.sleep(4)  # past the grant's expiry, on the server's clock too
            assert ok(http.get("/v1/customers/acme/credits"))["balance_usd"] == "0.5"
            ok(http.post("/v1/events/batch", json={"events": [wire_event("a7", **nov)]}))
            invoices.append(ok(http.post("/v1/jobs/acme-2/invoices"), 201))
            # 2 × 0.0495 = 0.099, all of it from credits (expired or not when drawn)
            assert [
                invoices[-1][k] for k in ("total_usd", "credits_applied_usd", "amount_due_usd")
            ] == ["0.10", "0.099", "0.00"]

            more = [
                # Initech has no plan: house, 0.012 × 1.5 = 0.018
                wire_event(
                    "i1",
                    occurred_at=OCT,
                    job_id="in-1",
                    agent="ByteRover",
                    model=HAIKU,
                    customer_id="initech",
                    input_tokens=10_000,
                    output_tokens=1_000,
                ),
                # 2026-10-31 23:30 UTC: October's, not November's
                wire_event(
                    "g6",
                    **{
                        **gx,
                        "occurred_at": f"{THIS_MONTH:%Y-%m-%d}T01:30:00+02:00",
                        "job_id": "gx-3",
                    },
                    model=FLASH,
                    input_tokens=100_000,
                    output_tokens=10_000,
                ),
                wire_event("g7", **gx, model=FLASH, input_tokens=100_000, output_tokens=10_000),
            ]
            assert ok(http.post("/v1/events/batch", json={"events": more}))["accepted"] == 3
            # House at 100 % from October: n2 and i1 each 0.012 × 2 = 0.024 (+ 0.006).
            ok(
                http.post(
                    "/v1/plans/house/versions",
                    json={"effective_from": SINCE, "basis": "catalog", "markup": "1.0"},
                ),
                201,
            )
            house = ok(
                http.post("/v1/plans/house/reprice", json={"since": SINCE, "dry_run": False})
            )
            assert house["price_delta_usd"] == "0.012"
            # A job invoice of a monthly customer's job bills what no invoice billed: g4
            # (November, drew 0.028 of credits) and g7.
            invoices.append(ok(http.post("/v1/jobs/gx-1/invoices"), 201))
            assert [invoices[-1][k] for k in ("subtotal_usd", "credits_applied_usd")] == [
                "0.056",
                "0.028",
            ]
            invoices.append(ok(http.post("/v1/jobs/nc-2/invoices"), 201))
            invoices.append(ok(http.post("/v1/jobs/in-1/invoices"), 201))
            invoices.append(
                ok(http.post("/v1/customers/globex/invoices", json={"month": OCTOBER}), 201)
            )
            assert [(line["job_id"], line["amount_usd"]) for line in invoices[-1]["lines"]] == [
                ("gx-3", "0.028")
            ]

            # gx-3 was Acme's all along: g6 leaves Globex (a reversal of 0.028 on October's
            # follow-up, a credit note) for Acme at 0.014 × 1.1 = 0.0154 on gx-3's invoice.
            ok(http.patch("/v1/jobs/gx-3", json={"customer_id": "acme"}))
            invoices.append(
                ok(http.post("/v1/customers/globex/invoices", json={"month": OCTOBER}), 201)
            )
            assert [invoices[-1][k] for k in ("kind", "subtotal_usd")] == ["credit_note", "-0.028"]
            invoices.append(ok(http.post("/v1/jobs/gx-3/invoices"), 201))
            assert [invoices[-1][k] for k in ("kind", "subtotal_usd")] == ["invoice", "0.0154"]

            # gx-1 turns out to be Acme's too, after Globex's October invoice and gx-1's own
            # (g4) billed it: its next document is Globex's credit note for all of it,
            # 0.28 + 0.028 (g1, g7) + 0.028 (g4) + 0.91 (g2) = 1.246, giving back the 1.218
            # of credits g1, g2 and g4 drew; then Acme's invoice at 10 % over the actual:
            # 1.1 × (0.14 + 0.014 + 0.014 + 0.72) = 0.9768, Acme's last 0.4351 of credits
            # applied, 0.54 due.
            # Globex's month to date before: g4 (price 0.028, actual 0.014), never g6.
            shown = ok(http.get("/v1/customers/globex"))
            assert (shown["price_usd"], shown["actual_cost_usd"]) == ("0.028", "0.014")
            ok(http.patch("/v1/jobs/gx-1", json={"customer_id": "acme"}))
            invoices.append(ok(http.post("/v1/jobs/gx-1/invoices"), 201))
            assert [
                invoices[-1][k]
                for k in ("kind", "subtotal_usd", "credits_applied_usd", "amount_due_usd")
            ] == ["credit_note", "-1.246", "-1.218", "-0.03"]
            assert invoices[-1]["customer"]["id"] == "globex"
            invoices.append(ok(http.post("/v1/jobs/gx-1/invoices"), 201))
            assert [
                invoices[-1][k]
                for k in ("kind", "subtotal_usd", "credits_applied_usd", "amount_due_usd")
            ] == ["invoice", "0.9768", "0.4351", "0.54"]
            assert invoices[-1]["customer"]["id"] == "acme"

            # Reconcile.
            entries = ledger(http)
            truth = totals(entries)
            assert truth == {
                "cost_usd": D("5.4189"),
                "actual_cost_usd": D("5.5374"),
                "provider_cost_usd": D("0.63"),
                "price_usd": D("6.38525"),
                "events": D(17),
            }
            for entry in entries:
                if entry["price_usd"] is not None and entry["actual_cost_usd"] is not None:
                    assert D(entry["margin_usd"]) == D(entry["price_usd"]) - D(
                        entry["actual_cost_usd"]
                    )
            assert totals([ok(http.get("/v1/jobs/acme-1"))]) == {
                "cost_usd": D("2.1765"),
                "actual_cost_usd": D("2.22"),
                "provider_cost_usd": D("0.33"),
                "price_usd": D("2.442"),
                "events": D(5),
            }
            assert_read_side_agrees(http, entries)

            # Every entry billed once: the invoices (follow-ups and credit notes with them)
            # sum to the ledger's price.
            listed = ok(http.get("/v1/invoices", params={"limit": 100}))["items"]
            assert sorted(i["number"] for i in listed) == sorted(i["number"] for i in invoices)
            assert sum(D(i["subtotal_usd"]) for i in invoices) == truth["price_usd"]
            # Which documents billed a job: its own and its customer's monthly ones.
            for job_id, which in (
                ("nc-1", [1]),
                ("gx-2", [1, 4, 6]),
                ("gx-1", [1, 8, 14, 15]),
                ("gx-3", [11, 12, 13]),
            ):
                by_job = ok(http.get("/v1/invoices", params={"job_id": job_id}))["items"]
                assert [i["number"] for i in by_job] == [invoices[n]["number"] for n in which]
            fields = ("month", "total_usd", "credits_applied_usd", "amount_due_usd")
            assert {i["number"]: [i[k] for k in fields] for i in listed} == {
                i["number"]: [i.get(k) for k in fields] for i in invoices
            }
            minimum = [line for i in invoices for line in i["lines"] if line["model"] == "minimum"]
            assert sum(D(line["amount_usd"]) for line in minimum) == 0  # October passed it
            for invoice in invoices:
                assert_invoice_forms_agree(http, invoice)
            # Per customer: what the invoices bill is the price of the customer's entries (a
            # moved job's reversal is its former customer's).
            for customer in ("acme", "globex", "initech", None):
                billed = [i for i in invoices if (i["customer"] or {}).get("id") == customer]
                assert sum(D(i["subtotal_usd"]) for i in billed) == sum(
                    D(e["price_usd"] or 0) for e in entries if e["customer_id"] == customer
                ), customer

            # Credits: what invoices applied is what was drawn. Globex: 3.00 less the 1.218
            # gx-1 gave back = 1.782. Acme: 0.099 (a6, a7) + 0.0154 (g6) + 0.4351 (gx-1) =
            # 0.5495, all it had but the 4.9505 that stays on the expired grant.
            applied: defaultdict[str, D] = defaultdict(D)
            for i in invoices:
                if i["customer"]:
                    applied[i["customer"]["id"]] += D(i["credits_applied_usd"])
            assert (applied["globex"], applied["acme"]) == (D("1.782"), D("0.5495"))
            globex = ok(http.get("/v1/customers/globex/credits"))
            acme_credits = ok(http.get("/v1/customers/acme/credits"))
            assert (globex["balance_usd"], acme_credits["balance_usd"]) == ("1.218", "0")
            assert [(g["remaining_usd"], g["expired"]) for g in acme_credits["grants"]] == [
                ("4.9505", True),
                ("0", False),
            ]
            metrics = http.get("/metrics").text
            assert "luc_customer_credit_balance_usd 1.218" in metrics.splitlines()

            # Month to date (November): Globex nothing (g4 went with gx-1); Acme a6 + a7 + g4
            # (0.0495 × 2 + 0.0154 = 0.1144; actual 0.045 × 2 + 0.014 = 0.104).
            for customer, price, actual in (("globex", "0", "0"), ("acme", "0.1144", "0.104")):
                shown = ok(http.get(f"/v1/customers/{customer}"))
                assert (shown["month"], shown["price_usd"], shown["actual_cost_usd"]) == (
                    NOVEMBER,
                    price,
                    actual,
                )
                assert D(shown["margin_usd"]) == D(price) - D(actual)

            # Reconciliation: catalog vs provider over the reported events (a1, a3, g3).
            rows = ok(
                http.get(
                    "/v1/reconciliation",
                    params={"from": SINCE, "to": _at(NEXT_MONTH), "group_by": "model"},
                )
            )["rows"]
            reported = {
                r["model"]: (
                    r["events"],
                    r["reported_events"],
                    r["cost_usd"],
                    r["provider_cost_usd"],
                )
                for r in rows
            }
            assert reported == {
                MYSTERY: (2, 1, "0.012", "0.05"),
                HAIKU: (2, 0, "0", "0"),
                SONNET: (5, 1, "0.2745", "0.28"),
                FLASH: (5, 0, "0", "0"),
                GPT: (3, 1, "0.225", "0.3"),
            }
            assert sum(r["events"] for r in rows) == truth["events"]
            # Nothing left to bill for October's Globex or acme-1.
            assert not ok(http.get("/v1/jobs/acme-1/invoice"))["issuable"]
            preview = ok(
                http.get("/v1/customers/globex/invoices/preview", params={"month": OCTOBER})
            )
            assert not preview["issuable"]
    finally:
        server.stop()

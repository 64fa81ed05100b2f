"""Prepaid credits on real PostgreSQL: grants over REST with precise refusals; the draws of
priced entries under the customer's account lock (``customers.credits.draw_credits``), the
balance never below zero, never overdrawn by concurrent transactions; credit alerts once
per crossing, re-armed by a grant, delivered signed to the customer's webhook; credit_stop
refusing reservations (402) until a grant.

The draws here are handed entries directly, as the recording transaction hands them its
priced entries (the scenario in tests/scenarios/test_prepaid_credits.py goes through
ingest). Amounts are hand-picked decimals.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
from litestar.testing import AsyncTestClient
from prometheus_client.parser import text_string_to_metric_families
from standardwebhooks.webhooks import Webhook

from service.app import create_app
from service.budgets.credit_alerts import raise_credit_alerts
from service.customers.credits import draw_credits
from service.customers.draw_rule import PricedEntry
from service.wire import instant_text
from tests.support.budgets import Receiver
from tests.support.commands import luc_on
from tests.support.databases import connected
from tests.support.events import wire_event
from tests.support.settings import settings_for
from tests.support.waiting import wait_until

SECRET = "whsec_" + base64.b64encode(b"luc-credits-test-key-0123456789ab").decode()


def _later(days: int) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).isoformat()


async def _customer(client: AsyncTestClient[Any], customer_id: str = "acme", **fields: Any) -> None:
    response = await client.post(
        "/v1/customers", json={"id": customer_id, "name": customer_id.title(), **fields}
    )
    assert response.status_code == 201, response.text


async def _grant(
    client: AsyncTestClient[Any], amount: str, customer_id: str = "acme", **fields: Any
) -> dict[str, Any]:
    response = await client.post(
        f"/v1/customers/{customer_id}/credits", json={"amount_usd": amount, **fields}
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def _record(db: asyncpg.Connection, entries: Sequence[PricedEntry]) -> int:
    """Draw ``entries`` and raise their alerts in one transaction, as recording does."""
    async with db.transaction():
        return await raise_credit_alerts(db, await draw_credits(db, entries))


def _charge(entry_id: int, price: str, customer: str = "acme") -> PricedEntry:
    made = datetime.now(UTC) - timedelta(minutes=1)
    return PricedEntry(entry_id, f"ev-{entry_id}", customer, Decimal(price), made)


async def _balance(client: AsyncTestClient[Any], customer_id: str = "acme") -> str:
    response = await client.get(f"/v1/customers/{customer_id}/credits")
    assert response.status_code == 200, response.text
    return str(response.json()["balance_usd"])


async def _credit_alerts(client: AsyncTestClient[Any], customer_id: str = "acme") -> list[Any]:
    response = await client.get("/v1/alerts", params={"customer_id": customer_id})
    assert response.status_code == 200, response.text
    return [(a["type"], a["balance_usd"], a["low_balance_usd"]) for a in response.json()["items"]]


async def test_a_grant_is_answered_kept_and_counted_in_the_balance(
    client: AsyncTestClient[Any],
) -> None:
    await _customer(client, low_balance_usd="10")
    expires = _later(30)
    grant = await _grant(client, "25.50", expires_at=expires, reference="PO-1001")
    assert grant.pop("id") > 0 and grant.pop("created_at")
    assert grant == {
        "customer_id": "acme",
        "amount_usd": "25.5",
        "remaining_usd": "25.5",
        "expires_at": datetime.fromisoformat(expires).isoformat().replace("+00:00", "Z"),
        "reference": "PO-1001",
        "expired": False,
    }
    await _grant(client, "4.5")
    shown = (await client.get("/v1/customers/acme/credits")).json()
    assert shown["balance_usd"] == "30"
    assert [(g["amount_usd"], g["remaining_usd"]) for g in shown["grants"]] == [
        ("25.5", "25.5"),
        ("4.5", "4.5"),
    ]
    customer = (await client.get("/v1/customers/acme")).json()
    assert customer["credit_balance_usd"] == "30"
    listed = (await client.get("/v1/customers")).json()["items"]
    assert [(c["id"], c["credit_balance_usd"]) for c in listed] == [("acme", "30")]


async def test_a_grant_sent_again_under_its_reference_is_granted_once(
    client: AsyncTestClient[Any], database_url: str
) -> None:
    """A finance tool that retries a grant after a lost answer must not credit twice; the
    reference (a payment, a purchase order) names the grant."""
    await _customer(client)
    expires = _later(30)
    body = {"amount_usd": "100", "expires_at": expires, "reference": "stripe-ch_1"}
    first = await client.post("/v1/customers/acme/credits", json=body)
    again = await client.post("/v1/customers/acme/credits", json={**body, "amount_usd": "100.00"})
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    other = await client.post("/v1/customers/acme/credits", json={**body, "amount_usd": "200"})
    assert other.status_code == 409
    assert other.json()["detail"] == (
        f"reference: 'stripe-ch_1' names grant {first.json()['id']} already (100 USD, expires "
        f"{instant_text(datetime.fromisoformat(expires))}); a reference names one grant: send "
        "that grant again to get it back, or use another reference"
    )
    never = await client.post(
        "/v1/customers/acme/credits", json={"amount_usd": "100", "reference": "stripe-ch_1"}
    )
    assert never.status_code == 409  # the same amount, but no expiry: another grant
    # Sent at once, twice: one grant, the other answer is that grant.
    twice = {"amount_usd": "7", "reference": "stripe-ch_2"}
    answers = await asyncio.gather(
        *(client.post("/v1/customers/acme/credits", json=twice) for _ in range(2))
    )
    assert sorted(a.status_code for a in answers) == [200, 201]
    assert answers[0].json()["id"] == answers[1].json()["id"]
    # Without a reference, each grant is a grant.
    await _grant(client, "1")
    await _grant(client, "1")
    shown = (await client.get("/v1/customers/acme/credits")).json()
    assert shown["balance_usd"] == "109"  # 100 + 7 + 1 + 1
    assert len(shown["grants"]) == 4
    # The command line says so too, on stderr; the grant on stdout as REST answers it.
    cli = await luc_on(
        database_url, "customers", "credits", "grant", "acme", "--amount-usd", "7",
        "--reference", "stripe-ch_2", check=True,
    )  # fmt: skip
    assert json.loads(cli.stdout)["id"] == answers[0].json()["id"]
    assert "granted before under reference 'stripe-ch_2': nothing granted again" in cli.stderr
    assert (await client.get("/v1/customers/acme/credits")).json()["balance_usd"] == "109"


async def test_a_bad_grant_is_refused_with_a_message_that_names_the_field(
    client: AsyncTestClient[Any], db: asyncpg.Connection
) -> None:
    await _customer(client)
    for body, status, detail in (
        ({"amount_usd": "0"}, 422, "amount_usd: must be more than zero, got 0"),
        # Zero written with seven places is zero in LUC's form, not Python's "0E-7".
        ({"amount_usd": "0.0000000"}, 422, 'amount_usd: must be more than zero, got 0"'),
        ({"amount_usd": "-5"}, 422, "amount_usd: "),
        ({"amount_usd": "1e3"}, 422, "amount_usd: "),
        ({"amount_usd": "5", "expires_at": "2020-01-01T00:00:00Z"}, 422, "expires_at: "),
        ({"amount_usd": "5", "expires_at": "2030-01-01T00:00:00"}, 422, "expires_at: "),
        # Python's own words were shown ("offset must be a timedelta strictly between
        # -timedelta(hours=24) and timedelta(hours=24), not datetime.timedelta(days=1, ...").
        (
            {"amount_usd": "5", "expires_at": "2030-01-01T00:00:00+25:00"},
            422,
            "expires_at: '2030-01-01T00:00:00+25:00' is not a valid instant: its UTC offset "
            "+25:00 is not below 24 hours",
        ),
        # Stored as PostgreSQL's infinity: the same grant sent again was a conflict.
        (
            {"amount_usd": "5", "expires_at": "9999-12-31T23:59:59.999999Z"},
            422,
            "expires_at: 9999-12-31T23:59:59.999999Z is the first or last instant of years "
            "0001-9999, which PostgreSQL's binary protocol reads as -infinity or infinity",
        ),
        ({"amount_usd": "5", "reference": ""}, 422, "reference: must be 1 to 200"),
        ({"amount_usd": "5", "colour": "red"}, 400, "colour"),
    ):
        response = await client.post("/v1/customers/acme/credits", json=body)
        assert response.status_code == status, (body, response.text)
        assert detail in response.text, (body, response.text)
    missing = await client.post("/v1/customers/nobody/credits", json={"amount_usd": "5"})
    assert missing.status_code == 404
    assert "customer 'nobody' does not exist" in missing.text
    assert (await client.get("/v1/customers/nobody/credits")).status_code == 404
    assert await db.fetchval("SELECT count(*) FROM credit_grants") == 0


async def test_entries_draw_the_earliest_expiry_first_and_the_balance_never_goes_below_zero(
    client: AsyncTestClient[Any], db: asyncpg.Connection
) -> None:
    await _customer(client)
    later = await _grant(client, "10", expires_at=_later(60))
    sooner = await _grant(client, "3", expires_at=_later(5))
    assert await _record(db, [_charge(1, "2.25"), _charge(2, "1.5")]) == 0
    # 2.25 + 0.75 from the sooner grant, then 0.75 from the later one.
    assert await _balance(client) == "9.25"
    assert await _record(db, [_charge(3, "12")]) == 1  # exhausted
    assert await _balance(client) == "0"
    drawn = await db.fetch("SELECT entry_id, grant_id, amount_usd FROM credit_draws ORDER BY id")
    assert [(r["entry_id"], r["grant_id"], str(r["amount_usd"])) for r in drawn] == [
        (1, sooner["id"], "2.25"),
        (2, sooner["id"], "0.75"),
        (2, later["id"], "0.75"),
        (3, later["id"], "9.25"),  # 12 asked, 9.25 left: 2.75 not covered, due as money
    ]
    # A grant's remaining credit is its amount less its draws, exactly.
    assert await db.fetchval(
        """
        SELECT bool_and(g.remaining_usd = g.amount_usd - COALESCE(d.drawn, 0))
        FROM credit_grants AS g
        LEFT JOIN (SELECT grant_id, sum(amount_usd) AS drawn FROM credit_draws
                   GROUP BY grant_id) AS d ON d.grant_id = g.id
        """
    )


async def test_customers_without_credits_cost_one_statement_and_change_nothing(
    client: AsyncTestClient[Any], db: asyncpg.Connection
) -> None:
    await _customer(client, "globex")
    assert await draw_credits(db, [_charge(1, "5", customer="globex")]) == []
    assert await draw_credits(db, [_charge(2, "5", customer="unregistered")]) == []
    assert await db.fetchval("SELECT count(*) FROM credit_draws") == 0


async def test_credit_alerts_fire_once_per_crossing_and_a_grant_re_arms_them(
    client: AsyncTestClient[Any], db: asyncpg.Connection
) -> None:
    await _customer(client, low_balance_usd="4")
    await _grant(client, "10")
    assert await _record(db, [_charge(1, "5")]) == 0  # 5 left: not low
    assert await _record(db, [_charge(2, "1.5")]) == 1  # 3.5 < 4: low
    assert await _record(db, [_charge(3, "1")]) == 0  # 2.5: still low, told once
    assert await _record(db, [_charge(4, "2.5")]) == 1  # 0: exhausted
    assert await _record(db, [_charge(5, "1")]) == 0  # nothing left, told once
    assert await _credit_alerts(client) == [
        ("customer.credits_low", "3.5", "4"),
        ("customer.credits_exhausted", "0", "4"),
    ]
    # A grant that leaves the balance below the low mark re-arms only exhaustion.
    await _grant(client, "2")
    assert await _record(db, [_charge(6, "2")]) == 1
    # One that lifts it back above re-arms both: from 6 to 0 in one step fires both.
    await _grant(client, "6")
    assert await _record(db, [_charge(7, "6.01")]) == 2
    assert [kind for kind, _, _ in await _credit_alerts(client)] == [
        "customer.credits_low",
        "customer.credits_exhausted",
        "customer.credits_exhausted",
        "customer.credits_low",
        "customer.credits_exhausted",
    ]
    every = (await client.get("/v1/alerts")).json()["items"]
    assert {a["delivery"] for a in every} == {"none"}  # no webhook_url: recorded only
    assert all(a["budget_id"] is None and a["customer_id"] == "acme" for a in every)
    low = (await client.get("/v1/alerts", params={"type": "customer.credits_low"})).json()
    assert len(low["items"]) == 2
    bad = await client.get("/v1/alerts", params={"type": "credits"})
    assert bad.status_code == 422 and "type: 'credits' is not one of" in bad.text


async def test_credit_given_back_or_a_lower_low_balance_re_arms_and_a_higher_one_fires_at_once(
    client: AsyncTestClient[Any],
) -> None:
    """Once per crossing, whatever lifted the balance back: before, only a grant re-armed
    the alerts, so a balance raised by credit given back (a job moved to another customer)
    and drawn down again crossed both marks in silence, and so did one drawn below a low
    balance set lower after it fired. Google's gemini-3.0-flash at 0.10 per 1M input
    tokens; no plan: each event's price is its cost, 5M tokens 0.50."""

    async def spend(event_id: str, job_id: str, tokens: int) -> None:
        event = wire_event(
            event_id, job_id=job_id, customer_id="acme", input_tokens=tokens, output_tokens=0
        )
        response = await client.post("/v1/events", json=event)
        assert response.status_code == 201, response.text

    await _customer(client, low_balance_usd="0.3")
    await _customer(client, "other")
    await _grant(client, "0.5")
    await spend("e1", "j1", 5_000_000)  # 0.50: 0 left, below 0.3 and exhausted
    moved = await client.patch("/v1/jobs/j1", json={"customer_id": "other"})
    assert moved.status_code == 200, moved.text
    assert await _balance(client) == "0.5"  # given back
    await spend("e2", "j2", 5_000_000)  # 0 again: both crossed again
    assert await _credit_alerts(client) == [
        ("customer.credits_low", "0", "0.3"),
        ("customer.credits_exhausted", "0", "0.3"),
        ("customer.credits_low", "0", "0.3"),
        ("customer.credits_exhausted", "0", "0.3"),
    ]
    await _grant(client, "1")  # 1 left: both re-armed
    # A low balance set above the balance is crossed now, and told now (once: the next
    # draw below it tells nothing more).
    raised = await client.patch("/v1/customers/acme", json={"low_balance_usd": "1.5"})
    assert raised.status_code == 200, raised.text
    assert (await _credit_alerts(client))[4:] == [("customer.credits_low", "1", "1.5")]
    await spend("e3", "j2", 1_000_000)  # 0.90: still below 1.5, told already
    assert len(await _credit_alerts(client)) == 5
    # Set below the balance, the low alert is armed again: 0.90 - 0.60 = 0.30 < 0.5.
    lowered = await client.patch("/v1/customers/acme", json={"low_balance_usd": "0.5"})
    assert lowered.status_code == 200, lowered.text
    assert len(await _credit_alerts(client)) == 5
    await spend("e4", "j2", 6_000_000)
    assert (await _credit_alerts(client))[5:] == [("customer.credits_low", "0.3", "0.5")]
    assert await _balance(client) == "0.3"


async def test_a_call_made_after_a_grant_expires_is_not_paid_by_it_though_recorded_before(
    client: AsyncTestClient[Any],
) -> None:
    """Ingest takes events stamped up to 5 minutes ahead of its clock: one stamped 4
    minutes ahead, recorded while a grant expiring in 2 minutes was live, drew on it.
    gemini-3.0-flash at 0.10 per 1M input tokens, no plan: 2M tokens, 0.20."""
    await _customer(client)
    now = datetime.now(UTC)
    await _grant(client, "1", expires_at=(now + timedelta(minutes=2)).isoformat())
    # Made 4 minutes ahead: not paid by the grant; made now: paid.
    for event_id, ahead, balance in (("ahead", 4, "1"), ("now", 0, "0.8")):
        event = wire_event(
            event_id,
            occurred_at=instant_text(now + timedelta(minutes=ahead)),
            customer_id="acme",
            input_tokens=2_000_000,
            output_tokens=0,
        )
        response = await client.post("/v1/events", json=event)
        assert response.status_code == 201, response.text
        assert await _balance(client) == balance


async def test_an_expired_grant_stops_counting_and_is_never_drawn(
    client: AsyncTestClient[Any], db: asyncpg.Connection
) -> None:
    await _customer(client, low_balance_usd="1")
    month = await _grant(client, "5", expires_at=_later(30))
    forever = await _grant(client, "0.5")
    # A grant made long ago that expired a second before this transaction (REST refuses an
    # expiry in the past, so it is written as it stands now).
    await db.execute(
        "INSERT INTO credit_grants (customer_id, amount_usd, remaining_usd, expires_at)"
        " VALUES ('acme', 7, 7, now() - interval '1 second')"
    )
    assert await _balance(client) == "5.5"
    assert (await client.get("/v1/customers/acme")).json()["credit_balance_usd"] == "5.5"
    # Listed with what it held when it expired, and said to be expired: finance sees 7.00
    # went unused, not 7.00 still to spend.
    grants = (await client.get("/v1/customers/acme/credits")).json()["grants"]
    assert [(g["remaining_usd"], g["expired"]) for g in grants] == [
        ("5", False),
        ("0.5", False),
        ("7", True),
    ]
    # 6 asked: 5 from the grant expiring in a month, 0.5 from the one without expiry.
    assert await _record(db, [_charge(1, "6")]) == 2  # low and exhausted at once
    rows = await db.fetch("SELECT grant_id, amount_usd FROM credit_draws ORDER BY id")
    assert [(r["grant_id"], str(r["amount_usd"])) for r in rows] == [
        (month["id"], "5"),
        (forever["id"], "0.5"),
    ]
    assert await _balance(client) == "0"


async def test_twenty_concurrent_transactions_on_one_small_grant_never_overdraw_it(
    client: AsyncTestClient[Any], database_url: str, db: asyncpg.Connection
) -> None:
    await _customer(client, low_balance_usd="1")
    await _grant(client, "5")

    async def one(n: int) -> int:
        async with connected(database_url) as conn:
            return await _record(conn, [_charge(100 + n, "0.30")])

    # 20 × 0.30 = 6.00 asked of 5.00: sixteen draw 0.30, one draws the last 0.20, three
    # draw nothing; whatever order the locks give them.
    raised = await asyncio.gather(*(one(n) for n in range(20)))
    assert sum(raised) == 2
    assert await _balance(client) == "0"
    assert await db.fetchval("SELECT sum(amount_usd) FROM credit_draws") == Decimal(5)
    assert (
        sorted(str(r["amount_usd"]) for r in await db.fetch("SELECT amount_usd FROM credit_draws"))
        == ["0.20"] + ["0.30"] * 16
    )
    assert [kind for kind, _, _ in await _credit_alerts(client)] == [
        "customer.credits_low",
        "customer.credits_exhausted",
    ]


@pytest.fixture
async def hooked(
    database_url: str, admin_key: str, receiver: Receiver
) -> AsyncIterator[AsyncTestClient[Any]]:
    """The app with a webhook secret, loopback allowed and a quick dispatcher."""
    settings = settings_for(
        database_url,
        LUC_WEBHOOK_SECRET=SECRET,
        LUC_WEBHOOK_ALLOWED_HOSTS="127.0.0.1",
        LUC_WEBHOOK_POLL_SECONDS="0.1",
    )
    async with AsyncTestClient(app=create_app(settings)) as client:
        yield client


async def test_a_customer_webhook_is_refused_while_no_webhook_secret_is_set(
    client: AsyncTestClient[Any],
) -> None:
    # Credit alerts are signed with LUC_WEBHOOK_SECRET alone: without it each delivery
    # failed until the alert died, the customer never told. The default settings set none.
    detail = (
        "webhook_url: a customer's credit alerts are signed with LUC_WEBHOOK_SECRET, which "
        "is not set, so none could be delivered; set it (and restart LUC) before giving a "
        "customer a webhook_url. Without one its alerts are still listed by GET /v1/alerts"
    )
    refused = await client.post(
        "/v1/customers",
        json={"id": "acme", "name": "Acme", "webhook_url": "https://hooks.example.com/c"},
    )
    assert (refused.status_code, refused.json()["detail"]) == (422, detail)
    assert (await client.get("/v1/customers")).json()["items"] == []
    await _customer(client, low_balance_usd="2.5")
    patched = await client.patch(
        "/v1/customers/acme", json={"webhook_url": "https://hooks.example.com/c"}
    )
    assert (patched.status_code, patched.json()["detail"]) == (422, detail)
    assert (await client.get("/v1/customers/acme")).json()["webhook_url"] is None


async def test_a_credit_alert_is_posted_signed_to_the_customers_webhook(
    hooked: AsyncTestClient[Any], db: asyncpg.Connection, receiver: Receiver
) -> None:
    refused = await hooked.post(
        "/v1/customers", json={"id": "acme", "name": "Acme", "webhook_url": "http://10.1.2.3/h"}
    )
    assert refused.status_code == 422, refused.text
    assert "webhook" in refused.text.lower() or "10.1.2.3" in refused.text
    await _customer(hooked, low_balance_usd="2.5", webhook_url=receiver.url("/credits"))
    await _grant(hooked, "3")
    assert await _record(db, [_charge(1, "1")]) == 1  # 2 < 2.5
    [delivery] = await wait_until(lambda: receiver.received("/credits"), 10, "the low alert")
    Webhook(SECRET).verify(delivery.body, delivery.headers)
    body = json.loads(delivery.body)
    [alert] = (await hooked.get("/v1/alerts")).json()["items"]
    assert body == {
        "type": "customer.credits_low",
        "timestamp": alert["created_at"],
        "data": {
            "alert_id": alert["alert_id"],
            "customer_id": "acme",
            "balance_usd": "2",
            "low_balance_usd": "2.5",
        },
    }
    assert delivery.headers["webhook-id"] == alert["alert_id"]

    async def delivered() -> bool:
        items = (await hooked.get("/v1/alerts")).json()["items"]
        return bool(items[0]["delivery"] == "delivered")

    await wait_until(delivered, 10, "the alert marked delivered")


async def test_credit_stop_refuses_reservations_at_zero_and_admits_again_after_a_grant(
    client: AsyncTestClient[Any],
) -> None:
    await _customer(client, credit_stop=True)
    await _customer(client, "globex")  # no credit_stop: never refused for credits
    call = {"job_id": "job-s", "agent": "ORACLE", "model": "gemini-3.0-flash"}
    reserve = {**call, "estimated_cost_usd": "0.01"}

    refused = await client.post("/v1/budgets/reservations", json={**reserve, "customer_id": "acme"})
    assert refused.status_code == 402, refused.text
    assert refused.json()["allowed"] is False
    assert refused.json()["refused_by"] == "credits"
    assert refused.json()["reason"] == (
        "customer 'acme' has no prepaid credits left and credit_stop is set: grant credits "
        "(POST /v1/customers/acme/credits)"
    )
    other = await client.post("/v1/budgets/reservations", json={**reserve, "customer_id": "globex"})
    assert other.status_code == 200, other.text
    # Once an event names the job's customer, the job's customer decides, named or not.
    recorded = await client.post(
        "/v1/events",
        json={
            "id": "ev-s",
            "occurred_at": "2026-11-20T10:00:00Z",
            "job_id": "job-s",
            "agent": "ORACLE",
            "provider": "openrouter",
            "model": "google/gemini-3.0-flash",
            "input_tokens": 10,
            "output_tokens": 10,
            "customer_id": "acme",
        },
    )
    assert recorded.status_code in (200, 201, 202), recorded.text
    assert (await client.post("/v1/budgets/reservations", json=reserve)).status_code == 402
    looked = await client.get("/v1/budgets/check", params={"job_id": "job-s"})
    assert looked.json()["allowed"] is False and looked.json()["refused_by"] == "credits"

    await _grant(client, "1")
    admitted = await client.post("/v1/budgets/reservations", json=reserve)
    assert admitted.status_code == 200, admitted.text
    assert admitted.json()["allowed"] is True and admitted.json()["refused_by"] is None


async def test_metrics_carry_the_balance_across_customers_and_customers_by_state(
    client: AsyncTestClient[Any], db: asyncpg.Connection
) -> None:
    # acme: 10 − 7.5 = 2.5, below its low of 3; globex: 4 − 4 = 0; initech: 6, no low mark;
    # hooli holds no credits and is not counted.
    for name, low in (("acme", "3"), ("globex", "1"), ("initech", None), ("hooli", "1")):
        await _customer(client, name, **({"low_balance_usd": low} if low else {}))
    await _grant(client, "10", "acme")
    await _grant(client, "4", "globex")
    await _grant(client, "6", "initech")
    await _record(db, [_charge(1, "7.5", "acme"), _charge(2, "4", "globex")])
    scraped = (await client.get("/metrics")).text
    families = {
        s.name: (dict(s.labels), s.value)
        for f in text_string_to_metric_families(scraped)
        for s in f.samples
        if s.name.startswith(("luc_customer_credit", "luc_customers_by_credit"))
    }
    assert families["luc_customer_credit_balance_usd"] == ({}, 8.5)
    states = {
        s.labels["state"]: s.value
        for f in text_string_to_metric_families(scraped)
        for s in f.samples
        if s.name == "luc_customers_by_credit_state"
    }
    assert states == {"exhausted": 1.0, "low": 1.0, "ok": 1.0}


async def test_metrics_carry_the_age_of_the_oldest_alert_waiting_for_its_webhook(
    client: AsyncTestClient[Any], db: asyncpg.Connection
) -> None:
    await _customer(client)

    async def outbox() -> dict[str, float]:
        scraped = (await client.get("/metrics")).text
        return {
            s.name + "".join(s.labels.values()): s.value
            for f in text_string_to_metric_families(scraped)
            for s in f.samples
            if s.name.startswith("luc_webhook_")
        }

    assert await outbox() == {
        "luc_webhook_deliveriespending": 0.0,
        "luc_webhook_deliveriesdead": 0.0,
        "luc_webhook_oldest_pending_seconds": 0.0,
    }
    # Two credit alerts raised 100 and 40 seconds ago, waiting for their webhook.
    for age in (100, 40):
        alert_id = await db.fetchval(
            "INSERT INTO alerts (type, customer_id, balance_usd, created_at) "
            "VALUES ('customer.credits_low', 'acme', 1, clock_timestamp() - $1::interval) "
            "RETURNING id",
            timedelta(seconds=age),
        )
        await db.execute(
            "INSERT INTO alert_outbox (alert_id, webhook_url) VALUES ($1, 'https://h.example/')",
            alert_id,
        )
    found = await outbox()
    assert found["luc_webhook_deliveriespending"] == 2.0
    assert 100 <= found["luc_webhook_oldest_pending_seconds"] < 160


async def test_paging_alerts_by_cursor_misses_none_committed_out_of_order(
    client: AsyncTestClient[Any], db: asyncpg.Connection, database_url: str
) -> None:
    # An alert is stamped when inserted, not when committed: a batch that raised one and
    # had not committed yet let alerts stamped after it commit first. A client paging by
    # cursor past those never saw it. The list holds back what an open transaction could
    # still precede.
    await _customer(client)
    insert = (
        "INSERT INTO alerts (type, customer_id, balance_usd) "
        "VALUES ('customer.credits_low', 'acme', $1) RETURNING id"
    )
    slow = await asyncpg.connect(database_url)
    try:
        open_batch = slow.transaction()
        await open_batch.start()
        late = str(await slow.fetchval(insert, 1))
        first = str(await db.fetchval(insert, 2))
        second = str(await db.fetchval(insert, 3))

        async def page(cursor: str | None) -> dict[str, Any]:
            params = {"limit": "1", **({"cursor": cursor} if cursor else {})}
            response = await client.get("/v1/alerts", params=params)
            assert response.status_code == 200, response.text
            return dict(response.json())

        # While the batch is open, alerts stamped after its start are held back.
        assert (await page(None))["items"] == []
        await open_batch.commit()
        seen, cursor = [], None
        while True:
            answer = await page(cursor)
            seen += [a["alert_id"] for a in answer["items"]]
            if (cursor := answer["next_cursor"]) is None:
                break
        assert seen == [late, first, second]
    finally:
        await slow.close()

"""Alert webhooks always arrive, at least once, each crossing under one ``webhook-id``:
through failing answers, a receiver that is down, and LUC killed (SIGKILL) and restarted in
between. Past its retry window a delivery is dead, visible in the API, and can be sent
again. Redirects are never followed.

LUC runs as a real ``luc serve`` process; the receiver is a real HTTP server on loopback,
on a fixed port so that it can go down (connection refused) and come back.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections import Counter, defaultdict
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.budgets import Receiver, always, opus_event
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow

SECRET = "whsec_" + base64.b64encode(b"luc-delivery-test-key-0123456789").decode()
FAST_RETRIES = {
    "LUC_WEBHOOK_SECRET": SECRET,
    "LUC_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
    "LUC_WEBHOOK_BACKOFF_BASE_SECONDS": "0.2",
    "LUC_WEBHOOK_BACKOFF_MAX_SECONDS": "1",
    "LUC_WEBHOOK_POLL_SECONDS": "0.2",
    # A delivery's lease is this timeout + 30 s: what a claim held by a killed process
    # costs at worst.
    "LUC_WEBHOOK_TIMEOUT_SECONDS": "2",
}
AT = "2026-11-20T12:00:00Z"


def _budget(http: httpx.Client, **fields: Any) -> dict[str, Any]:
    response = http.post("/v1/budgets", json={"period": "lifetime", **fields})
    assert response.status_code == 201, response.text
    return dict(response.json())


def _send(http: httpx.Client, *events: dict[str, Any]) -> None:
    response = http.post("/v1/events/batch", json={"events": list(events)})
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == len(events), response.text


def _outbox_series(http: httpx.Client) -> dict[tuple[str, ...], float]:
    """The outbox's series on /metrics: deliveries by state, and the oldest pending age."""
    scraped = http.get("/metrics")
    assert scraped.status_code == 200, scraped.text
    return {
        tuple(s.labels.values()): s.value
        for f in text_string_to_metric_families(scraped.text)
        for s in f.samples
        if s.name in ("luc_webhook_deliveries", "luc_webhook_oldest_pending_seconds")
    }


def _alerts(http: httpx.Client) -> list[dict[str, Any]]:
    return list(http.get("/v1/alerts").json()["items"])


def _attempts_in(database_url: str) -> dict[tuple[int, float], int]:
    """Attempts per crossing (budget id, threshold), read from the database."""

    async def query() -> dict[tuple[int, float], int]:
        conn = await asyncpg.connect(database_url)
        try:
            rows = await conn.fetch(
                "SELECT a.budget_id, a.threshold, o.attempts"
                " FROM alert_outbox AS o JOIN alerts AS a ON a.id = o.alert_id"
            )
        finally:
            await conn.close()
        return {(r["budget_id"], float(r["threshold"])): r["attempts"] for r in rows}

    return asyncio.run(query())


def _between_attempts(database_url: str) -> bool:
    """No delivery claimed now, and none due within the next 0.25 s. (Only alerts tried
    before count: one never tried waits behind its budget's earlier alert, due or not.)"""

    async def query() -> bool:
        conn = await asyncpg.connect(database_url)
        try:
            return bool(
                await conn.fetchval(
                    """
                    SELECT NOT EXISTS (
                        SELECT 1 FROM alert_outbox
                        WHERE delivered_at IS NULL AND dead_at IS NULL AND attempts > 0
                          AND (locked_until > now()
                               OR next_attempt_at < now() + interval '0.25 seconds'))
                    """
                )
            )
        finally:
            await conn.close()

    return asyncio.run(query())


def test_every_crossing_arrives_under_one_id_through_errors_an_outage_and_a_restart(
    server_factory: Any, receiver: Receiver, database_url: str
) -> None:
    receiver.answer = always(500)  # phase 1: the receiver is up but failing
    server = server_factory(**FAST_RETRIES)
    http = httpx.Client(base_url=server.base_url, timeout=30)
    job = _budget(
        http, scope="job", scope_id="job-hook", limit_usd="1.00", webhook_url=receiver.url()
    )
    agent = _budget(
        http,
        scope="agent",
        scope_id="ACHEEVY",
        limit_usd="0.50",
        thresholds=[0.5, 1],
        webhook_url=receiver.url(),
    )

    # 0.60 USD: the job budget passes 50 % of 1.00; the agent budget 50 % and 100 % of 0.50.
    _send(http, opus_event("hook-1", "0.60", occurred_at=AT, job_id="job-hook"))
    wait_for(lambda: len(receiver.received()) >= 6, 15, "first deliveries and their retries")
    first = receiver.received()
    assert {d.status for d in first} == {500}
    assert max(Counter(d.headers["webhook-id"] for d in first).values()) >= 2  # retried

    # Phase 2: the receiver is down. Another 0.30 takes the job to 0.90, past 80 %.
    receiver.stop()
    _send(http, opus_event("hook-2", "0.30", occurred_at=AT, job_id="job-hook"))

    def attempts() -> dict[tuple[int, float], int]:
        """Attempts so far per crossing (budget id, threshold), every alert still pending."""
        alerts = _alerts(http)
        assert all(a["delivery"] == "pending" for a in alerts), alerts
        return {(a["budget_id"], a["threshold"]): a["attempts"] for a in alerts}

    # A budget's alerts go out one at a time, in order: only the first of each (its 50 %
    # crossing) is tried while it fails; those after it wait, never sent before it.
    heads = [(job["id"], 0.5), (agent["id"], 0.5)]
    queued = [(job["id"], 0.8), (agent["id"], 1.0)]

    def all_failing_while_down() -> bool:
        now = attempts()
        return len(now) == 4 and all(now[h] >= 2 for h in heads)

    wait_for(all_failing_while_down, 15, "attempts against the receiver while it is down")
    assert [attempts()[q] for q in queued] == [0, 0]

    # LUC dies mid-retry, with every alert still pending, and comes back on the same
    # database. A last 0.20 takes the job to 1.10, past 100 %, while the receiver is down.
    # The kill lands between two attempts: a claim held by a killed process is freed only
    # when its lease (timeout + 30 s) runs out, which is right but too slow for a test.
    wait_for(lambda: _between_attempts(database_url), 15, "a moment between two attempts", 0.02)
    server.kill()
    before_kill = _attempts_in(database_url)  # what the killed LUC got to
    server.start()
    _send(http, opus_event("hook-3", "0.20", occurred_at=AT, job_id="job-hook"))

    def restarted_and_failing() -> bool:
        # The restarted LUC goes on trying each budget's first alert, and fails like before.
        now = attempts()
        return len(now) == 5 and all(now[h] > before_kill[h] for h in heads)

    wait_for(restarted_and_failing, 15, "the restarted LUC to attempt the new crossing")
    assert [attempts()[q] for q in [*queued, (job["id"], 1.0)]] == [0, 0, 0]

    # Phase 3: the receiver is back, and healthy.
    receiver.answer = always(200)
    receiver.start()

    def all_delivered() -> list[dict[str, Any]] | None:
        alerts = _alerts(http)
        return alerts if all(a["delivery"] == "delivered" for a in alerts) else None

    alerts = wait_for(all_delivered, 45, "every alert delivered")
    http.close()

    crossings = {(a["budget_id"], Decimal(str(a["threshold"]))) for a in alerts}
    assert len(alerts) == 5
    assert crossings == {
        (job["id"], Decimal("0.5")),
        (job["id"], Decimal("0.8")),
        (job["id"], Decimal("1")),
        (agent["id"], Decimal("0.5")),
        (agent["id"], Decimal("1")),
    }

    # Exactly one distinct webhook-id per crossing (the alert id), each of them answered
    # 200 at least once. Repeats of an id (at least once) carry the same body.
    everything = receiver.received()
    by_id: dict[str, list[bytes]] = defaultdict(list)
    for d in everything:
        by_id[d.headers["webhook-id"]].append(d.body)
    assert set(by_id) == {a["alert_id"] for a in alerts}
    assert {d.headers["webhook-id"] for d in everything if d.status == 200} == set(by_id)
    for alert_id, bodies in by_id.items():
        assert len(set(bodies)) == 1, f"alert {alert_id} was sent with different bodies"
        data = json.loads(bodies[0])["data"]
        assert data["alert_id"] == alert_id
    # Each budget's crossings arrived in the order they happened, lowest threshold first.
    threshold_of = {a["alert_id"]: (a["budget_id"], a["threshold"]) for a in alerts}
    for budget in (job["id"], agent["id"]):
        arrived = [
            threshold_of[d.headers["webhook-id"]][1]
            for d in everything
            if threshold_of[d.headers["webhook-id"]][0] == budget
        ]
        first_arrivals = list(dict.fromkeys(arrived))
        assert first_arrivals == sorted(first_arrivals), (budget, arrived)
    # Where each crossing happened, by hand: the spend right after the batch that crossed.
    spent = {
        (a["budget_id"], Decimal(str(a["threshold"]))): Decimal(a["spent_usd"]) for a in alerts
    }
    assert spent == {
        (job["id"], Decimal("0.5")): Decimal("0.60"),
        (job["id"], Decimal("0.8")): Decimal("0.90"),
        (job["id"], Decimal("1")): Decimal("1.10"),
        (agent["id"], Decimal("0.5")): Decimal("0.60"),
        (agent["id"], Decimal("1")): Decimal("0.60"),
    }


def test_a_delivery_failing_past_its_retry_window_is_dead_and_can_be_sent_again(
    server_factory: Any, receiver: Receiver
) -> None:
    healthy = {"/broken": False}

    def answer(path: str, seen: int) -> tuple[int, dict[str, str]]:
        if path == "/broken":
            return (200 if healthy["/broken"] else 500), {}
        if path == "/moved":  # a redirect to a URL that would answer 200
            return 302, {"location": receiver.url("/landing")}
        return 200, {}

    receiver.answer = answer
    server = server_factory(**FAST_RETRIES, LUC_WEBHOOK_RETRY_WINDOW_SECONDS="2")
    http = httpx.Client(base_url=server.base_url, timeout=30)
    broken = _budget(
        http,
        scope="job",
        scope_id="job-broken",
        limit_usd="0.10",
        thresholds=[1],
        webhook_url=receiver.url("/broken"),
    )
    moved = _budget(
        http,
        scope="job",
        scope_id="job-moved",
        limit_usd="0.10",
        thresholds=[1],
        webhook_url=receiver.url("/moved"),
    )
    _send(
        http,
        opus_event("dead-1", "0.10", occurred_at=AT, job_id="job-broken"),
        opus_event("dead-2", "0.10", occurred_at=AT, job_id="job-moved"),
    )

    def both_dead() -> dict[int, dict[str, Any]] | None:
        alerts = {a["budget_id"]: a for a in _alerts(http)}
        done = len(alerts) == 2 and all(a["delivery"] == "dead" for a in alerts.values())
        return alerts if done else None

    alerts = wait_for(both_dead, 20, "both deliveries to be marked dead")
    dead, redirected = alerts[broken["id"]], alerts[moved["id"]]

    assert dead["attempts"] >= 2
    assert "500" in dead["last_error"]
    assert {d.headers["webhook-id"] for d in receiver.received("/broken")} == {dead["alert_id"]}
    assert len(receiver.received("/broken")) == dead["attempts"]

    # The 302 counts as a failure; its target is never called.
    assert "302" in redirected["last_error"]
    assert {d.status for d in receiver.received("/moved")} == {302}
    assert receiver.received("/landing") == []

    # An operator sees them: on /metrics (what LucWebhookDeliveryDead fires on) and listed
    # by their delivery.
    assert _outbox_series(http) == {("dead",): 2.0, ("pending",): 0.0, (): 0.0}
    listed = http.get("/v1/alerts", params={"delivery": "dead"}).json()["items"]
    assert sorted(a["alert_id"] for a in listed) == sorted(
        [dead["alert_id"], redirected["alert_id"]]
    )
    assert http.get("/v1/alerts", params={"delivery": "delivered"}).json()["items"] == []
    bad = http.get("/v1/alerts", params={"delivery": "lost"})
    assert (bad.status_code, bad.json()["detail"]) == (
        422,
        "delivery: 'lost' is not one of none, pending, delivered, dead",
    )

    # Dead means no more attempts: the dispatcher is still at work (a later alert arrives)
    # and longer than any backoff (1 s at most here) has passed since the last attempt,
    # yet the dead one was not tried again.
    attempts_when_dead = len(receiver.received("/broken"))
    last_attempt = receiver.received("/broken")[-1].received_at
    _budget(
        http,
        scope="job",
        scope_id="job-later",
        limit_usd="0.10",
        thresholds=[1],
        webhook_url=receiver.url("/later"),
    )
    _send(http, opus_event("dead-3", "0.10", occurred_at=AT, job_id="job-later"))
    wait_for(
        lambda: receiver.received("/later") and time.time() > last_attempt + 1.5,
        10,
        "a later alert delivered, past the longest backoff",
    )
    assert len(receiver.received("/broken")) == attempts_when_dead

    # The receiver is fixed; an operator sends the dead alert again.
    healthy["/broken"] = True
    response = http.post(f"/v1/alerts/{dead['alert_id']}/redeliver")
    assert response.status_code == 202, response.text
    assert response.json()["alert_id"] == dead["alert_id"]
    assert response.json()["delivery"] in ("pending", "delivered")

    def delivered() -> bool:
        one = http.get(f"/v1/alerts/{dead['alert_id']}").json()
        return bool(one["delivery"] == "delivered")

    wait_for(delivered, 10, "the redelivered alert to arrive")
    ok = [d for d in receiver.received("/broken") if d.status == 200]
    assert [d.headers["webhook-id"] for d in ok] == [dead["alert_id"]]
    assert http.get(f"/v1/alerts/{redirected['alert_id']}").json()["delivery"] == "dead"
    assert _outbox_series(http) == {("dead",): 1.0, ("pending",): 0.0, (): 0.0}
    assert [
        a["alert_id"] for a in http.get("/v1/alerts", params={"delivery": "dead"}).json()["items"]
    ] == [redirected["alert_id"]]

    missing = http.post("/v1/alerts/00000000-0000-0000-0000-000000000000/redeliver")
    assert missing.status_code == 404
    assert http.post("/v1/alerts/not-an-id/redeliver").status_code == 404
    assert http.get("/v1/alerts/not-an-id").status_code == 404
    http.close()

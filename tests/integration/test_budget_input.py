"""Bad budget definitions are refused with a message naming the field, and nothing is
stored; webhook targets that would let LUC reach its own network (SSRF) are refused; PATCH
and DELETE behave.

The app runs with the default allow-list (``*``: any public host), so every private,
loopback or link-local target below must be refused by LUC's own checks.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import asyncpg
from litestar.testing import AsyncTestClient

from tests.support.budgets import opus_event

GOOD: dict[str, Any] = {"scope": "job", "scope_id": "job-1", "period": "day", "limit_usd": "10"}

BAD_DEFINITIONS: list[tuple[str, dict[str, Any], str]] = [
    ("negative limit", {"limit_usd": "-5"}, "limit_usd"),
    ("zero limit", {"limit_usd": "0"}, "limit_usd"),
    ("limit that is not a number", {"limit_usd": "ten"}, "limit_usd"),
    ("limit that is not finite", {"limit_usd": "NaN"}, "limit_usd"),
    ("limit as a JSON number", {"limit_usd": 10}, "limit_usd"),
    ("limit with underscores", {"limit_usd": "1_000"}, "limit_usd"),
    ("limit in Arabic-Indic digits", {"limit_usd": "١٢"}, "limit_usd"),
    ("limit with an exponent", {"limit_usd": "1e3"}, "limit_usd"),
    ("limit with spaces", {"limit_usd": " 10 "}, "limit_usd"),
    ("threshold 0", {"thresholds": [0, 0.5]}, "thresholds"),
    ("threshold 1.5", {"thresholds": [0.5, 1.5]}, "thresholds"),
    ("threshold -0.1", {"thresholds": [-0.1]}, "thresholds"),
    ("no thresholds at all", {"thresholds": []}, "thresholds"),
    # A threshold written as a string is a plain decimal string, as every amount is.
    ("threshold in Arabic-Indic digits", {"thresholds": ["٠.٥"]}, "thresholds"),
    ("threshold with underscores", {"thresholds": ["0.0_5"]}, "thresholds"),
    ("threshold with spaces", {"thresholds": [" 0.5"]}, "thresholds"),
    ("threshold string with an exponent", {"thresholds": ["5e-1"]}, "thresholds"),
    # Each is checked on every spend: one per 0.5 % of the limit is too many.
    ("201 thresholds", {"thresholds": [n / 200 for n in range(1, 201)]}, "thresholds"),
    ("unknown scope", {"scope": "team"}, "scope"),
    ("job scope without scope_id", {"scope": "job", "scope_id": None}, "scope_id"),
    ("agent scope with an empty scope_id", {"scope": "agent", "scope_id": ""}, "scope_id"),
    ("scope_id on a global budget", {"scope": "global", "scope_id": "x"}, "scope_id"),
    # Customers are made on purpose: an unknown one is a typo, a budget that never counts.
    ("a customer that does not exist", {"scope": "customer", "scope_id": "acm"}, "acm"),
    # Longer than any event's job_id (128) or agent (64): a budget that never counts.
    ("job scope_id of 129 characters", {"scope": "job", "scope_id": "j" * 129}, "scope_id"),
    ("agent scope_id of 65 characters", {"scope": "agent", "scope_id": "A" * 65}, "scope_id"),
    ("unknown period", {"period": "week"}, "period"),
    ("unknown field", {"limit": "10"}, "limit"),
    ("webhook secret not in whsec_ form", {"webhook_secret": "hunter2"}, "webhook_secret"),
    # Standard Webhooks: the key is 24 to 64 random bytes, in base64.
    ("webhook secret of one byte", {"webhook_secret": "whsec_YQ=="}, "webhook_secret"),
    (
        "webhook secret of 65 bytes",
        {"webhook_secret": "whsec_" + "eHh4" * 21 + "eHg="},
        "webhook_secret",
    ),
    # Characters outside base64 were skipped when signing: a key other than the one sent.
    (
        "webhook secret with a character outside base64",
        {"webhook_secret": "whsec_MfKQ9r8G!KYqrTwjUPD8ILPZIo2LaLaSw"},
        "webhook_secret",
    ),
    (
        "webhook secret in URL-safe base64",
        {"webhook_secret": "whsec_yMnKy8zNzs_Q0dLT1NXW19jZ2tvc3d7f4OHi4-Tl5uc="},
        "webhook_secret",
    ),
]

BAD_WEBHOOKS: list[tuple[str, str]] = [
    ("loopback", "http://127.0.0.1:8000/hook"),
    ("loopback, another address of 127/8", "http://127.0.0.2/hook"),
    ("cloud metadata (link-local)", "http://169.254.169.254/latest/meta-data/"),
    ("IPv6 loopback", "http://[::1]:8080/hook"),
    ("IPv4-mapped IPv6 loopback", "http://[::ffff:127.0.0.1]/hook"),
    ("6to4 of 127.0.0.1", "http://[2002:7f00:1::]/hook"),
    ("NAT64 of 10.0.0.1", "http://[64:ff9b::a00:1]/hook"),
    ("Teredo, client 127.0.0.1", "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/hook"),
    ("RFC 1918 10/8", "http://10.0.0.5/hook"),
    ("RFC 1918 192.168/16", "https://192.168.1.1/hook"),
    ("RFC 1918 172.16/12", "http://172.16.0.1/hook"),
    ("CGNAT 100.64/10", "http://100.64.0.1/hook"),
    ("unspecified 0.0.0.0", "http://0.0.0.0/hook"),
    ("IPv6 unique local", "http://[fd00::1]/hook"),
    ("IPv6 site-local", "http://[fec0::1]:8741/hook"),
    ("localhost by name", "http://localhost:8000/hook"),
    ("localhost, fully qualified", "http://localhost.:8000/hook"),
    # Not IP literals to Python, so these go through DNS, which answers 127.0.0.1.
    ("a name resolving to loopback (short form)", "http://127.1/hook"),
    ("a name resolving to loopback (decimal form)", "http://2130706433/hook"),
    ("ftp scheme", "ftp://example.com/hook"),
    ("file scheme", "file:///etc/passwd"),
    ("no scheme", "example.com/hook"),
    ("credentials in the URL", "https://user:pw@example.com/hook"),
    # Names DNS cannot carry: the resolver refuses them with a UnicodeError (IDNA).
    ("a DNS label of 64 characters", "https://" + "a" * 64 + ".com/x"),
    ("an empty DNS label", "https://a..b.com/x"),
    # As a customer's webhook_url: a public address, but 3,000 characters of path.
    ("a URL of over 2,000 characters", "https://93.184.215.14/" + "a" * 3000),
]


async def _nothing_stored(client: AsyncTestClient[Any], db: asyncpg.Connection) -> None:
    assert (await client.get("/v1/budgets")).json()["items"] == []
    assert await db.fetchval("SELECT count(*) FROM budgets") == 0
    assert await db.fetchval("SELECT count(*) FROM budget_spend") == 0


async def test_bad_budget_definitions_are_refused_naming_the_field(
    client: AsyncTestClient[Any], db: asyncpg.Connection
) -> None:
    for case, change, field in BAD_DEFINITIONS:
        body = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
        response = await client.post("/v1/budgets", json=body)
        assert 400 <= response.status_code < 500, (case, response.status_code, response.text)
        detail = response.json()["detail"]
        assert field in detail, (case, detail)
    await _nothing_stored(client, db)


async def test_a_zero_limit_written_with_places_is_quoted_in_luc_s_money_form(
    client: AsyncTestClient[Any], db: asyncpg.Connection
) -> None:
    # Python writes Decimal("0.0000000") as 0E-7; LUC's wire form of money has no exponent.
    response = await client.post("/v1/budgets", json={**GOOD, "limit_usd": "0.0000000"})
    assert response.status_code == 422, response.text
    assert response.json()["detail"] == "limit_usd: must be a positive amount, got 0"
    await _nothing_stored(client, db)


async def test_webhook_urls_to_internal_addresses_or_other_schemes_are_refused(
    client: AsyncTestClient[Any], db: asyncpg.Connection
) -> None:
    for case, url in BAD_WEBHOOKS:
        response = await client.post("/v1/budgets", json={**GOOD, "webhook_url": url})
        assert 400 <= response.status_code < 500, (case, response.status_code, response.text)
        detail = response.json()["detail"]
        assert "webhook_url" in detail, (case, detail)
    await _nothing_stored(client, db)


async def test_a_good_definition_is_stored_with_default_thresholds(
    client: AsyncTestClient[Any],
) -> None:
    response = await client.post("/v1/budgets", json={**GOOD, "limit_usd": "10.50", "hard": True})
    assert response.status_code == 201, response.text
    budget = response.json()
    assert budget["scope"] == "job"
    assert budget["scope_id"] == "job-1"
    assert budget["period"] == "day"
    assert budget["limit_usd"] == "10.5"
    assert budget["thresholds"] == [0.5, 0.8, 1.0]
    assert budget["hard"] is True
    assert budget["webhook_url"] is None
    assert (await client.get(f"/v1/budgets/{budget['id']}")).json() == budget
    assert (await client.get("/v1/budgets")).json()["items"] == [budget]

    other = (
        await client.post(
            "/v1/budgets", json={"scope": "global", "period": "month", "limit_usd": "1"}
        )
    ).json()
    assert [b["id"] for b in (await client.get("/v1/budgets")).json()["items"]] == [
        budget["id"],
        other["id"],
    ]
    by_scope = (await client.get("/v1/budgets", params={"scope": "global"})).json()["items"]
    assert [b["id"] for b in by_scope] == [other["id"]]
    # A misspelt scope is refused, not answered with no budget at all.
    misspelt = await client.get("/v1/budgets", params={"scope": "globl"})
    assert misspelt.status_code == 422, misspelt.text
    assert "scope: 'globl' is not one of global, agent, job, model, customer" in misspelt.text
    by_id = (await client.get("/v1/budgets", params={"scope_id": "job-1"})).json()["items"]
    assert [b["id"] for b in by_id] == [budget["id"]]
    assert (await client.get("/v1/budgets/999999")).status_code == 404


async def test_a_threshold_per_percent_is_taken(client: AsyncTestClient[Any]) -> None:
    thresholds = [n / 100 for n in range(1, 101)]
    response = await client.post("/v1/budgets", json={**GOOD, "thresholds": thresholds})
    assert response.status_code == 201, response.text
    assert response.json()["thresholds"] == thresholds


async def test_patch_changes_limit_and_thresholds_and_refuses_bad_values(
    client: AsyncTestClient[Any],
) -> None:
    created = (await client.post("/v1/budgets", json=GOOD)).json()
    url = f"/v1/budgets/{created['id']}"

    refused = [
        ({"limit_usd": "-1"}, "limit_usd"),
        ({"limit_usd": "0"}, "limit_usd"),
        ({"thresholds": [0.5, 2]}, "thresholds"),
        ({"thresholds": [0]}, "thresholds"),
        ({"thresholds": ["٠.٥", "0.0_9"]}, "thresholds"),
        ({"webhook_url": "http://10.0.0.5/hook"}, "webhook_url"),
        ({"webhook_url": "ftp://example.com/"}, "webhook_url"),
        ({"scope": "global"}, "scope"),  # scope and period are fixed once created
    ]
    for change, field in refused:
        response = await client.patch(url, json=change)
        assert 400 <= response.status_code < 500, (change, response.text)
        assert field in response.json()["detail"], (change, response.json())
    assert (await client.get(url)).json() == created

    response = await client.patch(url, json={"limit_usd": "2.5", "thresholds": [1, 0.25]})
    assert response.status_code == 200, response.text
    changed = response.json()
    assert changed["limit_usd"] == "2.5"
    assert changed["thresholds"] == [0.25, 1.0]
    assert (changed["scope"], changed["scope_id"], changed["period"]) == ("job", "job-1", "day")
    assert (await client.get(url)).json() == changed
    # A threshold as a plain decimal string is taken, exactly.
    response = await client.patch(url, json={"thresholds": ["0.5", 1]})
    assert response.status_code == 200, response.text
    assert response.json()["thresholds"] == [0.5, 1.0]

    assert (await client.patch("/v1/budgets/999999", json={"limit_usd": "1"})).status_code == 404


async def test_a_budget_s_webhook_is_kept_when_absent_and_removed_by_null_or_empty(
    client: AsyncTestClient[Any],
) -> None:
    """``null`` removes an optional field as a customer's PATCH does; it answered 200 and
    kept the webhook."""
    hook = "http://93.184.215.14/luc"  # a public address: no name to resolve
    for cleared in (None, ""):
        made = await client.post(
            "/v1/budgets",
            json={"scope": "global", "period": "day", "limit_usd": "1", "webhook_url": hook},
        )
        assert made.status_code == 201, made.text
        url = f"/v1/budgets/{made.json()['id']}"
        kept = await client.patch(url, json={"limit_usd": "2"})
        assert kept.json()["webhook_url"] == hook
        removed = await client.patch(url, json={"webhook_url": cleared})
        assert removed.status_code == 200, removed.text
        assert removed.json()["webhook_url"] is None
        assert (await client.get(url)).json()["webhook_url"] is None


async def test_a_lowered_limit_applies_to_the_next_spend(client: AsyncTestClient[Any]) -> None:
    created = (
        await client.post(
            "/v1/budgets",
            json={"scope": "job", "scope_id": "job-1", "period": "lifetime", "limit_usd": "10"},
        )
    ).json()
    at = "2026-03-10T10:00:00Z"
    await client.post("/v1/events", json=opus_event("e1", "0.40", occurred_at=at))
    assert (await client.get("/v1/alerts")).json()["items"] == []

    # 0.40 spent; with a limit of 1.00 the next 0.20 moves spend from 0.40 to 0.60,
    # across 50 % (0.50) and below 80 % (0.80).
    await client.patch(f"/v1/budgets/{created['id']}", json={"limit_usd": "1.00"})
    await client.post("/v1/events", json=opus_event("e2", "0.20", occurred_at=at))
    alerts = (await client.get("/v1/alerts")).json()["items"]
    assert [(a["threshold"], a["spent_usd"], a["limit_usd"]) for a in alerts] == [(0.5, "0.6", "1")]


async def test_deleted_budget_no_longer_counts_but_its_alerts_remain_listed(
    client: AsyncTestClient[Any], db: asyncpg.Connection
) -> None:
    kept = (
        await client.post(
            "/v1/budgets",
            json={"scope": "agent", "scope_id": "ACHEEVY", "period": "month", "limit_usd": "1"},
        )
    ).json()
    gone = (
        await client.post(
            "/v1/budgets",
            json={
                "scope": "job",
                "scope_id": "job-1",
                "period": "month",
                "limit_usd": "1",
                "thresholds": [0.5, 1],
                "hard": True,
            },
        )
    ).json()
    at = "2026-03-10T10:00:00Z"
    # 0.60 of 1.00: both budgets cross 50 %.
    await client.post("/v1/events", json=opus_event("e1", "0.60", occurred_at=at))
    before = (await client.get("/v1/alerts")).json()["items"]
    assert sorted((a["budget_id"], a["threshold"]) for a in before) == [
        (kept["id"], 0.5),
        (gone["id"], 0.5),
    ]

    response = await client.delete(f"/v1/budgets/{gone['id']}")
    assert response.status_code == 204
    assert (await client.get(f"/v1/budgets/{gone['id']}")).status_code == 404
    assert (await client.delete(f"/v1/budgets/{gone['id']}")).status_code == 404
    assert [b["id"] for b in (await client.get("/v1/budgets")).json()["items"]] == [kept["id"]]

    # 0.60 + 0.50 = 1.10: the kept budget crosses 80 % and 100 %; the deleted one, which
    # would cross 100 %, raises nothing and no longer adds up spend.
    await client.post("/v1/events", json=opus_event("e2", "0.50", occurred_at=at))
    after = (await client.get("/v1/alerts")).json()["items"]
    assert sorted((a["budget_id"], a["threshold"], a["spent_usd"]) for a in after) == [
        (kept["id"], 0.5, "0.6"),
        (kept["id"], 0.8, "1.1"),
        (kept["id"], 1.0, "1.1"),
        (gone["id"], 0.5, "0.6"),
    ]
    listed = (await client.get("/v1/alerts", params={"budget_id": gone["id"]})).json()["items"]
    assert [(a["threshold"], a["spent_usd"]) for a in listed] == [(0.5, "0.6")]
    spent = await db.fetchval(
        "SELECT sum(spent_usd) FROM budget_spend WHERE budget_id = $1", gone["id"]
    )
    assert spent == Decimal("0.60")

    # The hard budget no longer denies a call of its job.
    check = (await client.get("/v1/budgets/check", params={"job_id": "job-1"})).json()
    assert check["allowed"] is True
    assert [b["id"] for b in check["budgets"]] == []


async def test_thresholds_are_taken_exactly_as_sent(
    client: AsyncTestClient[Any], db: asyncpg.Connection
) -> None:
    # Raw JSON: a JSON number with more digits than a binary float keeps.
    raw = (
        b'{"scope": "job", "scope_id": "job-exact", "period": "day", "limit_usd": "10",'
        b' "thresholds": [0.1234567890123456789012345678901234567890123, 1]}'
    )
    created = await client.post(
        "/v1/budgets", content=raw, headers={"Content-Type": "application/json"}
    )
    assert created.status_code == 201, created.text
    stored = await db.fetchval("SELECT thresholds FROM budgets WHERE scope_id = 'job-exact'")
    assert stored == [Decimal("0.1234567890123456789012345678901234567890123"), Decimal(1)]
    # And written back so, every digit a JSON number (a float showed 0.12345678901234568).
    exact = '"thresholds":[0.1234567890123456789012345678901234567890123,1]'
    assert exact in created.text
    listed = await client.get("/v1/budgets")
    assert exact in listed.text

    # 1e-400 is no float at all (it underflows to 0.0): refused, named as sent.
    tiny = raw.replace(b"job-exact", b"job-tiny").replace(
        b"0.1234567890123456789012345678901234567890123", b"1e-400"
    )
    refused = await client.post(
        "/v1/budgets", content=tiny, headers={"Content-Type": "application/json"}
    )
    assert refused.status_code == 422, refused.text
    assert refused.json()["detail"] == "thresholds: 1e-400 has 400 decimal places; at most 50"
    assert await db.fetchval("SELECT count(*) FROM budgets WHERE scope_id = 'job-tiny'") == 0

"""Bad input over HTTP (SPEC §2): a precise 4xx for a bad request, a per-event ``rejected``
with its reason for a bad event, and the good events beside a bad one are still recorded.

The many cases share one database and one app (cloning a database per case would cost
more than the cases): each case uses its own event ids and job ids and looks only at those.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from litestar.testing import AsyncTestClient

from service.app import create_app
from tests.support.databases import connected, new_database_sync
from tests.support.events import wire_event
from tests.support.settings import settings_for

pytestmark = pytest.mark.asyncio(loop_scope="module")

MAX_BATCH = 3
MAX_BODY = 32 * 1024


@pytest.fixture(scope="module")
def shared_database(admin_url: str, template_database: str) -> Iterator[str]:
    """One fresh database for this module, cloned from the migrated template."""
    with new_database_sync(admin_url, "luc_test_bad", template_database) as url:
        yield url


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def api(shared_database: str) -> AsyncIterator[AsyncTestClient[Any]]:
    """The app with small limits: 3 events per batch, 32 KiB per body."""
    settings = settings_for(
        shared_database, LUC_MAX_BATCH_EVENTS=str(MAX_BATCH), LUC_MAX_BODY_BYTES=str(MAX_BODY)
    )
    async with AsyncTestClient(app=create_app(settings)) as client:
        yield client


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def db(shared_database: str) -> AsyncIterator[asyncpg.Connection]:
    async with connected(shared_database) as conn:
        yield conn


async def stored_ids(db: asyncpg.Connection, prefix: str) -> list[str]:
    rows = await db.fetch(
        "SELECT event_id FROM event_keys WHERE starts_with(event_id, $1) ORDER BY event_id",
        prefix,
    )
    return [r["event_id"] for r in rows]


# A valid call: gemini-3.0-flash (0.10 / 0.40 per 1M), 1000 in and 500 out.
# 1000·0.10 + 500·0.40 = 100 + 200 = 300 per 1M → 0.0003
good = partial(wire_event, occurred_at="2025-11-20T10:00:00Z", model="gemini-3.0-flash")


FUTURE = "<a day from now>"
MISSING = "<field removed>"

# (case, changes to a good event, the field the reason must start with, words it must hold)
BAD_EVENTS: list[tuple[str, dict[str, Any], str, str]] = [
    ("count-as-string", {"input_tokens": "1000"}, "input_tokens", "expected `int`"),
    ("count-as-float", {"output_tokens": 12.5}, "output_tokens", "expected `int`"),
    ("count-as-bool", {"cached_input_tokens": True}, "cached_input_tokens", "expected `int`"),
    ("negative-count", {"output_tokens": -1}, "output_tokens", ">= 0"),
    ("negative-cached", {"cached_input_tokens": -3}, "cached_input_tokens", ">= 0"),
    (
        "cached-plus-write-above-input",
        {"cached_input_tokens": 600, "cache_write_tokens": 401},
        "cached_input_tokens + cache_write_tokens",
        "exceed input_tokens (1000)",
    ),
    ("reasoning-above-output", {"reasoning_tokens": 501}, "reasoning_tokens", "exceed"),
    (
        "timestamp-without-offset",
        {"occurred_at": "2025-11-20T10:00:00"},
        "occurred_at",
        "no UTC offset",
    ),
    ("timestamp-not-a-time", {"occurred_at": "last tuesday"}, "occurred_at", "RFC 3339"),
    ("timestamp-far-future", {"occurred_at": FUTURE}, "occurred_at", "in the future"),
    (
        "attributes-over-4-kib",
        {"attributes": {"prompt": "x" * 4100}},
        "attributes",
        "over the limit of 4096 bytes",
    ),
    ("attributes-not-an-object", {"attributes": "route=/chat"}, "attributes", "object"),
    ("unknown-field", {"colour": "blue"}, "colour", "unknown field"),
    ("sets-cost", {"cost_usd": "0"}, "cost_usd", "unknown field"),
    ("sets-price", {"price": {"input": "0"}}, "price", "unknown field"),
    ("sets-catalog-version", {"catalog_version": 1}, "catalog_version", "unknown field"),
    ("id-too-long", {"id": "i" * 129}, "id", "length <= 128"),
    ("id-empty", {"id": ""}, "id", "length >= 1"),
    ("id-not-a-string", {"id": 42}, "id", "expected `str`"),
    ("job-missing", {"job_id": MISSING}, "job_id", "required field is missing"),
    ("agent-too-long", {"agent": "A" * 65}, "agent", "length <= 64"),
    ("status-unknown", {"status": "timeout"}, "status", "'timeout'"),
    ("provider-cost-number", {"provider_cost_usd": 0.0003}, "provider_cost_usd", "`str"),
    ("provider-cost-not-decimal", {"provider_cost_usd": "3 cents"}, "provider_cost_usd", "decimal"),
    ("provider-cost-negative", {"provider_cost_usd": "-0.01"}, "provider_cost_usd", "negative"),
    ("provider-cost-huge", {"provider_cost_usd": "1e999999"}, "provider_cost_usd", "exponent"),
    (
        "provider-cost-too-big",
        {"provider_cost_usd": "1000000000000000000"},
        "provider_cost_usd",
        "range",
    ),
    ("model-with-nul", {"model": "gemini\u0000"}, "model", "NUL"),
    ("attributes-with-nul", {"attributes": {"k": "\u0000"}}, "attributes", "NUL"),
    (
        "timestamp-out-of-range",
        {"occurred_at": "0001-01-01T00:00:00+05:00"},
        "occurred_at",
        "range",
    ),
]


def bad_event(case: str, changes: dict[str, Any]) -> dict[str, Any]:
    event = good(f"{case}-bad", job_id=f"job-{case}")
    for name, value in changes.items():
        if value == MISSING:
            event.pop(name)
        elif value == FUTURE:
            event[name] = (datetime.now(UTC) + timedelta(days=1)).isoformat()
        else:
            event[name] = value
    return event


@pytest.mark.parametrize(
    ("case", "changes", "field", "says"), BAD_EVENTS, ids=[c[0] for c in BAD_EVENTS]
)
async def test_a_bad_event_is_rejected_with_its_reason_and_the_good_ones_beside_it_count(
    api: AsyncTestClient[Any],
    db: asyncpg.Connection,
    case: str,
    changes: dict[str, Any],
    field: str,
    says: str,
) -> None:
    job = f"job-{case}"
    bad = bad_event(case, changes)
    batch = [good(f"{case}-good-1", job_id=job), bad, good(f"{case}-good-2", job_id=job)]
    response = await api.post("/v1/events/batch", json={"events": batch})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["accepted"], answer["duplicates"], answer["conflicts"], answer["rejected"]) == (
        2,
        0,
        0,
        1,
    )
    first, rejected, last = answer["results"]
    assert first == {"id": f"{case}-good-1", "status": "accepted"}
    assert last == {"id": f"{case}-good-2", "status": "accepted"}
    assert rejected["status"] == "rejected"
    assert rejected["reason"].startswith(field), rejected["reason"]
    assert says in rejected["reason"], rejected["reason"]
    if isinstance(bad.get("id"), str) and field != "id":
        assert rejected["id"] == bad["id"]

    # the two good events, 0.0003 each, are the job's whole total
    totals = (await api.get(f"/v1/jobs/{job}")).json()
    assert (totals["cost_usd"], totals["events"], totals["input_tokens"]) == ("0.0006", 2, 2000)
    assert await stored_ids(db, f"{case}-") == [f"{case}-good-1", f"{case}-good-2"]
    entries = await db.fetchval("SELECT count(*) FROM ledger_entries WHERE job_id = $1", job)
    assert entries == 2


async def test_an_event_that_is_not_an_object_is_rejected_alone(
    api: AsyncTestClient[Any],
) -> None:
    for i, not_an_object in enumerate([17, ["a"], None, "event"]):
        job = f"job-obj-{i}"
        batch = [good(f"obj-{i}-1", job_id=job), not_an_object, good(f"obj-{i}-2", job_id=job)]
        answer = (await api.post("/v1/events/batch", json={"events": batch})).json()
        assert [r["status"] for r in answer["results"]] == ["accepted", "rejected", "accepted"]
        assert answer["results"][1]["id"] is None
        assert "an event must be a JSON object" in answer["results"][1]["reason"]
        assert (await api.get(f"/v1/jobs/{job}")).json()["events"] == 2


def raw(body: bytes) -> dict[str, Any]:
    return {"content": body, "headers": {"content-type": "application/json"}}


FOUR = {"events": [good(f"four-{i}", job_id="job-four") for i in range(MAX_BATCH + 1)]}

# (case, body, status, words the detail must hold)
BAD_BODIES: list[tuple[str, bytes, int, str]] = [
    ("empty-body", b"", 400, "body is empty"),
    ("not-json", b'{"events": [', 400, "not valid JSON"),
    ("not-json-at-all", b"events=1", 400, "not valid JSON"),
    ("json-array", b"[]", 422, 'body must be {"events": [...]}'),
    ("json-string", b'"events"', 422, 'body must be {"events": [...]}'),
    ("json-null", b"null", 422, 'body must be {"events": [...]}'),
    ("missing-events", b"{}", 422, "events: required field is missing"),
    ("misnamed-events", b'{"event": []}', 422, "event"),
    ("events-not-a-list", b'{"events": {"id": "x"}}', 422, "events: expected `array`"),
    ("empty-batch", b'{"events": []}', 422, "events: the batch is empty"),
    ("batch-over-limit", json.dumps(FOUR).encode(), 413, "events: the batch holds 4"),
    ("nested-too-deep", b'{"events": ' + b"[" * 3000 + b"]" * 2999 + b"}", 400, "deep"),
    ("body-over-limit", b'{"events": ["' + b"x" * MAX_BODY + b'"]}', 413, ""),
]


@pytest.mark.parametrize(
    ("case", "body", "status", "says"), BAD_BODIES, ids=[c[0] for c in BAD_BODIES]
)
async def test_a_bad_batch_body_fails_with_a_precise_status_and_nothing_is_stored(
    api: AsyncTestClient[Any],
    db: asyncpg.Connection,
    case: str,
    body: bytes,
    status: int,
    says: str,
) -> None:
    before = await db.fetchval("SELECT count(*) FROM event_keys")
    response = await api.post("/v1/events/batch", **raw(body))
    assert response.status_code == status, response.text
    error = response.json()
    assert error["status_code"] == status
    assert says in error["detail"], error["detail"]
    assert await db.fetchval("SELECT count(*) FROM event_keys") == before


@pytest.mark.parametrize("path", ["/v1/customers", "/v1/plans", "/v1/budgets"])
async def test_an_empty_or_broken_json_body_is_a_400_that_says_so(
    api: AsyncTestClient[Any], path: str
) -> None:
    # They said "data: 'data'" (Litestar's KeyError) and "Input data was truncated".
    empty = await api.post(path, **raw(b""))
    assert empty.status_code == 400, empty.text
    assert empty.json()["detail"] == (
        f"Validation failed for POST {path}: body is empty: a JSON object is expected"
    )
    broken = await api.post(path, **raw(b'{"id": '))
    assert broken.status_code == 400, broken.text
    assert broken.json()["detail"] == "body is not valid JSON: Input data was truncated"


@pytest.mark.parametrize(
    "path",
    [
        "/v1/customers",
        "/v1/plans",
        "/v1/budgets",
        "/v1/budgets/reservations",
        "/v1/catalog/versions",
        "/v1/catalog/rerate",
    ],
)
async def test_a_json_body_nested_too_deeply_is_a_400_that_says_so(
    api: AsyncTestClient[Any], path: str
) -> None:
    # 5,000 levels in 10 KB, under the body limit: the decoder ran out of stack, and the
    # RecursionError was a 500 "internal error".
    nested = b'{"thresholds": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    answer = await api.post(path, **raw(nested))
    assert answer.status_code == 400, answer.text
    assert answer.json()["detail"] == "body is not valid JSON: it nests too deeply"


LONE_SURROGATE = (
    "body is not valid JSON: it holds a string escape for a lone UTF-16 surrogate "
    "(\\ud800–\\udfff without its pair), which is not Unicode text"
)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/keys", b'{"scope": "read", "name": "\\ud800"}'),
        ("/v1/customers", b'{"id": "c-1", "name": "\\udfff"}'),
        ("/v1/events", b'["\\ud800"]'),
    ],
)
async def test_a_json_body_with_a_lone_surrogate_escape_is_a_400_that_names_it(
    api: AsyncTestClient[Any], path: str, body: bytes
) -> None:
    # Outside an event's fields it said msgspec's "Input data was truncated": the body was
    # whole, its string escape the matter.
    answer = await api.post(path, **raw(body))
    assert answer.status_code == 400, answer.text
    assert answer.json()["detail"] == LONE_SURROGATE


async def test_a_batch_at_the_limit_is_accepted(api: AsyncTestClient[Any]) -> None:
    events = FOUR["events"][:MAX_BATCH]
    response = await api.post("/v1/events/batch", json={"events": events})
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == MAX_BATCH
    # 3 × 0.0003
    assert (await api.get("/v1/jobs/job-four")).json()["cost_usd"] == "0.0009"


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        (b"", 400, "body is empty"),
        (b"{oops", 400, "not valid JSON"),
        (b"[]", 422, "JSON object"),
        (b"12", 422, "JSON object"),
    ],
)
async def test_a_single_event_body_that_is_not_an_event_fails(
    api: AsyncTestClient[Any], body: bytes, status: int, says: str
) -> None:
    response = await api.post("/v1/events", **raw(body))
    assert response.status_code == status, response.text
    assert says in response.json()["detail"]


# Same id, same content, counted once ------------------------------------------------------


async def test_a_replayed_event_is_a_duplicate_counted_once(api: AsyncTestClient[Any]) -> None:
    event = good("dup-1", job_id="job-dup", cached_input_tokens=200, provider_cost_usd="0.00031")
    first = (await api.post("/v1/events/batch", json={"events": [event]})).json()
    assert first["accepted"] == 1
    again = (
        await api.post(
            "/v1/events/batch", json={"events": [event, good("dup-2", job_id="job-dup")]}
        )
    ).json()
    assert (again["accepted"], again["duplicates"], again["conflicts"]) == (1, 1, 0)
    assert again["results"][0] == {"id": "dup-1", "status": "duplicate"}

    # the same content written differently: another offset, another decimal spelling,
    # fields in another order, defaults spelled out
    rewritten = {
        **dict(reversed(list(event.items()))),
        "occurred_at": "2025-11-20T11:00:00+01:00",
        "provider_cost_usd": "0.000310",
        "cache_write_tokens": 0,
        "status": "ok",
    }
    third = await api.post("/v1/events", json=rewritten)
    assert third.status_code == 200, third.text
    assert third.json() == {"id": "dup-1", "status": "duplicate"}

    job = (await api.get("/v1/jobs/job-dup")).json()
    # dup-1 (800·0.10 + 200 cached·0.01 + 500·0.40 = 282 per 1M) + dup-2 (0.0003)
    assert (job["cost_usd"], job["events"], job["provider_cost_usd"]) == (
        "0.000582",
        2,
        "0.00031",
    )


async def test_a_repeat_inside_one_batch_is_a_duplicate_counted_once(
    api: AsyncTestClient[Any],
) -> None:
    event = good("twice-1", job_id="job-twice")
    answer = (await api.post("/v1/events/batch", json={"events": [event, event]})).json()
    assert [r["status"] for r in answer["results"]] == ["accepted", "duplicate"]
    assert (await api.get("/v1/jobs/job-twice")).json()["events"] == 1


# Same id, other content: a conflict, and the first stays ---------------------------------


async def test_a_reused_id_with_other_content_is_a_conflict_and_the_first_stays(
    api: AsyncTestClient[Any],
) -> None:
    first = good("reuse-1", job_id="job-reuse")
    assert (await api.post("/v1/events", json=first)).status_code == 201
    changed = {**first, "output_tokens": 5000, "job_id": "job-elsewhere"}
    answer = (await api.post("/v1/events/batch", json={"events": [changed]})).json()
    assert (answer["accepted"], answer["conflicts"]) == (0, 1)
    result = answer["results"][0]
    assert result["status"] == "conflict"
    assert "job_id" in result["reason"] and "output_tokens" in result["reason"]
    assert "the first is kept" in result["reason"]

    job = (await api.get("/v1/jobs/job-reuse")).json()
    assert (job["cost_usd"], job["events"], job["output_tokens"]) == ("0.0003", 1, 500)
    assert (await api.get("/v1/jobs/job-elsewhere")).status_code == 404


async def test_a_conflict_inside_one_batch_keeps_the_first(api: AsyncTestClient[Any]) -> None:
    first = good("inner-1", job_id="job-inner")
    second = {**first, "input_tokens": 2000}
    answer = (await api.post("/v1/events/batch", json={"events": [first, second]})).json()
    assert [r["status"] for r in answer["results"]] == ["accepted", "conflict"]
    assert "input_tokens" in answer["results"][1]["reason"]
    job = (await api.get("/v1/jobs/job-inner")).json()
    assert (job["cost_usd"], job["input_tokens"]) == ("0.0003", 1000)


async def test_a_single_event_answers_201_200_409_or_422(api: AsyncTestClient[Any]) -> None:
    event = good("single-1", job_id="job-single")
    accepted = await api.post("/v1/events", json=event)
    assert (accepted.status_code, accepted.json()) == (
        201,
        {"id": "single-1", "status": "accepted"},
    )
    duplicate = await api.post("/v1/events", json=event)
    assert (duplicate.status_code, duplicate.json()) == (
        200,
        {"id": "single-1", "status": "duplicate"},
    )
    conflict = await api.post("/v1/events", json={**event, "agent": "ORACLE"})
    assert conflict.status_code == 409
    assert conflict.json()["status"] == "conflict"
    assert "agent" in conflict.json()["reason"]
    rejected = await api.post(
        "/v1/events", json={**event, "id": "single-2", "reasoning_tokens": 501}
    )
    assert rejected.status_code == 422
    assert rejected.json()["status"] == "rejected"
    assert rejected.json()["reason"].startswith("reasoning_tokens")

    job = (await api.get("/v1/jobs/job-single")).json()
    assert (job["cost_usd"], job["events"], job["lines"][0]["agent"]) == ("0.0003", 1, "ACHEEVY")


async def test_an_instant_outside_utc_s_years_is_a_client_error_wherever_it_is_given(
    api: AsyncTestClient[Any],
) -> None:
    # Years 1 and 9999 as written, years 0 and 10000 in UTC: the reads answered 500 (an
    # OverflowError turning the bound into UTC), or a 400 about "a number beyond 64 bits".
    for early, late in (
        ("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"),
        ("0001-01-01T00:30:00+00:45", "9999-12-31T23:30:00-00:45"),
    ):
        for path, params in (
            ("/v1/usage", {"group_by": "day"}),
            ("/v1/usage", {"group_by": "model"}),
            ("/v1/agents/ACHEEVY", {}),
            ("/v1/jobs", {}),
            ("/v1/reconciliation", {"group_by": "model"}),
            ("/v1/exports/focus", {}),
        ):
            for name, value in (("from", early), ("to", late)):
                bound = {"from": "2025-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}
                query = {**params, **bound, name: value}
                response = await api.get(path, params=query)
                assert response.status_code == 400, (path, query, response.text)
                detail = response.json()["detail"]
                assert detail.startswith(f"{name}: "), (path, query, detail)
                assert "outside the years 0001 to 9999 in UTC" in detail, detail
    grant = await api.post("/v1/customers", json={"id": "cust-utc", "name": "UTC"})
    assert grant.status_code == 201, grant.text
    expiring = await api.post(
        "/v1/customers/cust-utc/credits",
        json={"amount_usd": "1", "expires_at": "9999-12-31T23:59:59-01:00"},
    )
    assert expiring.status_code == 422, expiring.text
    assert expiring.json()["detail"].startswith("expires_at: ")
    rerate = await api.post(
        "/v1/catalog/rerate", json={"since": "0001-01-01T00:00:00+01:00", "dry_run": True}
    )
    assert rerate.status_code == 422, rerate.text
    assert rerate.json()["detail"].startswith("since: ")
    event = await api.post(
        "/v1/events", json=good("utc-1", occurred_at="0001-01-01T00:00:00+01:00")
    )
    assert event.status_code == 422
    assert event.json()["reason"].startswith("occurred_at: ")


# Every route that takes an instant in its body: the route, the field, the rest of a body.
INSTANTS_IN_BODIES: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("/v1/customers/cust-far/credits", "expires_at", {"amount_usd": "1"}),
    ("/v1/catalog/rerate", "since", {"dry_run": True}),
    ("/v1/catalog/versions", "effective_from", {"models": []}),
    ("/v1/plans/plan-far/versions", "effective_from", {"basis": "catalog", "markup": "0"}),
    ("/v1/plans/plan-far/reprice", "since", {"dry_run": True}),
)

# Well formed, and beyond what a datetime or PostgreSQL's binary protocol holds: year 0
# was "year 0 is out of range" and year 10000 "not an RFC 3339 timestamp".
OUT_OF_YEARS = "is out of range: outside the years 0001 to 9999 in UTC"
FAR_INSTANTS = {
    "0000-01-01T00:00:00Z": OUT_OF_YEARS,
    "10000-01-01T00:00:00Z": OUT_OF_YEARS,
    "99999999999999999999-12-31T00:00:00Z": OUT_OF_YEARS,
    "2026-01-01T00:00:00+99:00": (
        "is not a valid instant: its UTC offset +99:00 is not below 24 hours"
    ),
}
# What a route requires beside the instant under test.
REQUIRED_QUERY = {"group_by": "model", "month": "2026-11", "estimated_cost_usd": "1"}


async def test_every_instant_parameter_far_out_of_range_is_a_400_naming_it(
    api: AsyncTestClient[Any],
) -> None:
    document = (await api.get("/schema/openapi.json")).json()
    met = []
    for path, item in document["paths"].items():
        operation = item.get("get")
        if operation is None:
            continue
        query = {p["name"]: p for p in operation.get("parameters", []) if p["in"] == "query"}
        # The catalog's diff takes version ids by these names: no instants.
        instants = [
            n for n in ("from", "to") if n in query and "integer" not in json.dumps(query[n])
        ]
        if not instants:
            continue
        url = path.replace("{", "").replace("}", "")  # any value: refused before a lookup
        bounds = {"from": "2025-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}
        needed = {
            n: REQUIRED_QUERY[n] for n, p in query.items() if p.get("required") and n not in bounds
        }
        for name in instants:
            for value, says in FAR_INSTANTS.items():
                answer = await api.get(url, params={**needed, **bounds, name: value})
                assert answer.status_code == 400, (path, name, value, answer.text)
                assert answer.json()["detail"] == f"{name}: {value!r} {says}", (path, answer.text)
            met.append(f"{path} {name}")
    assert len(met) == 10, met  # from and to of jobs, agents, usage, reconciliation, FOCUS


async def _far_customer_and_plan(api: AsyncTestClient[Any]) -> None:
    """The customer and plan ``INSTANTS_IN_BODIES`` name. The module's app and database are
    shared: a test before may have made them."""
    customer = await api.post("/v1/customers", json={"id": "cust-far", "name": "Far"})
    assert customer.status_code in (201, 409), customer.text
    plan = await api.post(
        "/v1/plans",
        json={
            "id": "plan-far",
            "name": "Far",
            "effective_from": "2025-01-01T00:00:00Z",
            "basis": "catalog",
            "markup": "0",
        },
    )
    assert plan.status_code in (201, 409), plan.text


async def test_every_instant_in_a_body_far_out_of_range_is_refused_naming_it(
    api: AsyncTestClient[Any],
) -> None:
    await _far_customer_and_plan(api)
    for value, says in FAR_INSTANTS.items():
        for path, field, body in INSTANTS_IN_BODIES:
            answer = await api.post(path, json={**body, field: value})
            assert answer.status_code == 422, (path, value, answer.text)
            assert answer.json()["detail"] == f"{field}: {value!r} {says}", (path, answer.text)
        event = await api.post("/v1/events", json=good(f"far-{len(value)}", occurred_at=value))
        assert event.status_code == 422, event.text
        assert event.json()["reason"] == f"occurred_at: {value!r} {says}", event.text
    # The two ends, which PostgreSQL's binary protocol reads as -infinity and infinity: a
    # grant expiring at the last was stored as infinity (its retry then a conflict), and a
    # re-pricing since either ran.
    for value in ("0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999Z"):
        for path, field, body in INSTANTS_IN_BODIES:
            if (path, value) == ("/v1/customers/cust-far/credits", "0001-01-01T00:00:00Z"):
                continue  # in the past: refused as such
            answer = await api.post(path, json={**body, field: value})
            assert answer.status_code == 422, (path, value, answer.text)
            assert answer.json()["detail"].startswith(
                f"{field}: {value} is the first or last instant of years 0001-9999"
            ), (path, answer.text)


@pytest.mark.parametrize(
    ("body", "said"),
    [
        (b'{"dry_run": true, "preview": true}', "fields 'dry_run', 'preview' sent"),
        (b"not json", "a body sent"),
        (b"[1]", "a body sent"),
    ],
)
async def test_a_route_that_takes_no_body_refuses_one_and_does_nothing(
    api: AsyncTestClient[Any], db: asyncpg.Connection, body: bytes, said: str
) -> None:
    """``POST /v1/jobs/{id}/invoices`` takes no body: one sent ``{"dry_run": true}`` (a
    preview, its sender meant) issued a numbered invoice, which nothing takes back."""
    job = f"job-nobody-{len(body)}-{body[:3].hex()}"
    event = wire_event(f"ev-{job}", job_id=job)
    assert (await api.post("/v1/events", json=event)).status_code in (200, 201)
    refused = await api.post(
        f"/v1/jobs/{job}/invoices", content=body, headers={"content-type": "application/json"}
    )
    assert refused.status_code == 400, refused.text
    assert refused.json()["detail"] == (
        f"POST /v1/jobs/{job}/invoices takes no body; {said} would be ignored, so nothing "
        "was done: send it without one"
    )
    assert await db.fetchval("SELECT count(*) FROM invoices WHERE job_id = $1", job) == 0
    # Nothing, {} and null are no body.
    for empty in (b"", b" {} ", b"null"):
        answer = await api.post(
            f"/v1/jobs/{job}/invoices", content=empty, headers={"content-type": "application/json"}
        )
        assert answer.status_code in (201, 409), answer.text
    assert await db.fetchval("SELECT count(*) FROM invoices WHERE job_id = $1", job) == 1


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("PATCH", "/v1/jobs/job-nul", {"title": "a\u0000b"}, "title"),
        ("PATCH", "/v1/jobs/job-nul", {"customer_id": "c\u0000"}, "customer_id"),
        (
            "POST",
            "/v1/budgets",
            {"scope": "job", "scope_id": "j\u0000", "period": "day", "limit_usd": "1"},
            "scope_id",
        ),
        (
            "POST",
            "/v1/budgets/reservations",
            {"job_id": "j\u0000", "agent": "A", "model": "m", "estimated_cost_usd": "1"},
            "job_id",
        ),
        (
            "POST",
            "/v1/plans",
            {
                "id": "p-nul",
                "name": "P",
                "effective_from": "2026-01-01T00:00:00Z",
                "basis": "catalog",
                "markup": "0",
                "models": {"m\u0000": {"input": "1", "output": "1"}},
            },
            "models.m\u0000",
        ),
    ],
)
async def test_text_holding_the_nul_character_is_refused_naming_its_field(
    api: AsyncTestClient[Any], method: str, path: str, body: dict[str, Any], field: str
) -> None:
    """PostgreSQL text cannot hold U+0000. Found by the database, the refusal could only say
    that some parameter held one (or a number beyond 64 bits); found in the body, it names
    the field, as every other refusal of a value does."""
    answer = await api.request(
        method,
        path,
        content=json.dumps(body),
        headers={"content-type": "application/json"},
    )
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"] == f"{field}: must not contain the NUL character (U+0000)"


async def test_a_group_by_key_no_read_knows_is_a_400_on_usage_as_on_reconciliation(
    api: AsyncTestClient[Any],
) -> None:
    """A bad query parameter is a 400 on every read; usage's unknown group_by key was a 422
    where reconciliation's was a 400."""
    for path, key in (("/v1/usage", "colour"), ("/v1/reconciliation", "agent")):
        answer = await api.get(path, params={"group_by": f"day,{key}"})
        assert answer.status_code == 400, (path, answer.text)
        assert answer.json()["detail"].startswith(f"group_by: unknown key {key!r}; choose from")


async def test_an_instant_in_a_body_is_read_as_written_a_space_is_no_offset_sign(
    api: AsyncTestClient[Any],
) -> None:
    # A query's "+" arrives as a space when a client does not encode it, and is taken for
    # one there; in JSON nothing is decoded so, and the catalog's two fields took a space
    # for "+": a version started five hours early, for good, and a re-rating ran from there.
    await _far_customer_and_plan(api)
    value = "2031-01-01T00:00:00 05:00"
    for path, field, body in INSTANTS_IN_BODIES:
        answer = await api.post(path, json={**body, field: value})
        assert answer.status_code == 422, (path, answer.text)
        assert answer.json()["detail"] == (
            f"{field}: {value!r} is not an RFC 3339 timestamp (e.g. '2026-11-24T10:00:00.25Z')"
        ), (path, answer.text)
    versions = (await api.get("/v1/catalog/versions")).json()["items"]
    assert "2030-12-31T19:00:00Z" not in [v["effective_from"] for v in versions]

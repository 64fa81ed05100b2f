"""Catalog versions over REST: create, read back, history, diff; pricing by the version in
force at ``occurred_at``; immutability enforced by the database; bad input refused whole.

Version 1 of every test database is the AIMS catalog (effective 2025-01-01, Gemini 3.0
Flash at $0.10 in / $0.40 out per 1M tokens, cache reads at $0.01).
"""

from __future__ import annotations

from decimal import Decimal
from functools import partial
from typing import Any

import asyncpg
import pytest

from tests.support.events import wire_event

ACME = {
    "id": "acme/rocket-1",
    "name": "Acme Rocket 1",
    "tier": "premium",
    "input": "12.50",
    "output": "50",
    "cache_read": "1.25",
    "cache_write": "15.625",
    "reasoning": "60",
    "per_request": "0.002",
    "context_tokens": 400000,
}
# As the API shows it back: decimal strings, value-equal, without trailing zeros; one rate.
ACME_OUT = {**ACME, "input": "12.5", "long_context": []}
PEBBLE = {
    "id": "pebble/mini",
    "name": "Pebble Mini",
    "tier": "economy",
    "input": "0.05",
    "output": "0.2",
}
# Optional prices absent: cache prices default to input, reasoning to output, per call to 0.
PEBBLE_OUT: dict[str, Any] = {
    **PEBBLE,
    "cache_read": "0.05",
    "cache_write": "0.05",
    "reasoning": "0.2",
    "per_request": "0",
    "context_tokens": None,
    "long_context": [],
}


# A long-context entry of Acme Rocket 1: from 200,001 input tokens, every token of the call
# at twice the input price and 1.5× the output price; cache read given, cache write and
# reasoning left to their defaults (this entry's input and output).
LONG = {"min_input_tokens": 200001, "input": "25", "output": "75", "cache_read": "2.5"}
LONG_OUT = {**LONG, "cache_write": "25", "reasoning": "75"}


def flash(**prices: Any) -> dict[str, Any]:
    """Gemini 3.0 Flash with other prices (the model that the AIMS alias points at)."""
    return {
        "id": "google/gemini-3.0-flash",
        "name": "Gemini 3.0 Flash",
        "tier": "fast",
        "context_tokens": 1000000,
        **prices,
    }


async def create(client: Any, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/v1/catalog/versions", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def version_count(client: Any) -> int:
    return len((await client.get("/v1/catalog/versions")).json()["items"])


async def test_a_full_version_is_stored_and_read_back_with_decimal_string_prices(
    client: Any,
) -> None:
    created = await create(
        client,
        {
            "effective_from": "2026-06-01T00:00:00Z",
            "label": "acme-only",
            "models": [PEBBLE, ACME],
            "aliases": {"rocket": "acme/rocket-1"},
            "default_model": "pebble/mini",
        },
    )

    assert created["id"] == 2
    assert created["label"] == "acme-only"
    assert created["effective_from"] == "2026-06-01T00:00:00Z"
    assert created["parent"] is None
    assert created["models"] == [ACME_OUT, PEBBLE_OUT]  # in id order; nothing of AIMS kept
    assert created["aliases"] == {"rocket": "acme/rocket-1"}
    assert created["default_model"] == "pebble/mini"
    assert created["repriced_events"] == 0

    again = (await client.get("/v1/catalog/versions/2")).json()
    assert {k: v for k, v in again.items() if k != "repriced_events"} == {
        k: v for k, v in created.items() if k != "repriced_events"
    }
    listed = (await client.get("/v1/catalog/versions")).json()["items"]
    assert [(v["id"], v["label"], v["models"]) for v in listed] == [
        (1, "aims-v1", 10),
        (2, "acme-only", 2),
    ]
    # Effective since June, so the version in force now.
    assert (await client.get("/v1/catalog")).json()["id"] == 2


async def test_a_version_with_a_parent_is_stored_as_a_full_snapshot(client: Any) -> None:
    created = await create(
        client,
        {
            "effective_from": "2026-07-01T00:00:00+02:00",
            "parent": 1,
            "models": [ACME, flash(input="0.08", output="0.32")],
            "remove": ["openai/gpt-5.1", "meta-llama/llama-3.3-70b-instruct"],
            "aliases": {"rocket": "acme/rocket-1", "opus": "anthropic/claude-opus-4.6"},
        },
    )

    assert created["parent"] == 1
    assert created["effective_from"] == "2026-06-30T22:00:00Z"
    models = {m["id"]: m for m in created["models"]}
    assert len(models) == 10 - 2 + 1
    assert "openai/gpt-5.1" not in models
    assert "meta-llama/llama-3.3-70b-instruct" not in models
    assert models["acme/rocket-1"] == ACME_OUT
    assert models["google/gemini-3.0-flash"]["input"] == "0.08"
    assert models["google/gemini-3.0-flash"]["cache_read"] == "0.08"  # default follows input
    # Untouched parent entries are copied as they were.
    assert models["anthropic/claude-opus-4.6"] == {
        "id": "anthropic/claude-opus-4.6",
        "name": "Claude Opus 4.6",
        "tier": "premium",
        "input": "5",
        "output": "25",
        "cache_read": "0.5",
        "cache_write": "6.25",
        "reasoning": "25",
        "per_request": "0",
        "context_tokens": 1000000,
        "long_context": [],
    }
    # The parent's alias carries over; the new ones join it.
    assert created["aliases"] == {
        "gemini-3.0-flash": "google/gemini-3.0-flash",
        "opus": "anthropic/claude-opus-4.6",
        "rocket": "acme/rocket-1",
    }
    assert created["default_model"] == "google/gemini-3.0-flash"


async def test_long_context_entries_go_in_and_come_back_with_and_without_a_parent(
    client: Any,
) -> None:
    # Thresholds given out of order come back ascending.
    tiers = [{**LONG, "min_input_tokens": 1000000, "input": "50"}, LONG]
    whole = await create(
        client,
        {"effective_from": "2026-06-01T00:00:00Z", "models": [{**ACME, "long_context": tiers}]},
    )
    [acme] = whole["models"]
    assert acme["long_context"] == [
        LONG_OUT,
        {**LONG_OUT, "min_input_tokens": 1000000, "input": "50", "cache_write": "50"},
    ]
    read = (await client.get(f"/v1/catalog/versions/{whole['id']}")).json()
    assert read == {**whole, "repriced_events": None}  # said on creation only

    # With a parent: an entry given anew replaces the parent's, long context and all; the
    # parent's entries not given keep theirs (Sonnet's, from the AIMS catalog).
    child = await create(
        client,
        {
            "effective_from": "2026-07-01T00:00:00Z",
            "parent": 1,
            "models": [flash(input="0.10", output="0.40", cache_read="0.01", long_context=[LONG])],
        },
    )
    models = {m["id"]: m for m in child["models"]}
    assert models["google/gemini-3.0-flash"]["long_context"] == [LONG_OUT]
    assert models["anthropic/claude-sonnet-4.5"]["long_context"] == [
        {
            "min_input_tokens": 200001,
            "input": "6",
            "output": "22.5",
            "cache_read": "0.6",
            "cache_write": "7.5",
            "reasoning": "22.5",
        }
    ]
    # And a parent's model given without long context loses it.
    plain = await create(
        client,
        {
            "effective_from": "2026-08-01T00:00:00Z",
            "parent": child["id"],
            "models": [flash(input="0.10", output="0.40", cache_read="0.01")],
        },
    )
    flash_plain = next(m for m in plain["models"] if m["id"] == "google/gemini-3.0-flash")
    assert flash_plain["long_context"] == []

    history = (await client.get("/v1/catalog/models/google/gemini-3.0-flash/history")).json()
    assert [
        (p["catalog_version"], p["price"] and p["price"]["long_context"])
        for p in history["versions"]
    ] == [
        (1, []),
        (whole["id"], None),  # not in that version
        (child["id"], [LONG_OUT]),
        (plain["id"], []),
    ]
    for before, after, was, now in (
        (1, child["id"], [], [LONG_OUT]),
        (child["id"], plain["id"], [LONG_OUT], []),
    ):
        diff = (await client.get("/v1/catalog/diff", params={"from": before, "to": after})).json()
        assert [(c["id"], c["fields"]) for c in diff["changed"]] == [
            ("google/gemini-3.0-flash", ["long_context"])
        ]
        assert diff["changed"][0]["before"]["long_context"] == was
        assert diff["changed"][0]["after"]["long_context"] == now


async def test_history_and_diff_show_what_changed_between_versions(client: Any) -> None:
    await create(
        client,
        {
            "effective_from": "2026-03-01T00:00:00Z",
            "parent": 1,
            "models": [flash(input="0.20", output="0.80"), PEBBLE],
            "remove": ["openai/gpt-5.2"],
        },
    )
    await create(
        client,
        {
            "effective_from": "2026-04-01T00:00:00Z",
            "parent": 2,
            "models": [flash(input="0.20", output="0.90", reasoning="2")],
            "remove": ["pebble/mini"],
        },
    )

    history = (await client.get("/v1/catalog/models/google/gemini-3.0-flash/history")).json()
    assert history["model_id"] == "google/gemini-3.0-flash"
    assert [
        (p["catalog_version"], p["effective_from"], p["price"]["input"], p["price"]["output"])
        for p in history["versions"]
    ] == [
        (1, "2025-01-01T00:00:00Z", "0.1", "0.4"),
        (2, "2026-03-01T00:00:00Z", "0.2", "0.8"),
        (3, "2026-04-01T00:00:00Z", "0.2", "0.9"),
    ]
    pebble = (await client.get("/v1/catalog/models/pebble/mini/history")).json()
    assert [(p["catalog_version"], p["price"] is not None) for p in pebble["versions"]] == [
        (1, False),
        (2, True),
        (3, False),
    ]
    missing = await client.get("/v1/catalog/models/nobody/nothing/history")
    assert missing.status_code == 404
    assert "nobody/nothing" in missing.json()["detail"]

    diff = (await client.get("/v1/catalog/diff", params={"from": 1, "to": 2})).json()
    assert [m["id"] for m in diff["added"]] == ["pebble/mini"]
    assert [m["id"] for m in diff["removed"]] == ["openai/gpt-5.2"]
    assert [(c["id"], c["fields"]) for c in diff["changed"]] == [
        (
            "google/gemini-3.0-flash",
            ["input", "output", "cache_read", "cache_write", "reasoning"],
        )
    ]
    diff = (await client.get("/v1/catalog/diff", params={"from": 2, "to": 3})).json()
    assert diff["added"] == []
    assert [m["id"] for m in diff["removed"]] == ["pebble/mini"]
    [change] = diff["changed"]
    assert change["fields"] == ["output", "reasoning"]
    assert (change["before"]["output"], change["after"]["output"]) == ("0.8", "0.9")
    assert (change["before"]["reasoning"], change["after"]["reasoning"]) == ("0.8", "2")
    unknown = await client.get("/v1/catalog/diff", params={"from": 1, "to": 99})
    assert unknown.status_code == 404
    assert "catalog version 99 does not exist" in unknown.json()["detail"]
    # Named as the client wrote it, not as the handler's argument (from_version).
    bad = await client.get("/v1/catalog/diff", params={"from": "abc", "to": 2})
    assert bad.status_code == 400
    assert bad.json()["detail"] == (
        "from: 'abc' is not a whole number (ASCII digits, no exponent, separator or leading zero)"
    )


# Every event: 12,000 prompt tokens (2,000 of them cache reads) and 3,000 completion tokens
# (1,000 of them reasoning).
TOKENS = {
    "input_tokens": 12_000,
    "cached_input_tokens": 2_000,
    "output_tokens": 3_000,
    "reasoning_tokens": 1_000,
}
MILLION = Decimal(1_000_000)


event = partial(
    wire_event, job_id="job-versions", agent="ORACLE", model="gemini-3.0-flash", **TOKENS
)


async def test_each_event_is_priced_by_the_version_in_force_when_it_occurred(
    client: Any,
) -> None:
    # Created out of order: effective_from decides, not creation order.
    t3 = await create(
        client,
        {
            "effective_from": "2026-09-01T00:00:00Z",
            "label": "t3",
            "parent": 1,
            "models": [flash(input="0.25", output="1", reasoning="3.5", per_request="0.001")],
        },
    )
    t1 = await create(
        client,
        {
            "effective_from": "2026-03-01T00:00:00Z",
            "label": "t1",
            "parent": 1,
            "models": [flash(input="0.20", output="0.80")],
        },
    )
    t2 = await create(
        client,
        {
            "effective_from": "2026-06-01T00:00:00Z",
            "label": "t2",
            "parent": 1,
            "models": [flash(input="0.30", output="1.20", cache_read="0.03")],
        },
    )
    events = [
        event("before-t1", occurred_at="2026-02-15T12:00:00Z"),
        event("between-t1-t2", occurred_at="2026-05-31T23:59:59.999999Z"),
        event("at-t2", occurred_at="2026-06-01T00:00:00Z"),  # effective_from is not after it
        event("between-t2-t3", occurred_at="2026-08-01T08:30:00+02:00"),
        event("after-t3", occurred_at="2026-10-01T00:00:00Z"),
    ]
    batch = await client.post("/v1/events/batch", json={"events": events})
    assert batch.json()["accepted"] == 5, batch.text

    # By hand, per 1M tokens: 10,000 plain input, 2,000 cache read, 2,000 plain output,
    # 1,000 reasoning.
    expected = {
        # AIMS: 10,000×0.10 + 2,000×0.01 + 2,000×0.40 + 1,000×0.40 = 2,220
        "before-t1": (1, Decimal("0.00222")),
        # t1: 10,000×0.20 + 2,000×0.20 + 2,000×0.80 + 1,000×0.80 = 4,800
        "between-t1-t2": (t1["id"], Decimal("0.0048")),
        # t2: 10,000×0.30 + 2,000×0.03 + 2,000×1.20 + 1,000×1.20 = 6,660
        "at-t2": (t2["id"], Decimal("0.00666")),
        "between-t2-t3": (t2["id"], Decimal("0.00666")),
        # t3: 10,000×0.25 + 2,000×0.25 + 2,000×1 + 1,000×3.5 = 8,500, plus $0.001 per call
        "after-t3": (t3["id"], Decimal("0.0085") + Decimal("0.001")),
    }
    entries = (await client.get("/v1/jobs/job-versions/entries")).json()["items"]
    assert {e["event_id"]: (e["catalog_version"], Decimal(e["cost_usd"])) for e in entries} == (
        expected
    )
    assert all(e["kind"] == "charge" for e in entries)
    by_event = {e["event_id"]: e for e in entries}
    assert by_event["at-t2"]["unit_prices"] == {
        "input": "0.3",
        "output": "1.2",
        "cache_read": "0.03",
        "cache_write": "0.3",
        "reasoning": "1.2",
        "per_request": "0",
    }

    job = (await client.get("/v1/jobs/job-versions")).json()
    # 0.00222 + 0.0048 + 0.00666 + 0.00666 + 0.0095
    assert Decimal(job["cost_usd"]) == Decimal("0.02984")
    assert {line["catalog_version"]: Decimal(line["cost_usd"]) for line in job["lines"]} == {
        1: Decimal("0.00222"),
        t1["id"]: Decimal("0.0048"),
        t2["id"]: Decimal("0.01332"),
        t3["id"]: Decimal("0.0095"),
    }


async def test_on_equal_effective_from_the_version_created_last_prices(client: Any) -> None:
    first = await create(
        client,
        {
            "effective_from": "2026-05-01T00:00:00Z",
            "parent": 1,
            "models": [flash(input="0.20", output="0.80")],
        },
    )
    last = await create(
        client,
        {
            "effective_from": "2026-05-01T02:00:00+02:00",  # the same instant
            "parent": 1,
            "models": [flash(input="0.50", output="2")],
        },
    )
    assert last["id"] > first["id"]
    response = await client.post(
        "/v1/events", json=event("tied", occurred_at="2026-05-02T00:00:00Z")
    )
    assert response.status_code == 201, response.text

    [entry] = (await client.get("/v1/jobs/job-versions/entries")).json()["items"]
    assert entry["catalog_version"] == last["id"]
    # 10,000×0.50 + 2,000×0.50 + 2,000×2 + 1,000×2 = 12,000 per 1M
    assert Decimal(entry["cost_usd"]) == Decimal("0.012")
    assert (await client.get("/v1/catalog")).json()["id"] == last["id"]


async def test_long_context_at_its_exact_threshold_prices_every_token_class_at_its_rate(
    client: Any,
) -> None:
    # Gemini 3 Pro as AIMS prices it, now with $0.002 per call: base 1.25 in, 10 out, cache
    # read 0.125 (cache write and reasoning by default: 1.25 and 10); from 200,001 input
    # tokens 2.50 in, 15 out, cache read 0.25 (cache write and reasoning by default: that
    # entry's 2.50 and 15); the price per call stays the model's.
    pro = await create(
        client,
        {
            "effective_from": "2026-04-01T00:00:00Z",
            "parent": 1,
            "models": [
                {
                    "id": "google/gemini-3-pro-preview",
                    "name": "Gemini 3 Pro",
                    "tier": "standard",
                    "input": "1.25",
                    "output": "10",
                    "cache_read": "0.125",
                    "per_request": "0.002",
                    "long_context": [
                        {
                            "min_input_tokens": 200001,
                            "input": "2.50",
                            "output": "15",
                            "cache_read": "0.25",
                        }
                    ],
                }
            ],
        },
    )
    tokens = {
        "cached_input_tokens": 50_000,
        "cache_write_tokens": 20_000,
        "output_tokens": 8_000,
        "reasoning_tokens": 3_000,
    }
    call = partial(wire_event, job_id="job-long", model="google/gemini-3-pro-preview", **tokens)
    events = [
        call("below", occurred_at="2026-04-02T00:00:00Z", input_tokens=200_000),
        call("at", occurred_at="2026-04-02T00:00:00Z", input_tokens=200_001),
        call("aims-at", occurred_at="2026-03-31T23:59:59.999999Z", input_tokens=200_001),
    ]
    batch = await client.post("/v1/events/batch", json={"events": events})
    assert batch.json()["accepted"] == 3, batch.text

    entries = (await client.get("/v1/jobs/job-long/entries")).json()["items"]
    assert {
        e["event_id"]: (e["catalog_version"], e["long_context_from"], e["cost_usd"])
        for e in entries
    } == {
        # 130,000×1.25 + 50,000×0.125 + 20,000×1.25 + 5,000×10 + 3,000×10 = 273,750 per
        # 1M, plus 0.002
        "below": (pro["id"], None, "0.27575"),
        # 130,001×2.50 + 50,000×0.25 + 20,000×2.50 + 5,000×15 + 3,000×15 = 507,502.5 per
        # 1M, plus 0.002
        "at": (pro["id"], 200_001, "0.5095025"),
        # The AIMS version: the same rates, no price per call.
        "aims-at": (1, 200_001, "0.5075025"),
    }
    by_event = {e["event_id"]: e for e in entries}
    assert by_event["at"]["unit_prices"] == {
        "input": "2.5",
        "output": "15",
        "cache_read": "0.25",
        "cache_write": "2.5",
        "reasoning": "15",
        "per_request": "0.002",
    }


async def test_a_parents_alias_no_event_can_name_is_left_behind_not_refusing_the_child(
    client: Any, db: asyncpg.Connection
) -> None:
    # A version stored before empty aliases were refused: every version derived from it
    # (and every import, which derives from the newest) would be refused for its alias.
    old = await db.fetchval(
        """
        INSERT INTO catalog_versions (label, effective_from, aliases, parent_id)
        VALUES ('old', '2026-05-01T00:00:00Z',
                '{"": "google/gemini-3.0-flash", "flash": "google/gemini-3.0-flash"}', 1)
        RETURNING id
        """
    )
    columns = "model_id, name, tier, context_tokens, input, output, cache_read, cache_write, "
    columns += "reasoning, per_request"
    await db.execute(
        f"INSERT INTO catalog_prices (version_id, {columns}) "
        f"SELECT $1, {columns} FROM catalog_prices WHERE version_id = 1",
        old,
    )

    child = await create(
        client,
        {"effective_from": "2026-06-01T00:00:00Z", "parent": old, "models": [PEBBLE]},
    )

    assert child["aliases"] == {"flash": "google/gemini-3.0-flash"}


async def test_the_catalog_in_force_now_ignores_versions_that_start_later(client: Any) -> None:
    await create(
        client,
        {"effective_from": "2099-01-01T00:00:00Z", "parent": 1, "models": [PEBBLE]},
    )
    assert (await client.get("/v1/catalog")).json()["id"] == 1


async def test_the_database_refuses_to_update_or_delete_a_catalog_version(
    db: asyncpg.Connection,
) -> None:
    prices = await db.fetch("SELECT * FROM catalog_prices ORDER BY model_id")
    version = await db.fetchrow("SELECT * FROM catalog_versions WHERE id = 1")
    refusals = {
        "UPDATE catalog_versions SET label = 'edited' WHERE id = 1": (
            "table catalog_versions is append-only: UPDATE is not allowed"
        ),
        "UPDATE catalog_versions SET effective_from = now() WHERE id = 1": (
            "table catalog_versions is append-only: UPDATE is not allowed"
        ),
        "DELETE FROM catalog_versions WHERE id = 1": (
            "table catalog_versions is append-only: DELETE is not allowed"
        ),
        "UPDATE catalog_prices SET input = 0 WHERE version_id = 1": (
            "table catalog_prices is append-only: UPDATE is not allowed"
        ),
        "DELETE FROM catalog_prices WHERE version_id = 1": (
            "table catalog_prices is append-only: DELETE is not allowed"
        ),
        "TRUNCATE catalog_prices CASCADE": (
            "table catalog_prices is append-only: TRUNCATE is not allowed"
        ),
        "UPDATE catalog_long_context SET input = 0": (
            "table catalog_long_context is append-only: UPDATE is not allowed"
        ),
        "DELETE FROM catalog_long_context": (
            "table catalog_long_context is append-only: DELETE is not allowed"
        ),
        "TRUNCATE catalog_long_context": (
            "table catalog_long_context is append-only: TRUNCATE is not allowed"
        ),
        "TRUNCATE catalog_versions CASCADE": (
            "table catalog_versions is append-only: TRUNCATE is not allowed"
        ),
    }
    for statement, message in refusals.items():
        with pytest.raises(asyncpg.InsufficientPrivilegeError) as refused:
            await db.execute(statement)
        assert str(refused.value) == message, statement

    assert await db.fetch("SELECT * FROM catalog_prices ORDER BY model_id") == prices
    assert await db.fetchrow("SELECT * FROM catalog_versions WHERE id = 1") == version


def body(**changes: Any) -> dict[str, Any]:
    """A valid version with ``changes`` applied."""
    return {"effective_from": "2026-06-01T00:00:00Z", "models": [ACME, PEBBLE], **changes}


@pytest.mark.parametrize(
    ("request_body", "status", "message"),
    [
        pytest.param(
            body(models=[{**ACME, "output": "-0.5"}]),
            422,
            "models[acme/rocket-1].output: '-0.5' has a sign; the amount cannot be negative",
            id="negative price",
        ),
        pytest.param(
            body(models=[{**PEBBLE, "cache_read": "NaN"}]),
            422,
            "models[pebble/mini].cache_read: 'NaN' is not a number",
            id="price that is not a number",
        ),
        pytest.param(
            body(models=[{**PEBBLE, "input": "cheap"}]),
            422,
            "models[pebble/mini].input: 'cheap' is not a decimal string",
            id="price that is not a decimal",
        ),
        pytest.param(
            body(models=[ACME, PEBBLE, {**PEBBLE, "input": "0.06"}]),
            422,
            "models: model 'pebble/mini' appears twice",
            id="duplicate model id",
        ),
        pytest.param(
            body(parent=1, models=[PEBBLE, PEBBLE]),
            422,
            "models: model 'pebble/mini' appears twice",
            id="duplicate model id against a parent",
        ),
        pytest.param(
            body(aliases={"rocket": "acme/rocket-2"}),
            422,
            "aliases: alias 'rocket' points at 'acme/rocket-2', which is not in the version",
            id="alias pointing nowhere",
        ),
        pytest.param(
            body(default_model="acme/rocket-2"),
            422,
            "default_model 'acme/rocket-2' is not in the version",
            id="default model not in the version",
        ),
        pytest.param(
            body(effective_from="2026-06-01T00:00:00"),
            422,
            "effective_from: timestamp has no UTC offset",
            id="effective_from without offset",
        ),
        # A space is no offset sign in JSON: it was read as "+", so this version started
        # at 2026-05-31T19:00:00Z, for good.
        pytest.param(
            body(effective_from="2026-06-01T00:00:00 05:00"),
            422,
            "effective_from: '2026-06-01T00:00:00 05:00' is not an RFC 3339 timestamp",
            id="effective_from with a space for its offset's sign",
        ),
        # asyncpg writes these two instants as PostgreSQL's -infinity and infinity, read
        # back naive: stored, every later load of the catalog failed (a 500).
        pytest.param(
            body(effective_from="0001-01-01T00:00:00Z"),
            422,
            "effective_from: 0001-01-01T00:00:00Z is the first or last instant",
            id="effective_from the driver writes as -infinity",
        ),
        pytest.param(
            body(effective_from="9999-12-31T23:59:59.999999Z"),
            422,
            "effective_from: 9999-12-31T23:59:59.999999Z is the first or last instant",
            id="effective_from the driver writes as infinity",
        ),
        pytest.param(
            body(effective_from="June 1st"),
            422,
            "effective_from: 'June 1st' is not an RFC 3339 timestamp",
            id="effective_from not a timestamp",
        ),
        pytest.param(
            body(models=[{**ACME, "input": 12.5}]),
            400,
            "models[0].input: Expected `str`, got `float`",
            id="price as JSON number",
        ),
        pytest.param(
            body(models=[{**ACME, "colour": "red"}]),
            400,
            "models[0]: Object contains unknown field `colour`",
            id="unknown field in a model",
        ),
        pytest.param(
            body(currency="EUR"),
            400,
            "Object contains unknown field `currency`",
            id="unknown field in the version",
        ),
        pytest.param(
            body(models=[{**ACME, "tier": "gold"}]),
            400,
            "models[0].tier: Invalid enum value 'gold'",
            id="unknown tier",
        ),
        pytest.param(
            body(parent=99),
            422,  # a referent named in the body, as a customer's plan_id (it was a 404)
            "parent: catalog version 99 does not exist",
            id="unknown parent",
        ),
        pytest.param(
            body(parent=1, models=[], remove=["acme/rocket-1"]),
            422,
            "remove: model 'acme/rocket-1' is not in parent version 1",
            id="remove of a model not in the parent",
        ),
        pytest.param(
            body(parent=1, models=[], remove=["openai/gpt-5.2", "openai/gpt-5.2"]),
            422,
            "remove: model 'openai/gpt-5.2' appears twice",
            id="remove of a model twice (it said the parent lacked it)",
        ),
        pytest.param(
            body(remove=["pebble/mini"]),
            422,
            "remove: only a version with a parent can remove models",
            id="remove without a parent",
        ),
        pytest.param(
            body(models=[]),
            422,
            "models: a catalog version needs at least one model",
            id="no models",
        ),
        pytest.param(
            body(models=[{**ACME, "context_tokens": 3_000_000_000}]),
            422,
            "model 'acme/rocket-1': context_tokens must be between 1 and 2147483647",
            id="context window beyond what the column holds",
        ),
        pytest.param(
            body(models=[{**ACME, "input": "1e200000"}]),
            422,
            "models[acme/rocket-1].input: '1e200000' has an exponent; write every digit",
            id="price with an exponent (asyncpg would store 1e200000 as 0)",
        ),
        pytest.param(
            body(models=[{**ACME, "input": "1_000"}]),
            422,
            "models[acme/rocket-1].input: '1_000' has underscores",
            id="price with underscores",
        ),
        pytest.param(
            body(models=[{**ACME, "input": "1" + "0" * 12}]),
            422,
            "model 'acme/rocket-1': prices must be finite, not negative, below 1000000000000 "
            "and have at most 30 decimal places (input is 1000000000000)",
            id="absurdly large price",
        ),
        pytest.param(
            body(models=[{**ACME, "long_context": [{**LONG, "min_input_tokens": 0}]}]),
            422,
            "model 'acme/rocket-1': long_context[0].min_input_tokens must be a positive integer",
            id="long-context threshold zero",
        ),
        pytest.param(
            body(models=[{**ACME, "long_context": [LONG, {**LONG, "input": "30"}]}]),
            422,
            "model 'acme/rocket-1': long_context[1].min_input_tokens 200001 appears twice; "
            "thresholds are unique within a model",
            id="long-context threshold twice",
        ),
        pytest.param(
            body(models=[{**ACME, "long_context": [{**LONG, "min_input_tokens": 10**12 + 1}]}]),
            422,
            "long_context[0].min_input_tokens must be at most 1000000000000",
            id="long-context threshold no event reaches",
        ),
        pytest.param(
            body(models=[{**ACME, "long_context": [{**LONG, "output": "-25"}]}]),
            422,
            "models[acme/rocket-1].long_context[0].output: '-25' has a sign",
            id="long-context negative price",
        ),
        pytest.param(
            body(
                models=[{**ACME, "long_context": [{**LONG, "cache_read": "0." + "0" * 30 + "1"}]}]
            ),
            422,
            "model 'acme/rocket-1': long_context[0]: prices must be finite, not negative, "
            "below 1000000000000 and have at most 30 decimal places (cache_read is "
            "0.0000000000000000000000000000001)",
            id="long-context price with too many decimals",
        ),
        pytest.param(
            body(models=[{**ACME, "long_context": [{**LONG, "per_request": "0.01"}]}]),
            400,
            "models[0].long_context[0]: Object contains unknown field `per_request`",
            id="per_request in a long-context entry (it stays the model's)",
        ),
        pytest.param(
            body(models=[{**ACME, "long_context": [{**LONG, "min_input_tokens": "lots"}]}]),
            400,
            "models[0].long_context[0].min_input_tokens: Expected `int`, got `str`",
            id="long-context threshold that is no number",
        ),
        pytest.param(
            body(models=[{**ACME, "long_context": [{"min_input_tokens": 200001, "input": "25"}]}]),
            400,
            "models[0].long_context[0]: Object missing required field `output`",
            id="long-context entry without its output price",
        ),
        pytest.param(
            body(models=[{**ACME, "input": "0." + "0" * 30 + "1"}]),
            422,
            "and have at most 30 decimal places",
            id="price with more decimals than a price may have",
        ),
        # Pricing resolves aliases first: a model whose id is also an alias would never be
        # priced at its own prices, silently.
        pytest.param(
            body(aliases={"acme/rocket-1": "pebble/mini"}),
            422,
            "aliases: alias 'acme/rocket-1' is also the id of a model of the version",
            id="alias that shadows a model of the version",
        ),
        # PostgreSQL's jsonb cannot hold a NUL: the driver's error was a 500. Refused
        # where the body is read (every route's), naming where it is.
        pytest.param(
            body(aliases={"pebble\x00": "pebble/mini"}),
            422,
            "aliases.pebble\x00: must not contain the NUL character (U+0000)",
            id="alias holding a NUL",
        ),
        pytest.param(
            body(models=[ACME, {**PEBBLE, "id": "pebble\x00mini"}]),
            422,
            "models[1].id: must not contain the NUL character (U+0000)",
            id="model id holding a NUL",
        ),
        pytest.param(
            body(models=[ACME, {**PEBBLE, "name": "Pebble\x00"}]),
            422,
            "models[1].name: must not contain the NUL character (U+0000)",
            id="model name holding a NUL",
        ),
        pytest.param(
            body(label="June\x00"),
            422,
            "label: must not contain the NUL character (U+0000)",
            id="label holding a NUL",
        ),
        pytest.param(
            body(aliases={"p" * 257: "pebble/mini"}),
            422,
            "must be 1 to 256 characters, got 257",
            id="alias longer than any model an event names",
        ),
        pytest.param(
            body(aliases={"": "pebble/mini"}),
            422,
            "aliases: an alias is a name of at least one character",
            id="empty alias",
        ),
        pytest.param(
            body(parent=1, models=[{**PEBBLE, "id": "gemini-3.0-flash"}]),
            422,
            "alias 'gemini-3.0-flash' is also the id of a model of the version",
            id="model added under the id of an alias the parent carries",
        ),
    ],
)
async def test_a_bad_version_is_refused_with_a_clear_message_and_nothing_is_written(
    client: Any, db: asyncpg.Connection, request_body: dict[str, Any], status: int, message: str
) -> None:
    prices_before = await db.fetchval("SELECT count(*) FROM catalog_prices")

    response = await client.post("/v1/catalog/versions", json=request_body)

    assert response.status_code == status, response.text
    assert message in response.json()["detail"]
    assert await version_count(client) == 1
    assert await db.fetchval("SELECT count(*) FROM catalog_versions") == 1
    assert await db.fetchval("SELECT count(*) FROM catalog_prices") == prices_before


async def test_a_rerating_says_which_events_lose_their_price(client: Any) -> None:
    """A version without the event's model makes its cost unknown, not 0.001 cheaper: the
    re-rating's deltas count an unknown cost as none, so it names such events apart, and
    the new booking's reason says the event is now unpriced (it was priced)."""
    call = partial(
        wire_event,
        occurred_at="2026-11-02T00:00:00Z",
        agent="ORACLE",
        model="openai/gpt-5.2",
        input_tokens=200,
        output_tokens=0,
    )
    # GPT-5.2: 200 × 5.00 per 1M = 0.001 each.
    batch = await client.post(
        "/v1/events/batch",
        json={"events": [call("g1", job_id="job-g"), call("g2", job_id="job-h")]},
    )
    assert batch.json()["accepted"] == 2, batch.text
    await create(
        client,
        {
            "effective_from": "2026-11-01T00:00:00Z",
            "parent": 1,
            "models": [],
            "remove": ["openai/gpt-5.2"],
        },
    )
    for dry_run in (True, False):
        rerated = await client.post(
            "/v1/catalog/rerate", json={"since": "2026-11-01T00:00:00Z", "dry_run": dry_run}
        )
        assert rerated.status_code == 200, rerated.text
        summary = rerated.json()
        assert (
            summary["events_changed"],
            summary["events_now_unpriced"],
            summary["events_now_priced"],
            summary["delta_usd"],
        ) == (2, 2, 0, "-0.002")
        assert [(j["key"], j["events_now_unpriced"], j["delta_usd"]) for j in summary["jobs"]] == [
            ("job-g", 1, "-0.001"),
            ("job-h", 1, "-0.001"),
        ]
        assert [(a["key"], a["events_now_unpriced"]) for a in summary["agents"]] == [("ORACLE", 2)]
    job = (await client.get("/v1/jobs/job-g")).json()
    assert (job["cost_usd"], job["unpriced_events"]) == (None, 1)
    entries = (await client.get("/v1/jobs/job-g/entries")).json()["items"]
    assert entries[-1]["reason"] == (
        "re-rated since 2026-11-01T00:00:00Z; now unpriced: model 'openai/gpt-5.2' is "
        "not in catalog version 2"
    )

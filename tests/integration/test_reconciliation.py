"""``GET /v1/reconciliation``: catalog-priced against provider-reported cost, by model,
provider and UTC day, with the drift flag and its reasons (SPEC §5), every figure worked out
by hand below.

The models are the test's own, in a catalog version of its own (so the AIMS catalog's
prices may change without changing these figures), in force from 2026-11-01:

- ``acme/cachey``: 2.00 in, 10.00 out per 1M, no cache prices (cache reads at the input
  rate, SPEC §3's default);
- ``acme/steady``: 1.00 in, 4.00 out, cache reads 0.10; alias ``steady``;
- ``acme/free``: 0 in, 0 out.

The groups, on 2026-11-10 (D1) and 2026-11-11 (D2):

==========  ===========  ===  ====================================================  =======
model       provider     day  events (catalog cost each → provider-reported each)   ratio
==========  ===========  ===  ====================================================  =======
cachey      openrouter   D1   20 × 10,000 in of which 8,000 cached, 1,000 out:      -0.48
                              10,000 × 2 + 1,000 × 10 = 30,000/M = 0.03 → 0.0156     drift
cachey      vertex       D1   19 of the same                                        -0.48
free        openrouter   D1   21 × 1,000 in, 100 out: 0 → 0.0001                     null
steady      openrouter   D2   25 × 1,000 in, 1,000 out: 1,000 + 4,000 = 0.005        0.008
                              → 0.00504; and 3 more with no reported cost
steady      vertex       D2   20 of the same → 0.00505                               0.01
unknown     openrouter   D2   2 × 1,000 in, 0 out, unpriced → 0.0005                 null
steady      azure        D2   20, below                                              0.5
==========  ===========  ===  ====================================================  =======

The azure group, every event reported at 1.5 × its catalog cost:

- 4 × 250,000 in, 1,000 out: 250,000 + 4,000 = 0.254 → 0.381 (long context)
- 1 × 200,001 in, 1,000 out: 200,001 + 4,000 = 0.204001 → 0.3060015 (long context: at the
  threshold)
- 5 × 1,000 in, 2,000 out of which 1,000 reasoning: 1,000 + 8,000 = 0.009 → 0.0135
- 5 × 1,000 in, 1,000 out, answered by ``acme/other``: 0.005 → 0.0075
- 5 × 200,000 in, 1,000 out, answered by ``steady`` (the alias of the model it is priced
  as: explains nothing): 0.204 → 0.306 (not long context: 200,000 is not over 200,000)

so 1.016 + 0.204001 + 0.045 + 0.025 + 1.02 = 2.310001 against 3.4650015.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
from alembic import command
from litestar.testing import AsyncTestClient
from prometheus_client.parser import text_string_to_metric_families

from service.app import create_app
from service.catalog.service import load_catalog
from service.db.migrations import _alembic_config, migrate_sync
from service.errors import SettingsError
from service.reconciliation.service import reconcile
from service.settings import load_settings
from service.wire import instant_text
from tests.support.clock import clear_of_end, day_start
from tests.support.databases import connected, new_database
from tests.support.events import wire_event
from tests.support.keys import bearer
from tests.support.ledger_truth import assert_rollups_equal_ledger
from tests.support.settings import settings_for

VERSION = {
    "effective_from": "2026-11-01T00:00:00Z",
    "label": "reconciliation test",
    "parent": 1,
    "models": [
        {"id": "acme/cachey", "name": "Cachey", "tier": "standard", "input": "2.00",
         "output": "10.00"},
        {"id": "acme/steady", "name": "Steady", "tier": "fast", "input": "1.00",
         "output": "4.00", "cache_read": "0.10"},
        {"id": "acme/free", "name": "Free", "tier": "economy", "input": "0", "output": "0"},
    ],
    "aliases": {"steady": "acme/steady"},
}  # fmt: skip

D1, D2, D3 = "2026-11-10", "2026-11-11", "2026-11-12"


def call(event_id: str, at: str, model: str, provider: str, **fields: Any) -> dict[str, Any]:
    return wire_event(
        event_id, occurred_at=at, job_id="job-rec", model=model, provider=provider, **fields
    )


def cached(event_id: str, at: str, provider: str) -> dict[str, Any]:
    return call(
        event_id, at, "acme/cachey", provider, input_tokens=10_000, cached_input_tokens=8_000,
        output_tokens=1_000, provider_cost_usd="0.0156",
    )  # fmt: skip


def steady(event_id: str, at: str, provider: str, **fields: Any) -> dict[str, Any]:
    plain = {"input_tokens": 1_000, "output_tokens": 1_000}
    return call(event_id, at, "acme/steady", provider, **{**plain, **fields})


def azure(event_id: str, minute: int, inp: int, out: int, paid: str, **more: Any) -> dict[str, Any]:
    return steady(
        event_id, f"{D2}T14:{minute:02d}:00Z", "azure", input_tokens=inp, output_tokens=out,
        provider_cost_usd=paid, **more,
    )  # fmt: skip


EVENTS = [
    *(cached(f"co-{i}", f"{D1}T10:{i:02d}:00Z", "openrouter") for i in range(20)),
    *(cached(f"cv-{i}", f"{D1}T11:{i:02d}:00Z", "vertex") for i in range(19)),
    *(
        call(f"fr-{i}", f"{D1}T12:{i:02d}:00Z", "acme/free", "openrouter", input_tokens=1_000,
             output_tokens=100, provider_cost_usd="0.0001")
        for i in range(21)
    ),
    *(steady(f"so-{i}", f"{D2}T09:{i:02d}:00Z", "openrouter", provider_cost_usd="0.00504")
      for i in range(25)),
    *(steady(f"su-{i}", f"{D2}T09:{30 + i:02d}:00Z", "openrouter") for i in range(3)),
    *(steady(f"sv-{i}", f"{D2}T10:{i:02d}:00Z", "vertex", provider_cost_usd="0.00505")
      for i in range(20)),
    *(
        call(f"un-{i}", f"{D2}T11:{i:02d}:00Z", "acme/unknown", "openrouter", input_tokens=1_000,
             output_tokens=0, provider_cost_usd="0.0005")
        for i in range(2)
    ),
    *(azure(f"az-long-{i}", i, 250_000, 1_000, "0.381") for i in range(4)),
    azure("az-edge", 4, 200_001, 1_000, "0.3060015"),
    *(azure(f"az-think-{i}", 10 + i, 1_000, 2_000, "0.0135", reasoning_tokens=1_000)
      for i in range(5)),
    *(azure(f"az-other-{i}", 20 + i, 1_000, 1_000, "0.0075",
            attributes={"upstream_model": "acme/other"}) for i in range(5)),
    *(azure(f"az-alias-{i}", 30 + i, 200_000, 1_000, "0.306",
            attributes={"upstream_model": "steady"}) for i in range(5)),
]  # fmt: skip

CACHE_REASON = "cache_read_at_input_price"
AZURE_REASONS = [("long_context", 5), ("upstream_model_differs", 5), ("reasoning_tokens", 5)]

# (keys, events, reported, unpriced reported, cost, provider cost, unpriced provider cost,
#  difference, ratio, drift, reasons as (code, events))
Row = tuple[dict[str, str], int, int, int, str, str, str, str, str | None, bool, list[Any]]

BY_MODEL_AND_PROVIDER: list[Row] = [
    ({"model": "acme/cachey", "provider": "openrouter"}, 20, 20, 0, "0.6", "0.312", "0",
     "-0.288", "-0.48", True, [(CACHE_REASON, 20)]),
    # 19 compared events: the same ratio, too few to drift
    ({"model": "acme/cachey", "provider": "vertex"}, 19, 19, 0, "0.57", "0.2964", "0",
     "-0.2736", "-0.48", False, []),
    # nothing to divide by: no ratio, no drift, whatever the provider billed
    ({"model": "acme/free", "provider": "openrouter"}, 21, 21, 0, "0", "0.0021", "0",
     "0.0021", None, False, []),
    ({"model": "acme/steady", "provider": "azure"}, 20, 20, 0, "2.310001", "3.4650015", "0",
     "1.1550005", "0.5", True, AZURE_REASONS),
    # within the tolerance; the 3 events without a reported cost are events, not compared
    ({"model": "acme/steady", "provider": "openrouter"}, 28, 25, 0, "0.125", "0.126", "0",
     "0.001", "0.008", False, []),
    # exactly at the tolerance: not beyond it
    ({"model": "acme/steady", "provider": "vertex"}, 20, 20, 0, "0.1", "0.101", "0", "0.001",
     "0.01", False, []),
    # unpriced: counted, its provider cost kept apart, never compared with a zero
    ({"model": "acme/unknown", "provider": "openrouter"}, 2, 2, 2, "0", "0", "0.001", "0",
     None, False, []),
]  # fmt: skip


def rows_of(answer: dict[str, Any]) -> list[Row]:
    keys = answer["group_by"]
    return [
        (
            {k: r[k] for k in keys},
            r["events"],
            r["reported_events"],
            r["unpriced_reported_events"],
            r["cost_usd"],
            r["provider_cost_usd"],
            r["unpriced_provider_cost_usd"],
            r["difference_usd"],
            r["difference_ratio"],
            r["drift"],
            [(reason["code"], reason["events"]) for reason in r["reasons"]],
        )
        for r in answer["rows"]
    ]


async def record(client: Any) -> None:
    """The test's catalog version, then every event."""
    version = await client.post("/v1/catalog/versions", json=VERSION)
    assert version.status_code == 201, version.text
    assert version.json()["id"] == 2
    answer = await client.post("/v1/events/batch", json={"events": EVENTS})
    assert answer.status_code == 200, answer.text
    assert answer.json()["accepted"] == len(EVENTS) == 130


@pytest.fixture
async def recorded(client: Any) -> Any:
    await record(client)
    return client


async def reconciliation(client: Any, **params: str) -> dict[str, Any]:
    response = await client.get("/v1/reconciliation", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_twenty_reported_events_beyond_tolerance_drift_with_their_reason(
    recorded: Any,
) -> None:
    answer = await reconciliation(recorded, group_by="model,provider")
    assert (answer["tolerance"], answer["min_events"]) == ("0.01", 20)
    assert (answer["from"], answer["to"]) == (None, None)
    assert rows_of(answer) == BY_MODEL_AND_PROVIDER
    (cachey,) = (r for r in answer["rows"] if r["drift"] and r["model"] == "acme/cachey")
    (reason,) = cachey["reasons"]
    assert "no cache_read price of its own for acme/cachey in catalog version 2" in reason["text"]
    assert "day" not in cachey  # only the keys group_by names


async def test_a_drifting_group_says_what_luc_sees_in_it(recorded: Any) -> None:
    answer = await reconciliation(recorded, group_by="model,provider")
    (row,) = (r for r in answer["rows"] if r["provider"] == "azure")
    texts = {reason["code"]: reason["text"] for reason in row["reasons"]}
    assert list(texts) == ["long_context", "upstream_model_differs", "reasoning_tokens"]
    assert texts["long_context"].startswith("input over 200,000 tokens")
    assert "no long-context rate for acme/steady in catalog version 2" in texts["long_context"]
    # the alias of the model it is priced as does not count; acme/other does
    assert texts["upstream_model_differs"].endswith(": acme/other priced as acme/steady")


async def test_groups_by_provider_sum_their_models_and_count_the_unpriced_apart(
    recorded: Any,
) -> None:
    answer = await reconciliation(recorded, group_by="provider")
    assert rows_of(answer) == [
        ({"provider": "azure"}, 20, 20, 0, "2.310001", "3.4650015", "0", "1.1550005", "0.5",
         True, AZURE_REASONS),
        # cachey 20 + free 21 + steady 25 reported and 3 not + unknown 2 (unpriced)
        # cost 0.6 + 0 + 0.125; provider 0.312 + 0.0021 + 0.126; ratio −0.2849 / 0.725
        # = −0.392965517241379310344…, to 20 digits away from zero
        ({"provider": "openrouter"}, 71, 68, 2, "0.725", "0.4401", "0.001", "-0.2849",
         "-0.39296551724137931035", True, [(CACHE_REASON, 20)]),
        # cachey 19 + steady 20: −0.2726 / 0.67, to 20 significant digits
        ({"provider": "vertex"}, 39, 39, 0, "0.67", "0.3974", "0", "-0.2726",
         "-0.40686567164179104478", True, [(CACHE_REASON, 19)]),
    ]  # fmt: skip


async def test_drift_counts_every_reported_event_the_unpriced_included(client: Any) -> None:
    """SPEC §5: drift "over at least 20 reported events", and ``reported_events`` counts
    those with a provider cost, unpriced or not. 19 steady calls reported at 0.00506
    against 0.005 (ratio 0.012, beyond 0.01) and 1 unpriced one reported at 0.5: 20
    reported events, the ratio over the 19 priced ones, and the row drifts (it said 20
    reported events, ratio 0.012 and no drift)."""
    assert (await client.post("/v1/catalog/versions", json=VERSION)).status_code == 201
    events = [
        *(steady(f"p-{i}", f"{D3}T09:{i:02d}:00Z", "pz", provider_cost_usd="0.00506")
          for i in range(19)),
        call("p-unknown", f"{D3}T10:00:00Z", "acme/unknown", "pz", input_tokens=1_000,
             output_tokens=0, provider_cost_usd="0.5"),
    ]  # fmt: skip
    answer = await client.post("/v1/events/batch", json={"events": events[:19]})
    assert answer.json()["accepted"] == 19
    # 19 reported events: too few, whatever the ratio
    before = await reconciliation(client, group_by="provider")
    assert rows_of(before) == [
        ({"provider": "pz"}, 19, 19, 0, "0.095", "0.09614", "0", "0.00114", "0.012", False, []),
    ]
    answer = await client.post("/v1/events/batch", json={"events": events[19:]})
    assert answer.json()["accepted"] == 1
    after = await reconciliation(client, group_by="provider")
    # the unpriced one is counted and its bill kept apart: the ratio stays the 19's
    [row] = rows_of(after)
    assert row[:10] == (
        {"provider": "pz"}, 20, 20, 1, "0.095", "0.09614", "0.5", "0.00114", "0.012", True,
    )  # fmt: skip
    # Nothing in the 19 compared events explains it: the reason concerns all 19 (it said 0).
    [reason] = after["rows"][0]["reasons"]
    assert (reason["code"], reason["events"]) == ("unexplained", 19)


async def test_groups_by_day_and_by_all_three_keys(recorded: Any) -> None:
    by_day = await reconciliation(recorded, group_by="day")
    assert rows_of(by_day) == [
        # cachey 20 + 19, free 21: 1.17 against 0.6105
        ({"day": D1}, 60, 60, 0, "1.17", "0.6105", "0", "-0.5595", "-0.47820512820512820513",
         True, [(CACHE_REASON, 39)]),
        # steady 25 + 3 + 20 + 20 (azure), unknown 2: 0.125 + 0.1 + 2.310001 = 2.535001
        # against 0.126 + 0.101 + 3.4650015 = 3.6920015
        ({"day": D2}, 70, 67, 2, "2.535001", "3.6920015", "0.001", "1.1570005",
         "0.45641027360541475132", True, AZURE_REASONS),
    ]  # fmt: skip
    # rows are ordered by the keys in group_by's order; a repeated key counts once
    all_three = await reconciliation(recorded, group_by="day,model,provider,day")
    assert all_three["group_by"] == ["day", "model", "provider"]
    expected = [
        (
            {"day": D1 if "cachey" in r[0]["model"] or "free" in r[0]["model"] else D2, **r[0]},
            *r[1:],
        )
        for r in BY_MODEL_AND_PROVIDER
    ]
    assert rows_of(all_three) == sorted(expected, key=lambda r: (r[0]["day"], r[0]["model"]))


async def test_from_is_inclusive_and_to_exclusive_on_days_and_within_them(recorded: Any) -> None:
    d2 = await reconciliation(recorded, group_by="provider", **{"from": f"{D2}T00:00:00Z"})
    assert d2["from"] == f"{D2}T00:00:00Z"
    assert [(r[0]["provider"], r[1], r[2], r[3], r[4], r[5], r[8], r[9]) for r in rows_of(d2)] == [
        ("azure", 20, 20, 0, "2.310001", "3.4650015", "0.5", True),
        # steady's 25 reported and 3 not, unknown's 2: within the tolerance now
        ("openrouter", 30, 27, 2, "0.125", "0.126", "0.008", False),
        ("vertex", 20, 20, 0, "0.1", "0.101", "0.01", False),
    ]
    d1 = await reconciliation(
        recorded, group_by="model,provider", **{"from": f"{D1}T00:00:00Z", "to": f"{D2}T00:00:00Z"}
    )
    assert [r[0] for r in rows_of(d1)] == [
        {"model": "acme/cachey", "provider": "openrouter"},
        {"model": "acme/cachey", "provider": "vertex"},
        {"model": "acme/free", "provider": "openrouter"},
    ]
    # co-0 … co-4 at 10:00 … 10:04; 10:05 is the exclusive end. 5 × 0.03 against 5 × 0.0156.
    first_five = await reconciliation(
        recorded, group_by="model", **{"from": f"{D1}T10:00:00Z", "to": f"{D1}T10:05:00Z"}
    )
    assert rows_of(first_five) == [
        ({"model": "acme/cachey"}, 5, 5, 0, "0.15", "0.078", "0", "-0.072", "-0.48", False, []),
    ]
    # +02:00 offsets name the same instants: 12:00+02:00 is 10:00Z
    same = await reconciliation(
        recorded,
        group_by="model",
        **{"from": f"{D1}T12:00:00+02:00", "to": f"{D1}T12:05:00+02:00"},
    )
    assert rows_of(same) == rows_of(first_five)
    empty = await reconciliation(recorded, group_by="day", **{"from": f"{D3}T00:00:00Z"})
    assert empty["rows"] == []


@pytest.mark.parametrize(
    ("params", "detail"),
    [
        ({}, "group_by is required: one or more of model, provider, day, comma-separated"),
        ({"group_by": ""}, "group_by is required: one or more of model, provider, day"),
        ({"group_by": "agent"}, "group_by: unknown key 'agent'; choose from model, provider, day"),
        ({"group_by": "model,,day"}, "group_by: an empty key; choose from model, provider, day"),
        ({"group_by": "model", "from": "yesterday"}, "from: 'yesterday' is not an RFC 3339"),
        ({"group_by": "model", "from": "2026-11-10T00:00:00"}, "from: timestamp has no UTC offset"),
        (
            {"group_by": "model", "from": "2026-11-11T00:00:00Z", "to": "2026-11-10T00:00:00Z"},
            "from must not be after to",
        ),
    ],
)
async def test_bad_parameters_are_refused_with_what_is_wrong(
    client: Any, params: dict[str, str], detail: str
) -> None:
    response = await client.get("/v1/reconciliation", params=params)
    assert response.status_code == 400, response.text
    assert response.json()["detail"].startswith(detail), response.json()


QUERIES: list[tuple[list[str], str | None, str | None]] = [
    (["model", "provider"], None, None),
    (["provider"], f"{D2}T00:00:00Z", None),
    (["day", "model"], f"{D1}T00:00:00Z", f"{D3}T00:00:00Z"),
    (["model", "provider", "day"], None, f"{D2}T00:00:00Z"),
    (["provider", "day"], f"{D1}T10:30:00Z", f"{D2}T14:12:00Z"),
]


def _exact(rows: list[Any]) -> list[tuple[Any, ...]]:
    """Rows with every Decimal as its string, so 0.0150 and 0.015 would differ."""
    return [
        (row.keys, {k: str(getattr(row.totals, k)) for k in row.totals.__dataclass_fields__},
         str(row.difference_ratio), row.drift, row.reasons)
        for row in rows
    ]  # fmt: skip


async def test_the_rollup_and_the_ledger_give_the_same_rows_before_and_after_re_rating(
    recorded: Any, db: asyncpg.Connection
) -> None:
    async def both_ways() -> None:
        catalog = await load_catalog(db)
        for keys, start, end in QUERIES:
            lower = None if start is None else datetime.fromisoformat(start)
            upper = None if end is None else datetime.fromisoformat(end)
            given: dict[str, Any] = dict(
                keys=keys, start=lower, end=upper, tolerance=Decimal("0.01"), catalog=catalog
            )
            from_rollup = await reconcile(db, **given)
            from_ledger = await reconcile(db, **given, use_rollup=False)
            assert from_rollup, (keys, start, end)
            assert _exact(from_rollup) == _exact(from_ledger), (keys, start, end)
        await assert_rollups_equal_ledger(db)

    await both_ways()
    # A correction: acme/cachey gets its cache price (0.20), acme/unknown a price (0.50 in).
    # The unknown events are priced at once; re-rating re-prices the cached ones.
    correction = {
        "effective_from": "2026-11-01T00:00:00Z",
        "parent": 2,
        "models": [
            {"id": "acme/cachey", "name": "Cachey", "tier": "standard", "input": "2.00",
             "output": "10.00", "cache_read": "0.20"},
            {"id": "acme/unknown", "name": "Unknown", "tier": "fast", "input": "0.50",
             "output": "0.50"},
        ],
    }  # fmt: skip
    version = await recorded.post("/v1/catalog/versions", json=correction)
    assert version.status_code == 201, version.text
    assert version.json()["repriced_events"] == 2
    rerated = await recorded.post("/v1/catalog/rerate", json={"since": "2026-11-01T00:00:00Z"})
    assert rerated.status_code == 200, rerated.text
    assert rerated.json()["events_changed"] == 39  # the cached calls, on both providers

    await both_ways()
    answer = await reconciliation(recorded, group_by="model,provider")
    # 2,000 × 2.00 + 8,000 × 0.20 + 1,000 × 10.00 = 15,600 per 1M = 0.0156: the provider's
    # bill; unknown: 1,000 × 0.50 = 0.0005 each, also the provider's. The ledger's net cost
    # per event (charge, reversal, re-booking) is what is compared.
    changed = [r for r in rows_of(answer) if r[0]["model"] in ("acme/cachey", "acme/unknown")]
    assert changed == [
        ({"model": "acme/cachey", "provider": "openrouter"}, 20, 20, 0, "0.312", "0.312", "0",
         "0", "0", False, []),
        ({"model": "acme/cachey", "provider": "vertex"}, 19, 19, 0, "0.2964", "0.2964", "0",
         "0", "0", False, []),
        ({"model": "acme/unknown", "provider": "openrouter"}, 2, 2, 0, "0.001", "0.001", "0",
         "0", "0", False, []),
    ]  # fmt: skip


async def test_the_tolerance_is_a_setting(database_url: str, admin_key: str) -> None:
    # 0.49: cachey's −0.48 is within it now, azure's 0.5 still beyond
    app = create_app(settings_for(database_url, LUC_RECONCILIATION_TOLERANCE="0.49"))
    async with AsyncTestClient(app=app) as client:
        client.headers.update(bearer(admin_key))
        await record(client)
        answer = await reconciliation(client, group_by="model,provider")
    assert answer["tolerance"] == "0.49"
    assert [(r["model"], r["provider"]) for r in answer["rows"] if r["drift"]] == [
        ("acme/steady", "azure")
    ]


@pytest.mark.parametrize("value", ["1%", "-0.01", "1e-2", "0,01"])
def test_a_tolerance_that_is_not_a_decimal_share_stops_the_service(value: str) -> None:
    with pytest.raises(SettingsError, match="LUC_RECONCILIATION_TOLERANCE must be a decimal"):
        load_settings({"LUC_RECONCILIATION_TOLERANCE": value})


# /metrics ----------------------------------------------------------------------------------


def samples(exposition: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(exposition)
        for s in family.samples
        if s.name == name
    }


async def test_metrics_carry_the_drift_ratio_of_the_current_and_previous_utc_day(
    client: Any,
) -> None:
    version = await client.post("/v1/catalog/versions", json=VERSION)
    assert version.status_code == 201, version.text
    # Clear of the day's end: the window the metrics read is the one the events were put in.
    today = day_start(await clear_of_end("day"))
    yesterday, long_ago = today - timedelta(days=1), today - timedelta(days=3)
    events = [
        # today, from midnight on: 20 at −0.48, as on D1 above
        *(cached(f"m-today-{i}", instant_text(today + timedelta(seconds=i)), "openrouter")
          for i in range(20)),
        # yesterday: 5 on vertex at the same ratio, too few to drift
        *(cached(f"m-yday-{i}", instant_text(yesterday + timedelta(hours=12, seconds=i)),
                 "vertex") for i in range(5)),
        # three days ago, outside the window: it would move openrouter's ratio if counted
        call("m-old", instant_text(long_ago), "acme/cachey", "openrouter", input_tokens=10_000,
             output_tokens=1_000, provider_cost_usd="9"),
        # today, free: a cost of 0 has no ratio, but its events are counted
        call("m-free", instant_text(today), "acme/free", "openrouter", input_tokens=1_000,
             output_tokens=0, provider_cost_usd="0.0001"),
    ]  # fmt: skip
    answer = await client.post("/v1/events/batch", json={"events": events})
    assert answer.json()["accepted"] == 27, answer.text

    scraped = await client.get("/metrics")
    assert scraped.status_code == 200, scraped.text
    cachey_openrouter = (("model", "acme/cachey"), ("provider", "openrouter"))
    cachey_vertex = (("model", "acme/cachey"), ("provider", "vertex"))
    free = (("model", "acme/free"), ("provider", "openrouter"))
    # 20 × (0.0156 − 0.03) / (20 × 0.03) = −0.48; 5 × … the same on vertex
    assert samples(scraped.text, "luc_catalog_drift_ratio") == {
        cachey_openrouter: -0.48,
        cachey_vertex: -0.48,
    }
    assert samples(scraped.text, "luc_catalog_drift_events") == {
        cachey_openrouter: 20.0,
        cachey_vertex: 5.0,
        free: 1.0,
    }
    assert samples(scraped.text, "luc_reconciliation_tolerance") == {(): 0.01}
    # REST's drift flag, beside: openrouter drifts (20 events), vertex has too few.
    assert samples(scraped.text, "luc_catalog_drifting") == {
        cachey_openrouter: 1.0,
        cachey_vertex: 0.0,
        free: 0.0,
    }

    # The same window over REST: the same figures, exactly, and the drift with its reason.
    window = await reconciliation(
        client, group_by="model,provider", **{"from": instant_text(yesterday)}
    )
    assert rows_of(window) == [
        ({"model": "acme/cachey", "provider": "openrouter"}, 20, 20, 0, "0.6", "0.312", "0",
         "-0.288", "-0.48", True, [(CACHE_REASON, 20)]),
        ({"model": "acme/cachey", "provider": "vertex"}, 5, 5, 0, "0.15", "0.078", "0",
         "-0.072", "-0.48", False, []),
        ({"model": "acme/free", "provider": "openrouter"}, 1, 1, 0, "0", "0.0001", "0",
         "0.0001", None, False, []),
    ]  # fmt: skip


# The migration ---------------------------------------------------------------------------

LEDGER_ROW = """
INSERT INTO ledger_entries (event_id, kind, job_id, agent, model, provider, tier,
    catalog_version, occurred_at, billing_day, input_tokens, cached_input_tokens,
    cache_write_tokens, output_tokens, reasoning_tokens, event_count, unpriced_count,
    cost_usd, provider_cost_usd)
VALUES ($1, $2, 'job-old', 'ORACLE', $3, 'openrouter', NULL, $4, $5::timestamptz,
        ($5::timestamptz AT TIME ZONE 'UTC')::date,
        1000, 0, 0, 100, 0, $6, $7, $8::numeric, $9::numeric)
"""


async def test_migrating_a_ledger_with_history_fills_the_rollup_from_it(admin_url: str) -> None:
    at = datetime(2026, 11, 10, 10, tzinfo=UTC)
    async with new_database(admin_url, "luc_rec_migration") as url:
        await asyncio.to_thread(migrate_sync, url, "0012_actual_cost")
        async with connected(url) as conn:
            for row in (
                # (event, kind, model, version, event count, unpriced count, cost, provider)
                ("e1", "charge", "acme/m", 1, 1, 0, "0.03", "0.0156"),
                ("e2", "charge", "acme/m", 1, 1, 0, "0.02", None),  # not reported
                # unpriced, then priced by version 2: reversal and re-booking
                ("e3", "charge", "acme/m", None, 1, 1, None, "0.0005"),
                ("e3", "adjustment", "acme/m", None, -1, -1, None, "-0.0005"),
                ("e3", "adjustment", "acme/m", 2, 1, 0, "0.0005", "0.0005"),
                ("e4", "charge", "acme/u", None, 1, 1, None, "0.001"),  # still unpriced
            ):
                event, kind, model, version, count, unpriced, cost, paid = row
                await conn.execute(
                    LEDGER_ROW, event, kind, model, version, at, count, unpriced, cost, paid
                )
        await asyncio.to_thread(migrate_sync, url)
        async with connected(url) as conn:
            rows = [
                tuple(r) for r in await conn.fetch(
                    "SELECT day::text, model, provider, events, reported_events,"
                    " unpriced_reported_events, cost_usd, provider_cost_usd,"
                    " unpriced_provider_cost_usd"
                    " FROM rollup_reconciliation_days ORDER BY model"
                )
            ]  # fmt: skip
            # e1 and e3 (priced now) are compared: 0.03 + 0.0005 against 0.0156 + 0.0005;
            # e3's unpriced charge and its reversal cancel out (0.0005 − 0.0005)
            assert rows == [
                ("2026-11-10", "acme/m", "openrouter", 3, 2, 0, Decimal("0.0305"),
                 Decimal("0.0161"), 0),
                ("2026-11-10", "acme/u", "openrouter", 1, 1, 1, 0, 0, Decimal("0.001")),
            ]  # fmt: skip
            assert await conn.fetchval(
                "SELECT count(*) FROM pg_indexes WHERE indexname = 'ledger_entries_upstream_model'"
            )
        # and back: the downgrade removes what the upgrade made
        config = _alembic_config(url)
        await asyncio.to_thread(command.downgrade, config, "0012_actual_cost")
        async with connected(url) as conn:
            assert await conn.fetchval("SELECT to_regclass('rollup_reconciliation_days')") is None

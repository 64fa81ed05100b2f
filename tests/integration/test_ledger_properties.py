"""Properties of the ledger under random traffic (SPEC §2–4), on real PostgreSQL.

Hypothesis draws streams of events over several jobs, agents and models (one unknown),
with replays, replays written differently, conflicting reuses of ids and invalid events,
cut into batches of random sizes, across catalog versions that change mid-stream, and
between batches new versions (which price the unpriced events they can) and re-ratings
since a random instant. A model written here predicts each answer; afterwards the tables
must hold exactly what it says:

- each batch answer (per event and counts) is what the model expects;
- each accepted id has one stored event (its first content) and exactly one charge;
- each charge's cost equals a Decimal computation made here from the catalog prices of the
  version in force at its ``occurred_at``, and each event's live booking what the model's
  re-ratings say;
- three costs per entry and per event: the provider's reported cost, the catalog's, and the
  actual cost (the reported one where present, else the catalog's); each re-rating moves
  the catalog and actual totals by what the model predicts;
- the customers' price (SPEC §11): jobs of two customers on two rate plans (one on a
  catalog basis whose versions change mid-stream, with and without re-pricing; one on an
  actual basis with its own price for one model) and a job without one; a job gets its
  customer from its first event naming it, which re-prices what it recorded before. Each
  event's live booking is priced, for its job's customer, as a Decimal computation made
  here from the plan versions says; each re-rating and re-pricing moves the price total
  by what the model predicts;
- every rollup's three costs, price, counts and tokens equal the sums of its ledger
  entries, exactly;
- prepaid credits (SPEC §12) are drawn beside the ledger and never change it: acme holds
  more than any stream uses (each of its events then holds exactly its price in credits,
  through every re-pricing and re-rating), beta a few small grants the stream may use up;
  each grant holds its amount less its draws, never below zero, and each entry draws within
  its price.

Each example runs on its own database cloned from the migrated template."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, localcontext
from typing import Any

import asyncpg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar.testing import AsyncTestClient

from service.app import create_app
from service.catalog.service import NewCatalogVersion, create_version, load_catalog
from service.customers.credits import NewGrant, grant_credits
from service.customers.models import NewCustomer, NewPlanVersion
from service.customers.plans import add_plan_version, create_plan
from service.customers.service import create_customer
from service.db import connect
from service.pricing.models import NewLongContextPrice, NewModelPrice
from service.recording.repricing import reprice_plan
from service.recording.rerating import create_version_and_price_unpriced, rerate_since
from tests.support.databases import new_database
from tests.support.events import wire_event
from tests.support.ledger_truth import (
    AIMS_EFFECTIVE_FROM,
    ALIASES,
    LONG_CONTEXT,
    PRICES,
    STORED_EVENTS,
    TOKEN_FIELDS,
    cost_at,
    rollup_differences,
    with_defaults,
)
from tests.support.settings import settings_for

D = Decimal

# Catalog ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Version:
    """The test's own copy of a catalog version: prices with SPEC §3's defaults applied."""

    id: int
    effective_from: datetime
    prices: dict[str, dict[str, Decimal]]
    aliases: dict[str, str]
    long_context: dict[str, list[tuple[int, dict[str, Decimal]]]] = field(default_factory=dict)
    """Model id → (min_input_tokens, prices) ascending: SPEC §3's long-context entries."""

    def price_at(self, model: str, input_tokens: int) -> dict[str, Decimal] | None:
        """The prices of a call of ``input_tokens``: those of the highest long-context
        entry it reaches, else the model's."""
        price = self.prices.get(model)
        for threshold, long_price in self.long_context.get(model, []):
            if price is not None and input_tokens >= threshold:
                price = long_price
        return price


V1 = Version(1, AIMS_EFFECTIVE_FROM, PRICES, ALIASES, LONG_CONTEXT)
T0 = datetime(2025, 6, 1, tzinfo=UTC)  # the middle of the event range: version 2 starts
T1 = T0 + timedelta(days=3)  # versions 3 and 4 start together; 4 is created last and wins
EARLIEST = T0 - timedelta(days=3)
LATEST = T0 + timedelta(days=6)

FLASH = "google/gemini-3.0-flash"
SONNET = "anthropic/claude-sonnet-4.5"
GPT = "openai/gpt-5.2"
LLAMA = "meta-llama/llama-3.3-70b-instruct"
UNKNOWN = "vendor/unknown-x"
# As the gateway names them: an alias, ids, a model only some versions have, and one none has.
SENT_MODELS = ("gemini-3.0-flash", FLASH, SONNET, GPT, LLAMA, UNKNOWN)
# (UNKNOWN's tier is only used by the version that re-rating adds in the last test.)
TIERS = {FLASH: "fast", SONNET: "standard", GPT: "premium", LLAMA: "economy", UNKNOWN: "standard"}

# Version 3 is shadowed by version 4 (same effective_from, created later): never used.
V3_PRICES = {m: with_defaults(D(99), D(99)) for m in (FLASH, SONNET, GPT, LLAMA)}
# Version 4: every model back, explicit class prices, and no alias (the short name of
# gemini-3.0-flash is unknown from T1 on).
V4_PRICES = {
    FLASH: with_defaults(D("0.125"), D("0.5"), D("0.0125"), D("0.15625"), D("0.75")),
    SONNET: with_defaults(D("2.9"), D("14.1"), D("0.29"), D("3.6"), D("14.1"), D("0.0001")),
    GPT: with_defaults(D("4.75"), D("19"), reasoning=D("23.5")),
    LLAMA: with_defaults(D("0.09"), D("0.09"), per_request=D("0.00002")),
}


def new_version(
    effective_from: datetime,
    prices: dict[str, dict[str, Decimal]],
    aliases: dict[str, str],
    long_context: dict[str, list[tuple[int, dict[str, Decimal]]]] | None = None,
) -> NewCatalogVersion:
    return NewCatalogVersion(
        effective_from=effective_from,
        label=None,
        models=[
            NewModelPrice(
                model_id=model,
                name=model,
                tier=TIERS[model],
                input=p["input"],
                output=p["output"],
                cache_read=p["cache_read"],
                cache_write=p["cache_write"],
                reasoning=p["reasoning"],
                per_request=p["per_request"],
                long_context=tuple(
                    NewLongContextPrice(
                        min_input_tokens=threshold,
                        input=lp["input"],
                        output=lp["output"],
                        cache_read=lp["cache_read"],
                        cache_write=lp["cache_write"],
                        reasoning=lp["reasoning"],
                    )
                    for threshold, lp in (long_context or {}).get(model, [])
                ),
            )
            for model, p in prices.items()
        ],
        aliases=aliases,
    )


def in_force(versions: list[Version], when: datetime) -> Version | None:
    """SPEC §3: latest effective_from not after ``when``; on a tie the one created last."""
    candidates = [v for v in versions if v.effective_from <= when]
    return max(candidates, key=lambda v: (v.effective_from, v.id)) if candidates else None


def expected_charge(
    versions: list[Version], content: Content
) -> tuple[int | None, str, Decimal | None]:
    """(version id, catalog model id, cost) of an event, straight from SPEC §3; a stub
    answer (no LLM called) costs nothing once its model is known."""
    version = in_force(versions, content.occurred_at)
    if version is None:
        return None, content.model, None
    model = version.aliases.get(content.model, content.model)
    price = version.price_at(model, content.input_tokens)
    if price is None:
        return None, model, None
    if content.provider == "stub":
        return version.id, model, Decimal(0)
    return version.id, model, cost_at(price, {n: getattr(content, n) for n in TOKEN_FIELDS})


# Customers and rate plans ---------------------------------------------------------------------

# Each job has one customer, so no event names another than its job's: job-a is acme's,
# job-b beta's (whether or not its events name it: the first that does gives it), and
# job-c nobody's (no LUC_DEFAULT_PLAN: its price is the catalog cost).
JOB_CUSTOMERS: dict[str, str | None] = {"job-a": "acme", "job-b": "beta", "job-c": None}
CUSTOMER_PLANS = {"acme": "p-acme", "beta": "p-beta"}


@dataclass(frozen=True)
class PlanVersionModel:
    """The test's own copy of a rate plan version (SPEC §11)."""

    id: int
    effective_from: datetime
    basis: str
    markup: Decimal
    per_request: Decimal = Decimal(0)
    own: dict[str, dict[str, Decimal]] = field(default_factory=dict)
    """Model id → its prices (defaults applied), no long context."""


def plan_in_force(versions: list[PlanVersionModel], when: datetime) -> PlanVersionModel | None:
    """As catalog versions: the latest effective_from not after ``when``, ties to the last."""
    candidates = [v for v in versions if v.effective_from <= when]
    return max(candidates, key=lambda v: (v.effective_from, v.id)) if candidates else None


# A plan's first version: effective from, basis, markup, per request, its own model prices.
FirstVersion = tuple[datetime, str, Decimal, Decimal, dict[str, dict[str, Decimal]]]
# p-acme: 25 % over the catalog cost from before any event; versions come mid-stream.
ACME_FIRST: FirstVersion = (EARLIEST - timedelta(days=1), "catalog", D("0.25"), D(0), {})
# p-beta: 10 % over the actual cost plus 0.001 a request, and its own Sonnet price.
BETA_OWN = {SONNET: with_defaults(D("2.5"), D("11"), D("0.2"))}
BETA_FIRST = (EARLIEST - timedelta(days=1), "actual", D("0.10"), D("0.001"), BETA_OWN)


# Events -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Content:
    """What makes an event's content; equal contents under one id are a duplicate."""

    occurred_at: datetime
    job_id: str
    agent: str
    provider: str
    model: str
    input_tokens: int
    cached_input_tokens: int
    cache_write_tokens: int
    output_tokens: int
    reasoning_tokens: int
    provider_cost_usd: Decimal | None
    status: str
    attributes: tuple[tuple[str, int], ...] | None
    names_customer: bool = False
    """The event names its job's customer (part of its content, as on the wire)."""

    @property
    def customer_id(self) -> str | None:
        return JOB_CUSTOMERS[self.job_id] if self.names_customer else None


@dataclass(frozen=True)
class Spelling:
    """How an event is written on the wire; any spelling of one content is the same event."""

    offset_minutes: int = 0
    spell_out_defaults: bool = False
    pad_cost: bool = False


@dataclass(frozen=True)
class Sent:
    event_id: str
    content: Content
    spelling: Spelling
    breakage: str | None = None
    """A way this event is made invalid, or ``None``."""


BREAKAGES = (
    "negative-output",
    "reasoning-above-output",
    "cached-above-input",
    "no-offset",
    "far-future",
    "sets-cost",
    "count-as-string",
)


def wire(sent: Sent) -> dict[str, Any]:
    c, s = sent.content, sent.spelling
    offset = timezone(timedelta(minutes=s.offset_minutes))
    event = wire_event(
        sent.event_id,
        occurred_at=c.occurred_at.astimezone(offset).isoformat(),
        job_id=c.job_id,
        agent=c.agent,
        provider=c.provider,
        model=c.model,
        input_tokens=c.input_tokens,
        output_tokens=c.output_tokens,
    )
    for name in ("cached_input_tokens", "cache_write_tokens", "reasoning_tokens"):
        if getattr(c, name) or s.spell_out_defaults:
            event[name] = getattr(c, name)
    if c.provider_cost_usd is not None:
        text = format(c.provider_cost_usd, "f")
        if s.pad_cost:  # 0.25 → 0.250, 3 → 3.0: the same amount
            text += "0" if "." in text else ".0"
        event["provider_cost_usd"] = text
    if c.status != "ok" or s.spell_out_defaults:
        event["status"] = c.status
    if c.attributes is not None:
        event["attributes"] = dict(c.attributes)
    if c.customer_id is not None:
        event["customer_id"] = c.customer_id
    breakages: dict[str | None, dict[str, Any]] = {
        None: {},
        "negative-output": {"output_tokens": -1},
        "reasoning-above-output": {"reasoning_tokens": c.output_tokens + 1},
        "cached-above-input": {"cached_input_tokens": c.input_tokens + 1},
        "no-offset": {"occurred_at": c.occurred_at.replace(tzinfo=None).isoformat()},
        "far-future": {"occurred_at": "2999-01-01T00:00:00Z"},
        "sets-cost": {"cost_usd": "0"},
        "count-as-string": {"input_tokens": str(c.input_tokens)},
    }
    return {**event, **breakages[sent.breakage]}


def instants() -> st.SearchStrategy[datetime]:
    boundaries = st.sampled_from(
        [T0, T1, T0 - timedelta(microseconds=1), T1 - timedelta(microseconds=1), EARLIEST]
    )
    anywhere = st.integers(0, int((LATEST - EARLIEST).total_seconds()) * 1000).map(
        lambda ms: EARLIEST + timedelta(milliseconds=ms)
    )
    return st.one_of(boundaries, anywhere, anywhere, anywhere)


@st.composite
def contents(draw: st.DrawFn) -> Content:
    input_tokens = draw(st.integers(0, 2_000_000))
    cached = draw(st.integers(0, input_tokens))
    written = draw(st.integers(0, input_tokens - cached))
    output_tokens = draw(st.integers(0, 200_000))
    reasoning = draw(st.integers(0, output_tokens))
    cost = draw(
        st.none()
        | st.builds(lambda n, k: D(n).scaleb(-k), st.integers(0, 10**9), st.integers(0, 12))
    )
    attributes = draw(
        st.none()
        | st.lists(
            st.tuples(st.sampled_from(["n", "route", "try"]), st.integers(-5, 5)), max_size=2
        ).map(lambda kv: tuple(sorted(dict(kv).items())))
    )
    job_id = draw(st.sampled_from(["job-a", "job-b", "job-c"]))
    return Content(
        occurred_at=draw(instants()),
        job_id=job_id,
        agent=draw(st.sampled_from(["ACHEEVY", "Boomer_Ang", "ORACLE", "ByteRover"])),
        provider=draw(st.sampled_from(["openrouter", "vertex", "stub"])),
        model=draw(st.sampled_from(SENT_MODELS)),
        input_tokens=input_tokens,
        cached_input_tokens=cached,
        cache_write_tokens=written,
        output_tokens=output_tokens,
        reasoning_tokens=reasoning,
        provider_cost_usd=cost,
        status=draw(st.sampled_from(["ok", "ok", "error"])),
        attributes=attributes,
        # job-c has no customer to name: its events never name one.
        names_customer=JOB_CUSTOMERS[job_id] is not None and draw(st.booleans()),
    )


spellings = st.builds(
    Spelling,
    offset_minutes=st.sampled_from([0, 0, 120, -300, 330]),
    spell_out_defaults=st.booleans(),
    pad_cost=st.booleans(),
)


def a_price() -> st.SearchStrategy[Decimal]:
    """Up to 6 decimal places, up to 100 USD per 1M tokens."""
    return st.builds(lambda n, k: D(n).scaleb(-k), st.integers(0, 100_000_000), st.integers(0, 6))


@st.composite
def v2_prices(draw: st.DrawFn) -> dict[str, dict[str, Decimal]]:
    """Version 2 (from T0): random prices for three models; LLAMA is dropped."""
    optional = st.none() | a_price()
    return {
        model: with_defaults(
            draw(a_price()),
            draw(a_price()),
            draw(optional),
            draw(optional),
            draw(optional),
            draw(st.none() | a_price().map(lambda p: p / 1000)),
        )
        for model in (FLASH, SONNET, GPT)
    }


@dataclass(frozen=True)
class Rerate:
    """A catalog version created mid-stream (it prices the unpriced events it can at once),
    then, when ``since`` is set, a re-rating of every event since then."""

    effective_from: datetime
    prices: dict[str, dict[str, Decimal]]
    aliases: dict[str, str]
    since: datetime | None
    long_context: dict[str, list[tuple[int, dict[str, Decimal]]]] = field(default_factory=dict)


@dataclass(frozen=True)
class PlanChange:
    """A version of p-acme created mid-stream (new events are priced by it at once), then,
    when ``since`` is set, the plan's past events re-priced since then."""

    effective_from: datetime
    markup: Decimal
    since: datetime | None


Step = list[Sent] | Rerate | PlanChange


@dataclass
class Plan:
    v2: dict[str, dict[str, Decimal]]
    steps: list[Step]
    beta_credits: list[Decimal] = field(default_factory=list)
    """beta's prepaid grants: small, so the stream may use them up (acme's never runs out)."""


@st.composite
def rerates(draw: st.DrawFn) -> Rerate:
    """Random prices for some models (the unknown one included, so its events can be
    priced), in force from a boundary of the event range, with or without a re-rating."""
    optional = st.none() | a_price()
    models = draw(st.lists(st.sampled_from([FLASH, SONNET, GPT, LLAMA, UNKNOWN]), min_size=1))
    prices = {
        model: with_defaults(
            draw(a_price()), draw(a_price()), draw(optional), draw(optional), draw(optional)
        )
        for model in dict.fromkeys(models)
    }
    # Long-context entries (SPEC §3) for some of them: up to two thresholds within the
    # 0..2,000,000 input tokens ``contents`` draws, so calls land on each side of them.
    long_context = {}
    for model in prices:
        thresholds = draw(st.lists(st.integers(1, 2_000_000), max_size=2, unique=True))
        long_context[model] = sorted(
            (
                threshold,
                with_defaults(
                    draw(a_price()),
                    draw(a_price()),
                    draw(optional),
                    draw(optional),
                    draw(optional),
                    per_request=prices[model]["per_request"],
                ),
            )
            for threshold in thresholds
        )
    boundaries = [EARLIEST, T0, T1, T0 + timedelta(days=1)]
    return Rerate(
        effective_from=draw(st.sampled_from(boundaries)),
        prices=prices,
        # An alias must name a model of its version.
        aliases=draw(st.sampled_from([V1.aliases, {}])) if FLASH in prices else {},
        since=draw(st.none() | instants()),
        long_context={m: entries for m, entries in long_context.items() if entries},
    )


@st.composite
def plans(draw: st.DrawFn) -> Plan:
    sent: list[Sent] = []
    for _ in range(draw(st.integers(1, 36))):
        kind = draw(
            st.sampled_from(["new", "new", "new", "reuse-id", "replay", "respell", "invalid"])
        )
        if kind in ("replay", "respell", "reuse-id") and sent:
            earlier = draw(st.sampled_from(sent))
            if kind == "replay":
                sent.append(earlier)
            elif kind == "respell":
                sent.append(Sent(earlier.event_id, earlier.content, draw(spellings)))
            else:
                sent.append(Sent(earlier.event_id, draw(contents()), draw(spellings)))
            continue
        event_id = f"gen-{draw(st.integers(0, 30)):02d}"
        breakage = draw(st.sampled_from(BREAKAGES)) if kind == "invalid" else None
        sent.append(Sent(event_id, draw(contents()), draw(spellings), breakage))
    steps: list[Step] = []
    while sent:
        size = draw(st.integers(1, 8))
        steps.append(sent[:size])
        sent = sent[size:]
        if draw(st.integers(0, 3)) == 0:
            steps.append(draw(rerates()))
        if draw(st.integers(0, 4)) == 0:
            steps.append(draw(plan_changes()))
    beta_credits = draw(
        st.lists(
            st.builds(lambda n, k: D(n).scaleb(-k), st.integers(1, 10**6), st.integers(0, 8)),
            max_size=2,
        )
    )
    return Plan(v2=draw(v2_prices()), steps=steps, beta_credits=beta_credits)


@st.composite
def plan_changes(draw: st.DrawFn) -> PlanChange:
    markup = draw(st.builds(lambda n: D(n).scaleb(-3), st.integers(0, 2000)))
    boundaries = [EARLIEST, T0, T1, T0 + timedelta(days=1)]
    return PlanChange(
        effective_from=draw(st.sampled_from(boundaries)),
        markup=markup,
        since=draw(st.none() | instants()),
    )


# The model ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Booking:
    """How an event stands: the version, the catalog model id and the cost that price it."""

    version: int | None
    model: str
    cost: Decimal | None


def booking(versions: list[Version], content: Content) -> Booking:
    return Booking(*expected_charge(versions, content))


def actual_of(content: Content, booked: Booking) -> Decimal | None:
    """SPEC §3: the provider's reported cost where present, else the catalog's."""
    return booked.cost if content.provider_cost_usd is None else content.provider_cost_usd


@dataclass
class Ledger:
    """What the service must hold: the first content of each accepted id, its first
    booking (the charge) and how it stands after re-ratings, each job's customer, each
    event's price for it, and the rate plans' versions."""

    stored: dict[str, Content] = field(default_factory=dict)
    charged: dict[str, Booking] = field(default_factory=dict)
    booked: dict[str, Booking] = field(default_factory=dict)
    customers: dict[str, str | None] = field(default_factory=dict)
    """Job → its customer, once an event named it."""
    plans: dict[str, list[PlanVersionModel]] = field(default_factory=dict)
    price: dict[str, Decimal | None] = field(default_factory=dict)

    def price_now(self, event_id: str) -> Decimal | None:
        """SPEC §11, by hand: the event's price for its job's customer under that customer's
        plan version in force at the event; no plan: the catalog cost; a stub answer: its
        cost (nothing)."""
        content, booked = self.stored[event_id], self.booked[event_id]
        customer = self.customers.get(content.job_id)
        plan = None
        if customer is not None and content.provider != "stub":
            plan = plan_in_force(self.plans[CUSTOMER_PLANS[customer]], content.occurred_at)
        if plan is None:
            return booked.cost
        with localcontext() as exact:
            exact.prec = 100
            own = plan.own.get(booked.model)
            if own is not None:
                return cost_at(own, {n: getattr(content, n) for n in TOKEN_FIELDS})
            basis = booked.cost if plan.basis == "catalog" else actual_of(content, booked)
            return None if basis is None else basis * (1 + plan.markup) + plan.per_request

    def claim(self, step: list[Sent]) -> list[str]:
        """The jobs the batch gives their first customer: a valid event of a new id, first
        under its id in the batch, naming it. What they recorded before is re-priced."""
        claimed, seen = [], set()
        for sent in step:
            if sent.breakage is not None or sent.event_id in seen:
                continue
            seen.add(sent.event_id)
            job = sent.content.job_id
            if sent.event_id in self.stored or self.customers.get(job) is not None:
                continue
            if sent.content.customer_id is not None:
                self.customers[job] = sent.content.customer_id
                claimed.append(job)
        return claimed

    def reprice_jobs(self, jobs: list[str]) -> None:
        for event_id, content in self.stored.items():
            if content.job_id in jobs:
                self.price[event_id] = self.price_now(event_id)

    def outcome(self, sent: Sent, versions: list[Version]) -> str:
        if sent.breakage is not None:
            return "rejected"
        first = self.stored.get(sent.event_id)
        if first is None:
            self.stored[sent.event_id] = sent.content
            self.charged[sent.event_id] = booking(versions, sent.content)
            self.booked[sent.event_id] = self.charged[sent.event_id]
            self.price[sent.event_id] = self.price_now(sent.event_id)
            return "accepted"
        return "duplicate" if first == sent.content else "conflict"

    def totals(self) -> tuple[Decimal, Decimal, Decimal]:
        """(catalog cost, actual cost, price) of everything booked; unknown counts as 0."""
        cost = sum((b.cost or D(0) for b in self.booked.values()), D(0))
        actual = sum((actual_of(self.stored[i], b) or D(0) for i, b in self.booked.items()), D(0))
        price = sum((p or D(0) for p in self.price.values()), D(0))
        return cost, actual, price

    def rebook(self, event_id: str, new: Booking) -> None:
        """A re-rating's new booking, priced for the job's customer by the plans now."""
        self.booked[event_id] = new
        self.price[event_id] = self.price_now(event_id)

    def rerate(self, versions: list[Version], since: datetime | None) -> None:
        """What a new version and a re-rating since ``since`` do (``plan_rerating``)."""
        for event_id, old in self.booked.items():
            content = self.stored[event_id]
            new = booking(versions, content)
            if old.cost is None and new.cost is not None:
                self.rebook(event_id, new)  # priced at once by the version's creation
        if since is None:
            return
        for event_id, old in self.booked.items():
            content = self.stored[event_id]
            if content.occurred_at < since:
                continue
            new = booking(versions, content)
            # The same money for the same model keeps its booking (and its version).
            if old.cost is not None and (new.cost, new.model) == (old.cost, old.model):
                continue
            self.rebook(event_id, new)

    def reprice(self, plan_id: str, since: datetime) -> None:
        """What ``reprice_plan`` does: the plan's customers' events since ``since`` priced
        as their plans say now."""
        for event_id, content in self.stored.items():
            customer = self.customers.get(content.job_id)
            if customer is None or CUSTOMER_PLANS[customer] != plan_id:
                continue
            if content.occurred_at >= since:
                self.price[event_id] = self.price_now(event_id)


# Checks on the tables ------------------------------------------------------------------------

BOOKINGS = """
SELECT event_id, catalog_version, model, tier, sum(cost_usd) AS cost_usd,
       sum(actual_cost_usd) AS actual_cost_usd, sum(unpriced_count) AS unpriced,
       customer_id, sum(price_usd) AS price_usd
FROM ledger_entries
GROUP BY event_id, catalog_version, model, tier, customer_id, price_usd IS NULL
HAVING sum(event_count) = 1
"""
EVENT_SUMS = """
SELECT event_id, sum(event_count) AS events, COALESCE(sum(cost_usd), 0) AS cost_usd,
       sum(provider_cost_usd) AS provider_cost_usd,
       COALESCE(sum(actual_cost_usd), 0) AS actual_cost_usd
FROM ledger_entries
GROUP BY event_id
"""


async def check_tables(conn: asyncpg.Connection, model: Ledger) -> None:
    # one stored event per accepted id, holding its first content
    rows = await conn.fetch(
        "SELECT event_id, occurred_at, job_id, model, input_tokens, output_tokens,"
        f" provider_cost_usd FROM {STORED_EVENTS}"
    )
    assert {r["event_id"] for r in rows} == set(model.stored)
    for r in rows:
        first = model.stored[r["event_id"]]
        assert (r["occurred_at"], r["job_id"], r["model"]) == (
            first.occurred_at,
            first.job_id,
            first.model,
        )
        assert (r["input_tokens"], r["output_tokens"]) == (first.input_tokens, first.output_tokens)
        assert r["provider_cost_usd"] == first.provider_cost_usd

    # exactly one charge per accepted id, priced as SPEC §3 says at the time
    entries = await conn.fetch(
        "SELECT event_id, kind, catalog_version, model, cost_usd, provider_cost_usd,"
        " actual_cost_usd, unpriced_count, event_count, billing_day, tier FROM ledger_entries"
    )
    charges = [e for e in entries if e["kind"] == "charge"]
    assert sorted(e["event_id"] for e in charges) == sorted(model.stored)
    for e in charges:
        content = model.stored[e["event_id"]]
        charged = model.charged[e["event_id"]]
        assert (e["catalog_version"], e["model"], e["cost_usd"]) == (
            charged.version,
            charged.model,
            charged.cost,
        ), content
        assert e["unpriced_count"] == (1 if charged.cost is None else 0)
        assert e["event_count"] == 1
        assert e["billing_day"] == content.occurred_at.astimezone(UTC).date()
        assert e["tier"] == (TIERS[charged.model] if charged.cost is not None else None)
    # every entry, charge or adjustment: its reported cost signed like it, and its actual
    # cost the reported one where present, else the catalog's
    for e in entries:
        reported = model.stored[e["event_id"]].provider_cost_usd
        signed = None if reported is None else reported * e["event_count"]
        assert e["provider_cost_usd"] == signed, e
        assert e["actual_cost_usd"] == (e["cost_usd"] if signed is None else signed), e
    # each event's live booking, and the sums of all its entries: the three costs
    live = {r["event_id"]: r for r in await conn.fetch(BOOKINGS)}
    assert set(live) == set(model.stored)
    for event_id, r in live.items():
        booked, content = model.booked[event_id], model.stored[event_id]
        assert (r["catalog_version"], r["model"], r["cost_usd"]) == (
            booked.version,
            booked.model,
            booked.cost,
        ), (event_id, content)
        assert r["unpriced"] == (1 if booked.cost is None else 0)
        assert r["actual_cost_usd"] == actual_of(content, booked)
        # priced for its job's customer, at the price SPEC §11 gives it
        assert r["customer_id"] == model.customers.get(content.job_id), (event_id, content)
        assert r["price_usd"] == model.price[event_id], (event_id, content)
    # Over all of an event's entries an unknown cost counts as zero, as in the rollups (an
    # event re-rated from priced to unpriced nets its old booking out: 0, not NULL).
    for r in await conn.fetch(EVENT_SUMS):
        booked, content = model.booked[r["event_id"]], model.stored[r["event_id"]]
        assert r["events"] == 1
        assert r["cost_usd"] == (booked.cost or 0)
        assert r["provider_cost_usd"] == content.provider_cost_usd
        assert r["actual_cost_usd"] == (actual_of(content, booked) or 0)

    assert await rollup_differences(conn) == {}
    await check_credits(conn, model)


# More than any stream's price: acme's credits never run out, so each of its events holds
# exactly its price in credits, however often it was re-priced or re-rated.
ACME_CREDIT = D(10**9)

CREDIT_GRANTS = """
SELECT g.id, g.customer_id, g.amount_usd, g.remaining_usd,
       COALESCE((SELECT sum(amount_usd) FROM credit_draws AS d WHERE d.grant_id = g.id), 0)
           AS drawn
FROM credit_grants AS g
"""
# What each event holds of each customer's credits now, and its price for that customer.
CREDITS_BY_EVENT = """
SELECT d.event_id, d.customer_id, sum(d.amount_usd) AS held,
       (SELECT sum(e.price_usd) FROM ledger_entries AS e
        WHERE e.event_id = d.event_id AND e.customer_id = d.customer_id) AS price_usd
FROM credit_draws AS d
GROUP BY d.event_id, d.customer_id
"""
ENTRY_DRAWS = """
SELECT e.id, e.price_usd, sum(d.amount_usd) AS drawn
FROM credit_draws AS d JOIN ledger_entries AS e ON e.id = d.entry_id
GROUP BY e.id, e.price_usd
"""


async def check_credits(conn: asyncpg.Connection, model: Ledger) -> None:
    """Prepaid credits (SPEC §12), drawn beside the ledger: each grant holds its amount less
    its draws, never below zero nor above its amount; each entry draws within its price
    (a negative price gives back, within it); each event holds between nothing and its
    price; acme's events, whose credits never run out, hold exactly their price."""
    for g in await conn.fetch(CREDIT_GRANTS):
        assert g["remaining_usd"] == g["amount_usd"] - g["drawn"], dict(g)
        assert 0 <= g["remaining_usd"] <= g["amount_usd"], dict(g)
    for e in await conn.fetch(ENTRY_DRAWS):
        price, drawn = e["price_usd"], e["drawn"]
        assert price is not None and (0 < drawn <= price or price <= drawn < 0), dict(e)
    held = {(r["event_id"], r["customer_id"]): r for r in await conn.fetch(CREDITS_BY_EVENT)}
    for r in held.values():
        assert 0 <= r["held"] <= max(r["price_usd"] or 0, 0), dict(r)
    for event_id, content in model.stored.items():
        if model.customers.get(content.job_id) != "acme":
            continue
        price = model.price[event_id] or D(0)
        expected = price if price > 0 else D(0)
        found = held.get((event_id, "acme"))
        assert (found["held"] if found else D(0)) == expected, (event_id, content)


async def check_jobs(client: AsyncTestClient[Any], model: Ledger) -> None:
    """Each job over REST: the model's totals, to the last digit."""
    cost: dict[str, Decimal] = defaultdict(Decimal)
    actual: dict[str, Decimal] = defaultdict(Decimal)
    price: dict[str, Decimal] = defaultdict(Decimal)
    provider: dict[str, Decimal] = defaultdict(Decimal)
    counts: dict[str, list[int]] = defaultdict(lambda: [0] * 7)
    # The jobs some event of which knows its actual cost, and its price.
    actual_known: set[str] = set()
    price_known: set[str] = set()
    for event_id, content in model.stored.items():
        booked = model.booked[event_id]
        cost[content.job_id] += booked.cost or 0
        actual[content.job_id] += actual_of(content, booked) or 0
        price[content.job_id] += model.price[event_id] or 0
        if actual_of(content, booked) is not None:
            actual_known.add(content.job_id)
        if model.price[event_id] is not None:
            price_known.add(content.job_id)
        provider[content.job_id] += content.provider_cost_usd or 0
        tally = counts[content.job_id]
        tally[0] += 1
        tally[1] += booked.cost is None
        for i, name in enumerate(TOKEN_FIELDS, start=2):
            tally[i] += getattr(content, name)
    for job_id in ("job-a", "job-b", "job-c"):
        response = await client.get(f"/v1/jobs/{job_id}")
        if job_id not in counts:
            assert response.status_code == 404
            continue
        job = response.json()
        events, unpriced = counts[job_id][:2]
        # A job of unpriced events only has no known catalog cost: null, never "0".
        if unpriced == events:
            assert job["cost_usd"] is None
        else:
            assert D(job["cost_usd"]) == cost[job_id]
        # Null, never "0", when no event of the job knows it (SPEC §11).
        for name, summed, known in (
            ("actual_cost_usd", actual, actual_known),
            ("price_usd", price, price_known),
        ):
            if job_id in known:
                assert D(job[name]) == summed[job_id], name
            else:
                assert job[name] is None, name
        assert job["customer_id"] == model.customers.get(job_id)
        assert D(job["provider_cost_usd"]) == provider[job_id]
        got = [job["events"], job["unpriced_events"], *(job[n] for n in TOKEN_FIELDS)]
        assert got == counts[job_id]


# The property -------------------------------------------------------------------------------


async def run_rerate(
    conn: asyncpg.Connection, model: Ledger, versions: list[Version], step: Rerate
) -> None:
    """Create the step's version and re-rate; the summaries move each cost as the model
    does: the actual cost of an event with a reported cost never moves."""
    before = model.totals()
    created, priced = await create_version_and_price_unpriced(
        conn,
        new_version(step.effective_from, step.prices, step.aliases, step.long_context),
        default_plan=None,
    )
    versions.append(
        Version(created, step.effective_from, step.prices, step.aliases, step.long_context)
    )
    moved = [(priced.delta_usd, priced.actual_delta_usd, priced.price_delta_usd)]
    if step.since is not None:
        rerated = await rerate_since(conn, step.since, default_plan=None, dry_run=False, chunk=7)
        moved.append((rerated.delta_usd, rerated.actual_delta_usd, rerated.price_delta_usd))
    model.rerate(versions, step.since)
    after = model.totals()
    assert tuple(sum(m[i] for m in moved) for i in range(3)) == tuple(
        after[i] - before[i] for i in range(3)
    )


async def run_plan_change(conn: asyncpg.Connection, model: Ledger, step: PlanChange) -> None:
    """Add a p-acme version and re-price; the summary moves the price as the model does."""
    new = NewPlanVersion(effective_from=step.effective_from, basis="catalog", markup=step.markup)
    created = await add_plan_version(conn, "p-acme", new, await load_catalog(conn))
    model.plans["p-acme"].append(
        PlanVersionModel(created.id, step.effective_from, "catalog", step.markup)
    )
    if step.since is None:
        return
    before = model.totals()
    summary = await reprice_plan(
        conn, "p-acme", step.since, default_plan=None, dry_run=False, chunk=5
    )
    model.reprice("p-acme", step.since)
    assert summary.price_delta_usd == model.totals()[2] - before[2]
    again = await reprice_plan(conn, "p-acme", step.since, default_plan=None, dry_run=False)
    assert (again.events_changed, again.entries_appended) == (0, 0)


async def make_plans(
    conn: asyncpg.Connection, model: Ledger, beta_credits: list[Decimal] | None = None
) -> None:
    """p-acme and p-beta with their first versions, and the two customers on them; acme
    holds more prepaid credit than any stream can use, beta ``beta_credits``."""
    catalog = await load_catalog(conn)
    for plan_id, customer, (start, basis, markup, per_request, own) in (
        ("p-acme", "acme", ACME_FIRST),
        ("p-beta", "beta", BETA_FIRST),
    ):
        first = NewPlanVersion(
            effective_from=start,
            basis=basis,
            markup=markup,
            per_request_usd=per_request,
            models={m: {k: format(v, "f") for k, v in p.items()} for m, p in own.items()},
        )
        plan = await create_plan(conn, plan_id, plan_id, first, catalog)
        version = plan.versions[0].id
        model.plans[plan_id] = [PlanVersionModel(version, start, basis, markup, per_request, own)]
        await create_customer(conn, NewCustomer(id=customer, name=customer, plan_id=plan_id))
    now = datetime.now(UTC)
    await grant_credits(conn, "acme", NewGrant(amount_usd=ACME_CREDIT), now)
    for amount in beta_credits or []:
        await grant_credits(conn, "beta", NewGrant(amount_usd=amount), now)


async def run_plan(admin_url: str, template: str, plan: Plan) -> None:
    async with new_database(admin_url, "luc_prop", template) as url:
        conn = await connect(url)
        try:
            async with conn.transaction():
                v2 = await create_version(conn, new_version(T0, plan.v2, V1.aliases))
                v3 = await create_version(conn, new_version(T1, V3_PRICES, V1.aliases))
                v4 = await create_version(conn, new_version(T1, V4_PRICES, {}))
            versions = [
                V1,
                Version(v2, T0, plan.v2, V1.aliases),
                Version(v3, T1, V3_PRICES, V1.aliases),
                Version(v4, T1, V4_PRICES, {}),
            ]
            model = Ledger()
            await make_plans(conn, model, plan.beta_credits)
            app = create_app(settings_for(url))
            async with AsyncTestClient(app=app) as client:
                for step in plan.steps:
                    if isinstance(step, Rerate):
                        await run_rerate(conn, model, versions, step)
                        continue
                    if isinstance(step, PlanChange):
                        await run_plan_change(conn, model, step)
                        continue
                    claimed = model.claim(step)
                    expected = [model.outcome(s, versions) for s in step]
                    response = await client.post(
                        "/v1/events/batch", json={"events": [wire(s) for s in step]}
                    )
                    assert response.status_code == 200, response.text
                    answer = response.json()
                    assert [r["status"] for r in answer["results"]] == expected, answer
                    assert [r["id"] for r in answer["results"]] == [s.event_id for s in step]
                    model.reprice_jobs(claimed)
                    assert [
                        answer["accepted"],
                        answer["duplicates"],
                        answer["conflicts"],
                        answer["rejected"],
                    ] == [
                        expected.count(s) for s in ("accepted", "duplicate", "conflict", "rejected")
                    ]
                await check_jobs(client, model)
            await check_tables(conn, model)
        finally:
            await conn.close()


@settings(
    max_examples=18,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(plan=plans())
def test_any_stream_leaves_each_event_charged_once_and_every_rollup_equal_to_its_ledger(
    admin_url: str, template_database: str, plan: Plan
) -> None:
    asyncio.run(run_plan(admin_url, template_database, plan))


# Rebuilding the rollups after re-rating -------------------------------------------------------


async def test_every_rollup_rebuilt_from_the_ledger_equals_the_stored_one(
    client: AsyncTestClient[Any], db: asyncpg.Connection
) -> None:
    """Charges, replays and then re-rating (reversal and new booking entries): a rebuild of
    each rollup from the ledger alone still gives every stored row exactly."""
    events = [
        wire_event(
            f"rb-{i}",
            occurred_at=(T0 + timedelta(hours=7 * i)).isoformat(),
            job_id=f"job-rb-{i % 3}",
            agent=("ACHEEVY", "ORACLE", "ByteRover")[i % 3],
            model=(FLASH, "gemini-3.0-flash", SONNET, UNKNOWN, LLAMA)[i % 5],
            input_tokens=1000 * i + 7,
            cached_input_tokens=100 * i,
            cache_write_tokens=3 * i,
            output_tokens=333 * i,
            reasoning_tokens=11 * i,
            provider_cost_usd=f"0.{i:04d}1",
        )
        for i in range(30)
    ]
    for start in range(0, 30, 7):
        answer = (
            await client.post("/v1/events/batch", json={"events": events[start : start + 9]})
        ).json()
        assert answer["conflicts"] == answer["rejected"] == 0
    assert (await client.get("/v1/unpriced")).json()["items"]
    assert await rollup_differences(db) == {}

    # A version that knows the unknown model prices its events with adjustment entries.
    unknown_priced = new_version(
        T0 - timedelta(days=1),
        {**{m: V1.prices[m] for m in (FLASH, SONNET, LLAMA)}, UNKNOWN: with_defaults(D(1), D(2))},
        V1.aliases,
    )
    _, summary = await create_version_and_price_unpriced(db, unknown_priced, default_plan=None)
    assert summary.events_changed == 6  # rb-3, rb-8, …, rb-28
    kinds = await db.fetch("SELECT kind, count(*) AS n FROM ledger_entries GROUP BY kind")
    assert {r["kind"]: r["n"] for r in kinds} == {"charge": 30, "adjustment": 12}
    assert (await client.get("/v1/unpriced")).json()["items"] == []
    assert await rollup_differences(db) == {}

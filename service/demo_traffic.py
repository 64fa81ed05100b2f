"""The traffic ``luc demo`` sends: a pure function of a seed, a run id and a time.

The four AIMS agents work through a few dozen jobs on every model of the catalog, over
OpenRouter, Vertex AI and the stub, with cached, cache-write and reasoning tokens; a few
calls are replayed (a gateway retrying after a lost answer) and one names a model the
catalog lacks. The same arguments give the very same events, ids included.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from importlib import resources
from typing import Any

from service.wire import instant_text, money_text

ALIAS = "gemini-3.0-flash"
UNKNOWN_MODEL = "mistralai/mistral-large-2512"  # not in the AIMS catalog: stays unpriced
DAYS = 3  # events fall within this many days before --until
REPLAY_SHARE = 0.03
MILLION = Decimal(1_000_000)
WORKFLOWS = (
    "market-research",
    "codegen",
    "support-triage",
    "contract-review",
    "data-cleanup",
    "pitch-deck",
    "bug-hunt",
    "onboarding",
)


@dataclass(frozen=True)
class AgentProfile:
    """How one agent calls models: which ones, and how long its prompts and answers run."""

    models: tuple[str, ...]
    prompt: tuple[int, int]
    completion: tuple[int, int]
    reasoning: tuple[float, float]
    """Share of the output that is reasoning, on models that reason."""


PROFILES = {
    # The orchestrator: premium models, long cached system prompts.
    "ACHEEVY": AgentProfile(
        (
            "anthropic/claude-opus-4.6",
            "anthropic/claude-opus-4.5",
            "openai/gpt-5.2",
            "anthropic/claude-sonnet-4.5",
        ),
        (6_000, 60_000),
        (300, 4_000),
        (0.1, 0.4),
    ),
    # Workers: standard and fast models.
    "Boomer_Ang": AgentProfile(
        (
            "anthropic/claude-sonnet-4.5",
            "openai/gpt-5.1",
            "google/gemini-3-pro-preview",
            "anthropic/claude-haiku-4.5",
            ALIAS,
            "google/gemini-3.0-flash",
        ),
        (2_000, 30_000),
        (200, 6_000),
        (0.1, 0.5),
    ),
    # Research and planning: reasoning-heavy.
    "ORACLE": AgentProfile(
        (
            "openai/gpt-5.2",
            "openai/gpt-5.1",
            "google/gemini-3-pro-preview",
            "anthropic/claude-opus-4.6",
        ),
        (4_000, 80_000),
        (1_000, 20_000),
        (0.4, 0.85),
    ),
    # Memory and retrieval: huge prompts, short answers, cheap models.
    "ByteRover": AgentProfile(
        (
            "google/gemini-3.0-flash",
            ALIAS,
            "google/gemini-2.5-flash-preview",
            "meta-llama/llama-3.3-70b-instruct",
            "anthropic/claude-haiku-4.5",
        ),
        (10_000, 120_000),
        (50, 800),
        (0.0, 0.2),
    ),
}
REASONING_MODELS = ("openai/", "google/gemini-3-pro", "anthropic/claude-opus")


def load_catalog() -> dict[str, Any]:
    """The AIMS catalog shipped with LUC (models, tiers, prices, aliases)."""
    text = resources.files("service.pricing").joinpath("aims-v1.json").read_text()
    doc: dict[str, Any] = json.loads(text)
    return doc


@dataclass
class TrafficPlan:
    run_id: str
    events: list[dict[str, Any]]
    """In sending order, replays included."""
    replays: int
    unknown_model_events: int
    jobs: list[str]

    @property
    def distinct(self) -> int:
        return len(self.events) - self.replays


def _provider_for(model: str, rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.08:
        return "stub"  # the gateway without a key: heuristic mode, no real call
    if model.startswith("google/") or model == ALIAS:
        return "vertex" if roll < 0.5 else "openrouter"
    return "openrouter"


def _provider_cost(event: dict[str, Any], prices: dict[str, Any]) -> str:
    """OpenRouter's ``usage.cost``: what the provider bills by its published rules, which
    the AIMS catalog's prices follow (its ``notes``): cache reads and writes at their own
    prices, reasoning as output, the whole call at the long-context rate once its input
    reaches the threshold. Reported with 9 decimals, as OpenRouter's float carries it."""
    rate = prices
    for entry in sorted(prices.get("long_context", []), key=lambda e: e["min_input_tokens"]):
        if event["input_tokens"] >= entry["min_input_tokens"]:
            rate = entry
    price_in, price_out = Decimal(rate["input"]), Decimal(rate["output"])
    cached, written = event["cached_input_tokens"], event["cache_write_tokens"]
    plain = event["input_tokens"] - cached - written
    cost = (
        plain * price_in
        + cached * Decimal(rate.get("cache_read", price_in))
        + written * Decimal(rate.get("cache_write", price_in))
        + event["output_tokens"] * price_out
    ) / MILLION
    return money_text(cost.quantize(Decimal("1e-9"), rounding=ROUND_HALF_EVEN))


@dataclass
class _JobState:
    """What a provider has cached for each (agent, model) of one job."""

    cached_prefix: dict[tuple[str, str], int] = field(default_factory=dict)


def _call(
    rng: random.Random, state: _JobState, agent: str, model: str, catalog_id: str
) -> dict[str, int]:
    profile = PROFILES[agent]
    input_tokens = rng.randint(*profile.prompt)
    cached = written = 0
    prefix = state.cached_prefix.get((agent, catalog_id))
    if catalog_id.startswith("anthropic/"):
        # Explicit prompt caching: the first call writes the system prompt, later ones read it.
        if prefix is None:
            written = min(input_tokens, rng.randint(1_500, 8_000))
            state.cached_prefix[(agent, catalog_id)] = written
        else:
            cached = min(input_tokens, prefix)
    elif not catalog_id.startswith("meta-llama/") and prefix is not None and rng.random() < 0.6:
        cached = rng.randint(0, input_tokens // 2)  # implicit caching
    else:
        state.cached_prefix.setdefault((agent, catalog_id), 0)
    output_tokens = rng.randint(*profile.completion)
    reasoning = 0
    if catalog_id.startswith(REASONING_MODELS) and rng.random() < 0.8:
        reasoning = int(output_tokens * rng.uniform(*profile.reasoning))
    return {
        "input_tokens": input_tokens,
        "cached_input_tokens": cached,
        "cache_write_tokens": written,
        "output_tokens": output_tokens,
        "reasoning_tokens": reasoning,
    }


def _agent_using(model: str) -> str:
    return next((a for a, p in PROFILES.items() if model in p.models), "Boomer_Ang")


def plan_traffic(seed: int, jobs: int, run_id: str, until: datetime) -> TrafficPlan:
    """The events of one demo run: a pure function of its arguments."""
    rng = random.Random(f"{seed}:{run_id}")
    catalog = load_catalog()
    prices = {m["id"]: m for m in catalog["models"]}
    aliases: dict[str, str] = catalog["aliases"]
    sequence = 0
    events: list[dict[str, Any]] = []
    job_ids: list[str] = []

    def emit(job_id: str, agent: str, model: str, at: datetime, state: _JobState) -> None:
        nonlocal sequence
        catalog_id = aliases.get(model, model)
        provider = _provider_for(catalog_id, rng)
        event: dict[str, Any] = {
            "id": f"gen-{run_id}-{sequence:05d}",
            "occurred_at": instant_text(at),
            "job_id": job_id,
            "agent": agent,
            "provider": provider,
            "model": model,
            **_call(rng, state, agent, model, catalog_id),
            "attributes": {"request_id": f"req-{run_id}-{sequence:05d}", "route": "chat"},
        }
        if rng.random() < 0.01:
            event["status"] = "error"  # a stream cut short: what was used is still billed
        if provider == "openrouter" and catalog_id in prices:
            event["provider_cost_usd"] = _provider_cost(event, prices[catalog_id])
        sequence += 1
        events.append(event)

    # Every model of the catalog, and the alias, at least once.
    must_use = [*(m["id"] for m in catalog["models"]), *aliases]
    for number in range(jobs):
        job_id = f"{run_id}-{rng.choice(WORKFLOWS)}-{number:03d}"
        job_ids.append(job_id)
        state = _JobState()
        at = until - timedelta(seconds=rng.randint(4 * 3600, DAYS * 86400))
        crew = ["ACHEEVY", *rng.sample(["Boomer_Ang", "ORACLE", "ByteRover"], rng.randint(1, 3))]
        calls = [(agent, rng.choice(PROFILES[agent].models)) for agent in crew]
        calls += [
            (agent, rng.choice(PROFILES[agent].models))
            for agent in crew
            for _ in range(rng.randint(1, 8))
        ]
        if must_use:
            model = must_use.pop()
            calls.append((_agent_using(model), model))
        for agent, model in calls:
            at += timedelta(seconds=rng.randint(5, 240))
            emit(job_id, agent, model, at, state)
    for model in must_use:  # fewer jobs than models: the last job takes the rest
        at = until - timedelta(seconds=rng.randint(60, 3600))
        emit(job_ids[-1], _agent_using(model), model, at, _JobState())
    # One call to a model the catalog lacks: LUC keeps it, unpriced, never at zero.
    emit(
        rng.choice(job_ids),
        "Boomer_Ang",
        UNKNOWN_MODEL,
        until - timedelta(seconds=rng.randint(60, DAYS * 86400)),
        _JobState(),
    )
    events[-1]["provider"] = "openrouter"
    events[-1]["provider_cost_usd"] = "0.000412"

    # The gateway emits in time order; some events are sent again a little later.
    events.sort(key=lambda e: datetime.fromisoformat(e["occurred_at"]))
    order: list[tuple[float, dict[str, Any]]] = [(float(i), e) for i, e in enumerate(events)]
    priced = [i for i, e in enumerate(events) if e["model"] != UNKNOWN_MODEL]
    replayed = rng.sample(priced, max(1, int(len(events) * REPLAY_SHARE)))
    order += [(i + rng.randint(3, 300) + 0.5, dict(events[i])) for i in replayed]
    order.sort(key=lambda pair: pair[0])
    return TrafficPlan(
        run_id=run_id,
        events=[e for _, e in order],
        replays=len(replayed),
        unknown_model_events=1,
        jobs=job_ids,
    )

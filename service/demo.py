"""``luc demo``: realistic AIMS gateway traffic sent to a running LUC, then LUC's totals.

The four AIMS agents work through a few dozen jobs on every model of the catalog, over
OpenRouter, Vertex AI and the stub, with cached, cache-write and reasoning tokens; a few
calls are replayed (a gateway retrying after a lost answer) and one names a model the
catalog lacks. The traffic is a pure function of ``--seed``, ``--run-id`` and ``--until``,
so a run can be sent again exactly, and LUC then counts every event as a duplicate.
"""

from __future__ import annotations

import json
import random
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from importlib import resources
from typing import Any

import click
import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

DEFAULT_URL = "http://127.0.0.1:8000"
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


def _stamp(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


def _provider_for(model: str, rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.08:
        return "stub"  # the gateway without a key: heuristic mode, no real call
    if model.startswith("google/") or model == ALIAS:
        return "vertex" if roll < 0.5 else "openrouter"
    return "openrouter"


def _provider_cost(event: dict[str, Any], prices: dict[str, Any]) -> str:
    """OpenRouter's ``usage.cost``: cache reads at a quarter, writes at 1.25 × input."""
    price_in, price_out = Decimal(prices["input"]), Decimal(prices["output"])
    cached, written = event["cached_input_tokens"], event["cache_write_tokens"]
    plain = event["input_tokens"] - cached - written
    cost = (
        plain * price_in
        + cached * price_in * Decimal("0.25")
        + written * price_in * Decimal("1.25")
        + event["output_tokens"] * price_out
    ) / MILLION
    return format(cost.quantize(Decimal("1e-9"), rounding=ROUND_HALF_EVEN), "f")


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
            "occurred_at": _stamp(at),
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


@dataclass
class Answers:
    """What LUC answered to the batches, summed."""

    batches: int = 0
    accepted: int = 0
    duplicates: int = 0
    conflicts: int = 0
    rejected: int = 0
    reasons: list[str] = field(default_factory=list)


def _get(http: httpx.Client, path: str, **params: str | int) -> Any:
    response = http.get(path, params=params)
    if response.status_code != 200:
        raise click.ClickException(f"GET {path} answered {response.status_code}: {response.text}")
    return response.json()


def send(http: httpx.Client, plan: TrafficPlan, batch_size: int, console: Console) -> Answers:
    """POST the plan in batches, with a progress bar."""
    answers = Answers()
    columns = (
        TextColumn("sending usage events"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("events", total=len(plan.events))
        for start in range(0, len(plan.events), batch_size):
            batch = plan.events[start : start + batch_size]
            response = http.post("/v1/events/batch", json={"events": batch})
            if response.status_code != 200:
                raise click.ClickException(
                    f"POST /v1/events/batch answered {response.status_code}: {response.text}"
                )
            body = response.json()
            answers.batches += 1
            answers.accepted += body["accepted"]
            answers.duplicates += body["duplicates"]
            answers.conflicts += body["conflicts"]
            answers.rejected += body["rejected"]
            answers.reasons += [r["reason"] for r in body["results"] if r.get("reason")]
            progress.advance(task, len(batch))
    return answers


def _plain(value: Decimal) -> str:
    """A decimal as the API writes money: full precision, no trailing zeros."""
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _money(value: str | None) -> str:
    return "unpriced" if value is None else f"${value}"


def report(http: httpx.Client, plan: TrafficPlan, answers: Answers, console: Console) -> None:
    """Print what was sent, and the totals LUC now reports."""
    console.print(
        f"Sent {len(plan.events)} events: {plan.replays} replayed duplicates, "
        f"{plan.unknown_model_events} unknown-model event, over {len(plan.jobs)} jobs "
        f"in {answers.batches} batches (run {plan.run_id}).",
        soft_wrap=True,
    )
    sent = Table(title="What the demo sent, and LUC's answers")
    sent.add_column("")
    sent.add_column("events", justify="right")
    for label, value in (
        ("sent", len(plan.events)),
        ("distinct", plan.distinct),
        ("replayed (duplicates)", plan.replays),
        ("unknown model", plan.unknown_model_events),
        ("LUC: accepted", answers.accepted),
        ("LUC: duplicate", answers.duplicates),
        ("LUC: conflict", answers.conflicts),
        ("LUC: rejected", answers.rejected),
    ):
        sent.add_row(label, str(value))
    console.print(sent)
    for reason in answers.reasons[:5]:
        console.print(f"[yellow]rejected:[/] {reason}")

    total_rows = _get(http, "/v1/usage")["rows"]
    total: dict[str, Any] = total_rows[0] if total_rows else {"cost_usd": "0", "events": 0}
    unpriced = 0
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {"limit": 1000}
        if cursor:
            params["cursor"] = cursor
        page = _get(http, "/v1/unpriced", **params)
        unpriced += len(page["items"])
        cursor = page["next_cursor"]
        if not cursor:
            break
    by_job = _get(http, "/v1/usage", group_by="job_id")["rows"]
    this_run = [row for row in by_job if row["job_id"] in set(plan.jobs)]
    run_cost = sum((Decimal(row["cost_usd"]) for row in this_run), Decimal(0))
    totals = Table(title="LUC now reports")
    totals.add_column("")
    totals.add_column("value", justify="right")
    totals.add_row("total cost (all usage)", _money(total["cost_usd"]))
    totals.add_row("events (all usage)", str(total["events"]))
    totals.add_row("unpriced events", str(unpriced))
    totals.add_row("provider-reported cost", _money(total.get("provider_cost_usd", "0")))
    totals.add_row(f"cost of this run's {len(this_run)} jobs", _money(_plain(run_cost)))
    console.print(totals)

    top = Table(title="Top jobs by cost")
    for name in ("job", "cost", "events"):
        top.add_column(name, justify="left" if name == "job" else "right")
    for row in sorted(by_job, key=lambda r: Decimal(r["cost_usd"]), reverse=True)[:5]:
        top.add_row(row["job_id"], _money(row["cost_usd"]), str(row["events"]))
    console.print(top)

    agents = Table(title="Agents")
    for name in ("agent", "cost", "events", "input tokens", "output tokens"):
        agents.add_column(name, justify="left" if name == "agent" else "right")
    for item in _get(http, "/v1/agents")["items"]:
        agents.add_row(
            item["agent"],
            _money(item["cost_usd"]),
            str(item["events"]),
            f"{item['input_tokens']:,}",
            f"{item['output_tokens']:,}",
        )
    console.print(agents)


def _parse_until(value: str | None) -> datetime:
    now = datetime.now(UTC)
    if value is None:
        return now.replace(minute=0, second=0, microsecond=0)
    try:
        until = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an RFC 3339 timestamp") from None
    if until.tzinfo is None:
        raise click.BadParameter("add a UTC offset, e.g. 2026-11-24T00:00:00Z")
    if until > now:
        raise click.BadParameter("must not be in the future (LUC refuses future events)")
    return until.astimezone(UTC)


@click.command()
@click.option("--url", default=DEFAULT_URL, show_default=True, help="Base URL of a running LUC.")
@click.option(
    "--jobs",
    type=click.IntRange(1, 10_000),
    default=36,
    show_default=True,
    help="How many jobs the agents work through.",
)
@click.option(
    "--seed", type=int, default=2026, show_default=True, help="Seed of the traffic generator."
)
@click.option(
    "--run-id",
    default=None,
    help="Names this run in event and job ids (default: random, so every run adds new usage).",
)
@click.option(
    "--until",
    default=None,
    help="Latest event time, RFC 3339 (default: the start of this hour); events spread "
    f"over the {DAYS} days before it.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1, 5000),
    default=250,
    show_default=True,
    help="Events per POST /v1/events/batch.",
)
def demo(
    url: str, jobs: int, seed: int, run_id: str | None, until: str | None, batch_size: int
) -> None:
    """Send realistic gateway traffic to a running LUC and show what it now reports.

    The four AIMS agents (ACHEEVY, Boomer_Ang, ORACLE, ByteRover) work through --jobs jobs
    on every model and tier of the catalog (and the alias gemini-3.0-flash), over
    openrouter, vertex and stub, with cached, cache-write and reasoning tokens and
    OpenRouter's reported cost. About 3 % of the events are replayed (LUC counts them once)
    and one names a model the catalog lacks (LUC keeps it unpriced).

    Start LUC first (`luc serve`). The same --seed, --run-id and --until send the very
    same events again: LUC answers `duplicate` for each and its totals do not move.
    """
    console = Console()
    plan = plan_traffic(seed, jobs, run_id or secrets.token_hex(3), _parse_until(until))
    with httpx.Client(base_url=url, timeout=httpx.Timeout(60.0, connect=5.0)) as http:
        try:
            http.get("/healthz").raise_for_status()
        except httpx.HTTPError as exc:
            raise click.ClickException(
                f"no LUC answering at {url} ({exc}); start one with `luc serve` or `make run`"
            ) from exc
        answers = send(http, plan, batch_size, console)
        report(http, plan, answers, console)

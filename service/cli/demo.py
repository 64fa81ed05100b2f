"""``luc demo``: realistic AIMS gateway traffic sent to a running LUC, then LUC's totals.

The traffic itself (agents, jobs, models, tokens, replays, the unknown model) comes from
``service.demo_traffic``; this module sends it with a progress bar and prints what was sent
beside what LUC now reports. ``--seed``, ``--run-id`` and ``--until`` fix the traffic, so a
run can be sent again exactly, and LUC then counts every event as a duplicate.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import click
import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from service.demo_traffic import DAYS, TrafficPlan, plan_traffic
from service.money import exact_sum
from service.settings import ServerSettings, get_settings
from service.wire import WireValueError, money_text, parse_instant

# What a client dials to reach a server bound to every address.
LOOPBACK = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


def server_url(server: ServerSettings) -> str:
    """Where ``luc serve`` listens with these settings (LUC_HOST, LUC_PORT), as a URL."""
    host = LOOPBACK.get(server.host, server.host)
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    return f"http://{host}:{server.port}"


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
    # Only on a terminal: written to a file or a pipe, rich leaves the bar's last frame
    # in the report a script reads.
    with Progress(*columns, console=console, disable=not console.is_terminal) as progress:
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
    return money_text(value)


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
    # A job of unpriced events only has cost_usd null (unknown): it adds nothing known.
    run_cost = exact_sum(Decimal(row["cost_usd"] or 0) for row in this_run)
    totals = Table(title="LUC now reports")
    totals.add_column("")
    totals.add_column("value", justify="right")
    totals.add_row("total cost (all usage)", _money(total["cost_usd"]))
    totals.add_row("events (all usage)", str(total["events"]))
    totals.add_row("unpriced events", str(unpriced))
    totals.add_row("provider-reported cost", _money(total.get("provider_cost_usd", "0")))
    totals.add_row(
        "actual cost (reported, else catalog)", _money(total.get("actual_cost_usd", "0"))
    )
    totals.add_row(f"cost of this run's {len(this_run)} jobs", _money(_plain(run_cost)))
    console.print(totals)

    top = Table(title="Top jobs by cost")
    for name in ("job", "cost", "events"):
        top.add_column(name, justify="left" if name == "job" else "right")
    for row in sorted(by_job, key=lambda r: Decimal(r["cost_usd"] or 0), reverse=True)[:5]:
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


def _is_http_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        return parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:  # an unclosed IPv6 bracket, a port that is not a number
        return False


MAX_RUN_ID_CHARS = 64
"""The run id goes into event and job ids, which hold at most 128 characters (SPEC §2),
beside a workflow's name and numbers."""


def _check_run_id(value: str | None) -> str | None:
    if value is not None and not 1 <= len(value) <= MAX_RUN_ID_CHARS:
        raise click.BadParameter(
            f"must be 1 to {MAX_RUN_ID_CHARS} characters (it goes into every event and job "
            f"id), got {len(value)}",
            param_hint="--run-id",
        )
    return value


def _parse_until(value: str | None) -> datetime:
    now = datetime.now(UTC)
    if value is None:
        return now.replace(minute=0, second=0, microsecond=0)
    try:
        # The rule every instant LUC takes follows (at most 6 fractional digits: more
        # were cut to microseconds here, where the API refuses them).
        until = parse_instant("--until", value)
    except WireValueError as exc:
        raise click.BadParameter(str(exc).removeprefix("--until: "), param_hint="--until") from None
    if until > now:
        raise click.BadParameter(
            "must not be in the future (LUC refuses future events)", param_hint="--until"
        )
    try:
        until.astimezone(UTC) - timedelta(days=DAYS + 1)
    except OverflowError:  # the traffic's first days would fall before the year 1
        raise click.BadParameter(
            f"must leave {DAYS} days of traffic after 0001-01-01", param_hint="--until"
        ) from None
    return until.astimezone(UTC)


@click.command()
@click.option(
    "--url",
    default=None,
    help="Base URL of the running LUC (default: http://LUC_HOST:LUC_PORT, where `luc serve` "
    "listens with the same settings).",
)
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
    callback=lambda _ctx, _param, value: _check_run_id(value),
    help=f"Names this run in event and job ids, at most {MAX_RUN_ID_CHARS} characters "
    "(default: random, so every run adds new usage).",
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
@click.option(
    "--key",
    envvar="LUC_API_KEY",
    default=None,
    help="API key of scope admin (it sends events and reads them back); default $LUC_API_KEY.",
)
def demo(
    url: str | None,
    jobs: int,
    seed: int,
    run_id: str | None,
    until: str | None,
    batch_size: int,
    key: str | None,
) -> None:
    """Send realistic gateway traffic to a running LUC and show what it now reports.

    The four AIMS agents (ACHEEVY, Boomer_Ang, ORACLE, ByteRover) work through --jobs jobs
    on every model and tier of the catalog (and the alias gemini-3.0-flash), over
    openrouter, vertex and stub, with cached, cache-write and reasoning tokens and
    OpenRouter's reported cost. About 3 % of the events are replayed (LUC counts them once)
    and one names a model the catalog lacks (LUC keeps it unpriced).

    Start LUC first (`luc serve`); the demo finds it the way it was configured (LUC_HOST,
    LUC_PORT) unless --url says otherwise. The same --seed, --run-id and --until send the
    very same events again: LUC answers `duplicate` for each and its totals do not move.
    """
    if url is None:
        server = get_settings().server
        url, where = server_url(server), f"LUC_HOST={server.host}, LUC_PORT={server.port}"
    else:
        where = "--url"
        if not _is_http_url(url):  # "localhost:8000" was "unsupported protocol 'localhost://'"
            raise click.BadParameter(
                f"{url!r} is not an http(s) URL, e.g. http://127.0.0.1:8000", param_hint="--url"
            )
    click.echo(f"server: {url} ({where})", err=True)
    console = Console()
    plan = plan_traffic(seed, jobs, run_id or secrets.token_hex(3), _parse_until(until))
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    timeout = httpx.Timeout(60.0, connect=5.0)
    with httpx.Client(base_url=url, timeout=timeout, headers=headers) as http:
        try:
            http.get("/healthz").raise_for_status()
        except httpx.HTTPError as exc:
            raise click.ClickException(
                f"no LUC answering at {url}, taken from {where} ({exc}); start one with "
                "`luc serve` (it listens on LUC_HOST:LUC_PORT), or give the address of the "
                "one running with --url or the LUC_HOST / LUC_PORT it was started with"
            ) from exc
        if http.get("/v1/agents").status_code in (401, 403):
            raise click.ClickException(
                f"LUC at {url} wants an API key of scope admin: create one with "
                "`luc keys create --scope admin --name demo` (with the server's "
                "LUC_DATABASE_URL or LUC_DATA_DIR) and pass it with --key or LUC_API_KEY"
            )
        answers = send(http, plan, batch_size, console)
        report(http, plan, answers, console)
    if answers.rejected:
        # Every event the demo makes is valid: a rejection is a problem to see (a run id
        # too long for the ids built from it, a server's stricter limits), not a success.
        raise click.ClickException(
            f"LUC rejected {answers.rejected} of the {len(plan.events)} events sent (reasons above)"
        )

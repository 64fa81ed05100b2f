"""``luc demo`` against a real server: what LUC reports is exactly what the demo sent."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from service.cli import main
from service.demo_traffic import plan_traffic
from tests.support.events import wire_event
from tests.support.ledger_truth import (
    AGENTS,
    PRICES,
    UNKNOWN_MODEL,
    assert_jobs_match,
    expected_cost,
)
from tests.support.paths import PROJECT_ROOT
from tests.support.ports import closed_port

SENT = re.compile(
    r"Sent (\d+) events: (\d+) replayed duplicates, (\d+) unknown-model event, "
    r"over (\d+) jobs in (\d+) batches"
)


def _demo(*args: str) -> tuple[int, int, str]:
    """Run ``luc demo``; return (events sent, replays, output)."""
    result = CliRunner().invoke(main, ["demo", *args])
    assert result.exit_code == 0, result.output
    match = SENT.search(result.output)
    assert match, result.output
    sent, replays, unknown, _, _ = map(int, match.groups())
    assert unknown == 1
    return sent, replays, result.output


def _total(http: httpx.Client) -> dict[str, Any]:
    rows = http.get("/v1/usage").json()["rows"]
    assert len(rows) == 1
    return dict(rows[0])


@pytest.mark.slow
def test_demo_traffic_arrives_exactly_and_luc_reports_what_was_sent(server_factory: Any) -> None:
    server = server_factory()
    until = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    args = ("--url", server.base_url, "--jobs", "12", "--seed", "5", "--run-id", "t1")
    sent, replays, output = _demo(*args, "--until", until.isoformat())

    # The run is reproducible, so the test knows every event that went out.
    plan = plan_traffic(5, 12, "t1", until)
    assert (len(plan.events), plan.replays) == (sent, replays)
    distinct = {e["id"]: e for e in plan.events}
    assert len(distinct) == sent - replays
    for event in plan.events:
        assert event == distinct[event["id"]], "a replay repeats its event exactly"
    events = list(distinct.values())
    times = [datetime.fromisoformat(e["occurred_at"]) for e in events]
    assert until - timedelta(days=3) <= min(times) and max(times) <= until
    assert {e["agent"] for e in events} == set(AGENTS)
    assert {e["provider"] for e in events} == {"openrouter", "vertex", "stub"}
    assert {e["model"] for e in events} >= {*PRICES, "gemini-3.0-flash", UNKNOWN_MODEL}
    assert [e["model"] for e in events].count(UNKNOWN_MODEL) == 1
    assert all("provider_cost_usd" in e for e in events if e["provider"] == "openrouter")
    assert all(isinstance(e["provider_cost_usd"], str) for e in events if "provider_cost_usd" in e)
    for name in ("cached_input_tokens", "cache_write_tokens", "reasoning_tokens"):
        assert sum(e[name] for e in events) > 0, name

    with httpx.Client(base_url=server.base_url) as http:
        total = _total(http)
        assert total["events"] == sent - replays
        assert total["unpriced_events"] == 1
        costs = [expected_cost(e) for e in events]
        assert Decimal(total["cost_usd"]) == sum(c for c in costs if c is not None)
        assert Decimal(total["provider_cost_usd"]) == sum(
            Decimal(e.get("provider_cost_usd", "0")) for e in events
        )
        unpriced = http.get("/v1/unpriced").json()["items"]
        assert [(u["model"], u["id"]) for u in unpriced] == [
            (e["model"], e["id"]) for e in events if e["model"] == UNKNOWN_MODEL
        ]
        tiers = {r["tier"] for r in http.get("/v1/usage?group_by=tier").json()["rows"]}
        assert tiers == {"premium", "standard", "fast", "economy", None}
        agents = http.get("/v1/agents").json()["items"]
        assert {a["agent"] for a in agents} == set(AGENTS)
        assert sum(a["events"] for a in agents) == sent - replays
        jobs = http.get("/v1/jobs").json()["items"]
        assert len(jobs) == 12 and all(j["job_id"].startswith("t1-") for j in jobs)
    assert_jobs_match(server.base_url, events)
    # The demo printed LUC's answer: the same total, and a count of one unpriced event.
    assert f"${total['cost_usd']}" in output
    assert re.search(r"unpriced events\s*│\s*1\s*│", output), output

    # The same run again: every event a duplicate, nothing moves.
    again, _, _ = _demo(*args, "--until", until.isoformat())
    assert again == sent
    with httpx.Client(base_url=server.base_url) as http:
        assert _total(http) == total

    # A fresh run (its own random id, events up to this hour) adds new usage.
    more, more_replays, _ = _demo("--url", server.base_url, "--jobs", "4")
    with httpx.Client(base_url=server.base_url) as http:
        assert _total(http)["events"] == total["events"] + more - more_replays
        assert len(http.get("/v1/jobs").json()["items"]) == 16


def test_demo_without_a_running_luc_says_how_to_start_one() -> None:
    with closed_port() as port:
        url = f"http://127.0.0.1:{port}"
        result = CliRunner().invoke(main, ["demo", "--url", url])
    assert result.exit_code == 1
    assert f"no LUC answering at {url}" in result.output
    assert "luc serve" in result.output


def test_the_demo_reports_beside_a_job_whose_every_event_is_unpriced(server_factory: Any) -> None:
    """Such a job has ``cost_usd`` null on the API (unknown, not zero): the demo's tables
    say "unpriced" for it and for its agent, and still rank the jobs by cost."""
    server = server_factory()
    lonely = wire_event("lonely-1", job_id="lonely", agent="Lonely", model=UNKNOWN_MODEL)
    with httpx.Client(base_url=server.base_url) as http:
        assert http.post("/v1/events", json=lonely).status_code == 201
        assert http.get("/v1/jobs/lonely").json()["cost_usd"] is None
    _, _, output = _demo("--url", server.base_url, "--jobs", "2", "--seed", "3", "--run-id", "t2")
    assert re.search(r"lonely\s*│\s*unpriced\s*│\s*1\s*│", output), output
    assert re.search(r"Lonely\s*│\s*unpriced\s*│\s*1\s*│", output), output


def test_the_demo_draws_no_progress_bar_into_output_that_is_not_a_terminal(
    server_factory: Any,
) -> None:
    # Its last frame ("sending usage events ━━━ 31/31 0:00:00") was written to the pipe.
    server = server_factory()
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("LUC_")}
    done = subprocess.run(
        [sys.executable, "-m", "service", "demo", "--url", server.base_url, "--jobs", "1"],
        env=inherited,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert SENT.search(done.stdout), done.stdout
    assert "sending usage events" not in done.stdout + done.stderr


def test_a_demo_whose_events_luc_rejects_ends_in_an_error(server_factory: Any) -> None:
    # A server that takes no attributes (every demo event carries some): each is rejected,
    # and the demo printed its table and exited 0.
    server = server_factory(LUC_MAX_ATTRIBUTES_BYTES="2")
    result = CliRunner().invoke(main, ["demo", "--url", server.base_url, "--jobs", "1"])
    assert result.exit_code == 1, result.output
    sent = SENT.search(result.output)
    assert sent, result.output
    assert f"Error: LUC rejected {sent.group(1)} of the {sent.group(1)} events sent" in (
        " ".join(result.output.split())
    )


def test_a_malformed_until_is_a_usage_error_naming_the_option() -> None:
    with closed_port() as port:
        result = CliRunner().invoke(
            main, ["demo", "--url", f"http://127.0.0.1:{port}", "--until", "tomorrow"]
        )
    assert result.exit_code == 2
    assert "Invalid value for --until: 'tomorrow' is not an RFC 3339 timestamp" in result.output, (
        result.output
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        # Cut to microseconds here, where every other command and the API refuse it.
        (
            ("--until", "2026-11-02T00:00:00.1234567Z"),
            "Invalid value for --until: '2026-11-02T00:00:00.1234567Z' has 7 fractional "
            "second digits",
        ),
        # Every id built from it was too long: all rejected, and the demo said success.
        (("--run-id", "y" * 65), "Invalid value for --run-id: must be 1 to 64 characters"),
    ],
)
def test_an_until_or_run_id_luc_would_refuse_is_a_usage_error(
    args: tuple[str, str], message: str
) -> None:
    with closed_port() as port:
        result = CliRunner().invoke(main, ["demo", "--url", f"http://127.0.0.1:{port}", *args])
    assert result.exit_code == 2
    assert message in " ".join(result.output.split()), result.output


@pytest.mark.parametrize("url", ["localhost:8000", "127.0.0.1:8000", "http://", "ftp://h/"])
def test_a_url_that_is_not_http_is_a_usage_error_naming_the_option(url: str) -> None:
    # "localhost:8000" was tried, and said "unsupported protocol 'localhost://'".
    result = CliRunner().invoke(main, ["demo", "--url", url])
    assert result.exit_code == 2
    assert (
        f"Invalid value for --url: {url!r} is not an http(s) URL, e.g. http://127.0.0.1:8000"
        in result.output
    ), result.output

"""Ids SPEC §2 allows (any 1–128 characters: "/", "%", spaces, "+", "?", "#", non-ASCII)
read back through every route that names one in its path, written percent-encoded as a
client library writes them (``quote(id, safe="")``), on a real ``luc serve``: its ASGI
server decodes the path before LUC routes, which once split "team%2Fa" in two (404)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx
from litestar.testing import AsyncTestClient

from tests.support.events import record_accepted, wire_event

AWKWARD = [
    "team/a",
    "/lead",
    "trail/",
    "a//b",
    "a%2Fb",
    "50%",
    "a b",
    "x+y",
    "what?",
    "#1",
    "ünï/cödé",
    ".",
    "..",
]
"""Each a job, an agent and a customer. "a%2Fb" is the text itself (percent sign and all),
not an encoded slash; it must not meet "a/b"."""


def _q(text: str) -> str:
    """As README says: ``quote``, and a lone "." or ".." with its dots encoded too (a
    client removes such a segment from a path before sending it)."""
    return {".": "%2E", "..": "%2E%2E"}.get(text) or quote(text, safe="")


async def test_every_route_naming_an_id_reads_an_awkward_one_back(
    server_factory: Callable[..., Any],
) -> None:
    server = server_factory()
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        events = []
        for i, name in enumerate(AWKWARD):
            answer = await http.post(
                "/v1/customers", json={"id": name, "name": f"C{i}", "invoicing": "monthly"}
            )
            assert answer.status_code == 201, answer.text
            # A job of its own, billed per job; and the customer's job, billed monthly (a
            # closed month: October 2026).
            events.append(wire_event(f"own-{i}", job_id=name, agent=name))
            events.append(
                wire_event(
                    f"cust-{i}",
                    job_id=f"of {name}",
                    agent=name,
                    customer_id=name,
                    occurred_at="2026-10-15T10:00:00Z",
                )
            )
        await record_accepted(http, events)

        for name in AWKWARD:
            q = _q(name)
            job = await http.get(f"/v1/jobs/{q}")
            assert job.status_code == 200, (name, job.text)
            assert (job.json()["job_id"], job.json()["cost_usd"]) == (name, "0.0003")

            entries = await http.get(f"/v1/jobs/{q}/entries")
            assert entries.status_code == 200, (name, entries.text)
            assert [e["event_id"] for e in entries.json()["items"]] == [
                f"own-{AWKWARD.index(name)}"
            ]

            changed = await http.patch(f"/v1/jobs/{q}", json={"title": f"T {name}"})
            assert changed.status_code == 200, (name, changed.text)
            assert (changed.json()["job_id"], changed.json()["title"]) == (name, f"T {name}")

            preview = await http.get(f"/v1/jobs/{q}/invoice")
            assert preview.status_code == 200, (name, preview.text)
            assert (preview.json()["job_id"], preview.json()["total_usd"]) == (name, "0.00")

            issued = await http.post(f"/v1/jobs/{q}/invoices")
            assert issued.status_code == 201, (name, issued.text)
            assert issued.json()["job_id"] == name

            agent = await http.get(f"/v1/agents/{q}")
            assert agent.status_code == 200, (name, agent.text)
            # Two calls of 0.0003 each: its own job's and the customer's.
            assert (agent.json()["agent"], agent.json()["events"]) == (name, 2)
            assert agent.json()["cost_usd"] == "0.0006"

            customer = await http.get(f"/v1/customers/{q}")
            assert customer.status_code == 200, (name, customer.text)
            assert customer.json()["id"] == name
            renamed = await http.patch(f"/v1/customers/{q}", json={"name": f"R {name}"})
            assert renamed.status_code == 200, (name, renamed.text)
            assert (renamed.json()["id"], renamed.json()["name"]) == (name, f"R {name}")

            granted = await http.post(f"/v1/customers/{q}/credits", json={"amount_usd": "5"})
            assert granted.status_code == 201, (name, granted.text)
            credits = await http.get(f"/v1/customers/{q}/credits")
            assert credits.status_code == 200, (name, credits.text)
            assert (credits.json()["customer_id"], credits.json()["balance_usd"]) == (name, "5")

            month = await http.get(f"/v1/customers/{q}/invoices/preview?month=2026-10")
            assert month.status_code == 200, (name, month.text)
            assert month.json()["customer"]["id"] == name
            billed = await http.post(f"/v1/customers/{q}/invoices", json={"month": "2026-10"})
            assert billed.status_code == 201, (name, billed.text)
            assert billed.json()["customer"]["id"] == name

        # A lower-case escape is the same slash; an unknown id is still a plain 404.
        assert (await http.get("/v1/jobs/team%2fa")).json()["job_id"] == "team/a"
        missing = await http.get(f"/v1/jobs/{_q('team/b')}")
        assert missing.status_code == 404
        assert "'team/b'" in missing.json()["detail"]
        # The path as the server decodes it, unescaped ("a b", "x+y"), still reads.
        assert (await http.get("/v1/agents/a b")).json()["agent"] == "a b"

        # A model id in a path-typed parameter reads the same encoded or not.
        for model in ("google/gemini-3.0-flash", "google%2Fgemini-3.0-flash"):
            listed = await http.get(f"/v1/models/{model}")
            assert listed.json()["id"] == "google/gemini-3.0-flash", listed.text
            history = await http.get(f"/v1/catalog/models/{model}/history")
            assert history.status_code == 200, history.text

        # The document still names each id a string parameter of one segment.
        document = (await http.get("/schema/openapi.json")).json()
        assert "`/v1/jobs/team%2Fa` is the job `team/a`" in document["info"]["description"]
        parameters = document["paths"]["/v1/jobs/{job_id}/entries"]["get"]["parameters"]
        job_id = next(p for p in parameters if p["name"] == "job_id")
        assert (job_id["in"], job_id["schema"]["type"]) == ("path", "string")


async def test_the_in_process_client_reads_them_too(client: AsyncTestClient[Any]) -> None:
    # Litestar's test client hands the query string in raw_path, and decoded "%25" twice.
    await record_accepted(client, [wire_event("e1", job_id="50%/x", agent="a%2Fb")])
    entries = await client.get(f"/v1/jobs/{_q('50%/x')}/entries?limit=1")
    assert [e["event_id"] for e in entries.json()["items"]] == ["e1"]
    agent = await client.get(f"/v1/agents/{_q('a%2Fb')}?from=2026-11-20T00:00:00Z")
    assert (agent.json()["agent"], agent.json()["events"]) == ("a%2Fb", 1)

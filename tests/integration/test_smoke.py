"""The service starts on real PostgreSQL, records an event and reads it back."""

from __future__ import annotations

from typing import Any

from tests.support.events import wire_event


async def test_an_accepted_event_shows_on_its_job(client: Any) -> None:
    # 1,000 input and 500 output tokens of google/gemini-3.0-flash for job-1
    event = wire_event("gen-1")
    response = await client.post("/v1/events", json=event)
    assert response.status_code == 201, response.text
    assert response.json() == {"id": "gen-1", "status": "accepted"}

    job = (await client.get("/v1/jobs/job-1")).json()
    # 1000 × $0.10/M + 500 × $0.40/M = $0.0001 + $0.0002
    assert job["cost_usd"] == "0.0003"
    assert job["events"] == 1
    assert job["lines"][0]["catalog_version"] == 1

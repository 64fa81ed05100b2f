"""The service starts on real PostgreSQL, records an event and reads it back."""

from __future__ import annotations

from typing import Any


async def test_an_accepted_event_shows_on_its_job(client: Any) -> None:
    event = {
        "id": "gen-1",
        "occurred_at": "2026-11-20T10:00:00Z",
        "job_id": "job-1",
        "agent": "ACHEEVY",
        "provider": "openrouter",
        "model": "google/gemini-3.0-flash",
        "input_tokens": 1000,
        "output_tokens": 500,
    }
    response = await client.post("/v1/events", json=event)
    assert response.status_code == 201, response.text
    assert response.json() == {"id": "gen-1", "status": "accepted"}

    job = (await client.get("/v1/jobs/job-1")).json()
    # 1000 × $0.10/M + 500 × $0.40/M = $0.0001 + $0.0002
    assert job["cost_usd"] == "0.0003"
    assert job["events"] == 1
    assert job["lines"][0]["catalog_version"] == 1

"""Every request has an id, sent back in ``X-Request-ID`` and written in its access line
and in any line about its failure: before, no log line carried one, and a 503's cause
(``request_failed``, which named no method or path either) could not be tied to the
request a client saw fail. A usable id the client sends (a gateway tracing its calls) is
kept; any other is replaced by one of LUC's."""

from __future__ import annotations

import re
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from structlog.testing import capture_logs

from service.app import create_app
from service.db import UNAVAILABLE
from tests.support.settings import settings_for

GENERATED = re.compile(r"[0-9a-f]{32}")


async def test_a_request_s_id_is_the_client_s_when_usable_and_written_in_its_access_line(
    client: AsyncTestClient[Any],
) -> None:
    with capture_logs() as logged:
        given = await client.get("/v1/agents", headers={"X-Request-ID": "gw-7f3a.call:42"})
        made = await client.get("/v1/agents")
        unusable = await client.get("/v1/agents", headers={"X-Request-ID": "has space"})
        too_long = await client.get("/v1/agents", headers={"X-Request-ID": "a" * 129})
        unrouted = await client.get("/v1/no-such-route", headers={"X-Request-ID": "r-404"})
    assert given.status_code == 200 and given.headers["x-request-id"] == "gw-7f3a.call:42"
    for answer in (made, unusable, too_long):
        assert GENERATED.fullmatch(answer.headers["x-request-id"]), answer.headers
    assert len({made.headers["x-request-id"], unusable.headers["x-request-id"]}) == 2
    assert unrouted.status_code == 404 and unrouted.headers["x-request-id"] == "r-404"
    access = [(e["route"], e["status"], e["request_id"]) for e in logged if e["event"] == "request"]
    assert access == [
        ("/v1/agents", 200, "gw-7f3a.call:42"),
        ("/v1/agents", 200, made.headers["x-request-id"]),
        ("/v1/agents", 200, unusable.headers["x-request-id"]),
        ("/v1/agents", 200, too_long.headers["x-request-id"]),
        ("unmatched", 404, "r-404"),
    ]


@pytest.mark.parametrize("path", ["/v1/agents", "/v1/jobs/job-1"])
async def test_a_failed_request_s_line_names_its_id_method_and_path(
    database_url: str, path: str
) -> None:
    app = create_app(settings_for(database_url, LUC_AUTH="off"))
    async with AsyncTestClient(app=app) as client:
        app.state.luc.pool.terminate()  # PostgreSQL out of reach from here on
        with capture_logs() as logged:
            failed = await client.get(path, headers={"X-Request-ID": "trace-503"})
    assert failed.status_code == 503 and failed.json()["detail"] == UNAVAILABLE
    assert failed.headers["x-request-id"] == "trace-503"
    # (The background tasks say the outage too, in lines of their own.)
    said = [
        (e["event"], e.get("method"), e.get("path"), e.get("request_id"))
        for e in logged
        if e["event"] == "request_failed"
    ]
    assert said == [("request_failed", "GET", path, "trace-503")], said

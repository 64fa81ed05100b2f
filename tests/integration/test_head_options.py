"""HEAD is answered as GET without the body on every route that answers GET (RFC 9110
§9.3.2; load balancers and ``curl -I`` probe so; it was a 405), and OPTIONS, which tells
only the methods a route allows, needs no key (it was a 401 even on the public probes)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import asyncpg
import httpx
from prometheus_client.parser import text_string_to_metric_families

from service.auth.keys import create_key


async def test_head_is_get_without_its_body_and_options_needs_no_key(
    server_factory: Callable[..., Any], db: asyncpg.Connection
) -> None:
    server = server_factory(LUC_AUTH="on")
    _, key = await create_key(db, "finance", "read")
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        for path in ("/healthz", "/readyz", "/schema/openapi.json"):
            got = await http.get(path)
            head = await http.head(path)
            assert head.status_code == got.status_code == 200, path
            assert head.content == b""
            assert head.headers["content-type"] == got.headers["content-type"]
            assert head.headers["content-length"] == str(len(got.content)), path

        # A route that needs a key needs it for HEAD too, and answers as GET with it.
        assert (await http.head("/v1/jobs")).status_code == 401
        read = {"Authorization": f"Bearer {key}"}
        jobs = await http.head("/v1/jobs", headers=read)
        assert jobs.status_code == 200 and jobs.content == b""
        # A route with no GET still refuses HEAD, naming what it allows.
        batch = await http.head("/v1/events/batch", headers=read)
        assert batch.status_code == 405
        assert "POST" in batch.headers["allow"]

        for path in ("/healthz", "/v1/jobs", "/v1/events/batch"):
            options = await http.options(path)
            assert options.status_code == 204, (path, options.text)
            assert "OPTIONS" in options.headers["allow"]

        # /metrics names a HEAD as HEAD: an operator sees the probes for what they are.
        exposition = (await http.get("/metrics", headers=read)).text
        counted = {
            (s.labels["method"], s.labels["status"]): s.value
            for family in text_string_to_metric_families(exposition)
            if family.name == "luc_http_request_duration_seconds"
            for s in family.samples
            if s.name.endswith("_count") and s.labels["route"] == "/healthz"
        }
        assert counted[("HEAD", "200")] == 1
        assert counted[("GET", "200")] >= 1

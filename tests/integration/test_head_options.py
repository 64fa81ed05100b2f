"""HEAD is answered as GET without the body on every route that answers GET (RFC 9110
§9.3.2; load balancers and ``curl -I`` probe so; it was a 405), and OPTIONS, which tells
only the methods a route allows, needs no key (it was a 401 even on the public probes)."""

from __future__ import annotations

import json
import re
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


_OPERATIONS = frozenset(("get", "put", "post", "patch", "delete"))
"""The keys of a path item in the document that are methods (the others: parameters…)."""


def _methods(answer: httpx.Response) -> set[str]:
    return set(answer.headers["allow"].split(", "))


async def test_options_names_every_method_the_document_lists_for_its_path(
    server_factory: Callable[..., Any],
) -> None:
    # Litestar kept the OPTIONS answer of a path's first handler: OPTIONS /v1/budgets/1 said
    # "GET, OPTIONS" while DELETE and PATCH are served there, /v1/keys left out GET.
    server = server_factory(LUC_AUTH="on")
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        document = (await http.get("/schema/openapi.json")).json()
        for template, operations in document["paths"].items():
            documented = {m.upper() for m in operations if m in _OPERATIONS}
            allowed = {*documented, "OPTIONS", *(["HEAD"] if "GET" in documented else [])}
            path = re.sub(r"\{[^}]+\}", "1", template)  # "1" is a string and an integer id
            options = await http.options(path)  # no key: it tells only the methods
            assert options.status_code == 204, (path, options.text)
            assert _methods(options) == allowed, path
            # A method the route lacks is refused naming the same ones.
            refused = await http.request("TRACE", path)
            assert refused.status_code == 405, (path, refused.text)
            assert _methods(refused) == allowed, path


async def test_a_request_no_route_takes_has_its_access_line_and_its_series(
    server_factory: Callable[..., Any], db: asyncpg.Connection
) -> None:
    # A 404 for a mistyped path and a 405 for a method the route lacks were answered before
    # any middleware: no access line, no series, so a gateway posting to /v1/event (no "s")
    # was invisible to the operator.
    server = server_factory(LUC_AUTH="on", LUC_LOG_LEVEL="info", LUC_LOG_FORMAT="json")
    _, key = await create_key(db, "prometheus", "read")
    read = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        assert (await http.post("/v1/event", json={}, headers=read)).status_code == 404
        assert (await http.put("/v1/events", json={}, headers=read)).status_code == 405
        assert (await http.get("/v1/jobs", headers=read)).status_code == 200
        exposition = (await http.get("/metrics", headers=read)).text
    counted = {
        (s.labels["route"], s.labels["method"], s.labels["status"]): s.value
        for family in text_string_to_metric_families(exposition)
        if family.name == "luc_http_request_duration_seconds"
        for s in family.samples
        if s.name.endswith("_count")
    }
    assert counted[("unmatched", "POST", "404")] == 1
    assert counted[("unmatched", "PUT", "405")] == 1
    assert counted[("/v1/jobs", "GET", "200")] == 1  # a routed request is counted once
    lines = [json.loads(x) for x in server.log_path.read_text().splitlines() if x.startswith("{")]
    access = [
        (x["method"], x["route"], x["path"], x["status"])
        for x in lines
        if x.get("logger") == "luc.access"
    ]
    assert ("POST", "unmatched", "/v1/event", 404) in access
    assert ("PUT", "unmatched", "/v1/events", 405) in access
    assert [a for a in access if a[2] == "/v1/jobs"] == [("GET", "/v1/jobs", "/v1/jobs", 200)]

"""A query parameter given twice (``?from=A&from=B``) is a 400 naming it, on every route
that takes one: LUC's query parameters each take one value, and Litestar kept one of the
two silently, answering for a range or a filter the client did not ask for."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from tests.support.events import record_accepted, wire_event


class PathValues(dict[str, str]):
    """A value for every path parameter (the route then may not find what it names: the
    parameters are refused before anything is looked up)."""

    def __missing__(self, name: str) -> str:
        return "1"


async def test_every_query_parameter_given_twice_is_refused_by_name(
    server_factory: Callable[..., Any],
) -> None:
    server = server_factory()
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        document = (await http.get("/schema/openapi.json")).json()
        asked = []
        for path, operations in document["paths"].items():
            for method, operation in operations.items():
                names = [p["name"] for p in operation.get("parameters", []) if p["in"] == "query"]
                url = path.format_map(PathValues())
                for name in names:
                    answer = await http.request(method, url, params=[(name, "1"), (name, "2")])
                    assert answer.status_code == 400, (method, path, name, answer.text)
                    assert answer.json()["detail"] == (
                        f"{name}: given more than once; it takes one value"
                    ), (method, path, name)
                    asked.append(f"{method.upper()} {path} {name}")
        # The walk reached the routes the document lists with query parameters.
        assert "GET /v1/jobs from" in asked
        assert "GET /v1/usage group_by" in asked
        assert "GET /v1/exports/focus to" in asked
        assert "GET /v1/catalog/diff from" in asked
        assert len(asked) >= 40, asked


async def test_a_repeated_range_bound_no_longer_picks_one(
    server_factory: Callable[..., Any],
) -> None:
    server = server_factory()
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        await record_accepted(http, [wire_event("e1"), wire_event("e2", job_id="job-2")])
        # Each bound once: a well-formed range (both jobs are in it).
        once = await http.get("/v1/jobs?from=2026-11-20T00:00:00Z&to=2026-11-21T00:00:00Z")
        assert [j["job_id"] for j in once.json()["items"]] == ["job-1", "job-2"]
        twice = await http.get(
            "/v1/jobs?from=2026-11-20T00:00:00Z&from=2026-11-21T00:00:00Z&agent=ACHEEVY"
        )
        assert twice.status_code == 400
        assert twice.json()["detail"] == "from: given more than once; it takes one value"
        # An empty value is no value (below): beside a real one it is not a repeat.
        empty = await http.get("/v1/jobs?agent=ACHEEVY&agent=")
        assert [j["job_id"] for j in empty.json()["items"]] == ["job-1", "job-2"]


async def test_a_filter_left_blank_filters_nothing_as_a_bound_left_blank_does(
    server_factory: Callable[..., Any],
) -> None:
    """SPEC §5 writes ``/v1/usage?group_by=…&from=&to=&agent=&model=&job_id=``, and httpx
    sends a parameter set to None as ``agent=``: ``from=`` read as no bound, but ``agent=``
    as the agent "" (which no event has), a silently empty answer."""
    server = server_factory()
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        await record_accepted(http, [wire_event("e1"), wire_event("e2", job_id="job-2")])
        plain = await http.get("/v1/usage?group_by=agent")
        blank = await http.get(
            "/v1/usage?group_by=agent&from=&to=&agent=&model=&job_id=&provider=&customer_id="
        )
        assert blank.status_code == 200, blank.text
        assert blank.json() == plain.json()
        assert [r["events"] for r in blank.json()["rows"]] == [2]
        nones = await http.get("/v1/jobs", params={"agent": None, "from": None, "to": None})
        assert [j["job_id"] for j in nones.json()["items"]] == ["job-1", "job-2"]
        # A blank value of a parameter the route does not take is no parameter either.
        assert (await http.get("/v1/usage?group_by=agent&form=")).json() == plain.json()


# Routes that take a query they do not declare: OpenAI's protocol (its SDKs may add their
# own, Azure's api-version) and what probes and scrapers call.
OPEN_QUERY = {
    "POST /v1/chat/completions",
    "GET /v1/models",
    "GET /v1/models/{model}",
    "GET /healthz",
    "GET /readyz",
    "GET /metrics",
}


async def test_every_query_parameter_a_route_does_not_take_is_refused_by_name(
    server_factory: Callable[..., Any],
) -> None:
    server = server_factory()
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        document = (await http.get("/schema/openapi.json")).json()
        refused = []
        for path, operations in document["paths"].items():
            for method, operation in operations.items():
                route = f"{method.upper()} {path}"
                if route in OPEN_QUERY:
                    continue
                names = sorted(
                    p["name"] for p in operation.get("parameters", []) if p["in"] == "query"
                )
                url = path.format_map(PathValues())
                answer = await http.request(method, url, params={"form": "1"})
                assert answer.status_code == 400, (route, answer.text)
                takes = ", ".join(names) or "none"
                assert answer.json()["detail"] == (
                    f"form: not a query parameter of this route (it takes: {takes})"
                ), route
                refused.append(route)
        assert "GET /v1/usage" in refused
        assert "POST /v1/events/batch" in refused
        assert len(refused) >= 50, refused


async def test_a_misspelt_range_bound_no_longer_reads_the_whole_range(
    server_factory: Callable[..., Any],
) -> None:
    server = server_factory()
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        await record_accepted(http, [wire_event("e1")])
        typo = await http.get("/v1/usage?group_by=agent&form=2026-11-21T00:00:00Z")
        assert typo.status_code == 400
        assert typo.json()["detail"] == (
            "form: not a query parameter of this route (it takes: agent, customer_id, from, "
            "group_by, job_id, model, provider, to)"
        )
        # What probes, scrapers and OpenAI's SDKs add is still taken.
        assert (await http.get("/healthz?probe=lb")).status_code == 200
        assert (await http.get("/metrics?name[]=luc_cost_usd_total")).status_code == 200
        models = await http.get("/v1/models?api-version=2024-06-01")
        assert models.status_code == 200


async def test_a_number_in_the_query_is_read_only_as_luc_writes_one(
    server_factory: Callable[..., Any],
) -> None:
    """Litestar read ``limit=1e3`` as 1000, ``budget_id=-0`` as 0 and ``from=1_0`` as 10:
    a value the client may not have meant, answered as if it had."""
    server = server_factory()
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        for url, name, value in [
            ("/v1/jobs?limit=1e3", "limit", "1e3"),
            ("/v1/alerts?budget_id=-0", "budget_id", "-0"),
            ("/v1/catalog/diff?from=1_0&to=1", "from", "1_0"),
            ("/v1/catalog/diff?from=1&to=01", "to", "01"),
            ("/v1/jobs?limit=%2B5", "limit", "+5"),
        ]:
            refused = await http.get(url)
            assert refused.status_code == 400, (url, refused.text)
            assert refused.json()["detail"] == (
                f"{name}: {value!r} is not a whole number (ASCII digits, no exponent, "
                "separator or leading zero)"
            ), url
        assert (await http.get("/v1/jobs?limit=2")).status_code == 200
        assert (await http.get("/v1/catalog/diff?from=1&to=1")).status_code == 200
        # A negative number is a number: its route says what it takes.
        negative = await http.get("/v1/jobs?limit=-1")
        assert negative.json()["detail"] == "limit must be between 1 and 1000"

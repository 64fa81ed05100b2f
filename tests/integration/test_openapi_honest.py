"""The OpenAPI document says what the server enforces on a request: a client generated from
it (or a fuzzer walking it, as Schemathesis did) must not find a query parameter the server
requires documented as optional, a closed list of values or a page-size range left out, or
a body that refuses unknown fields documented as taking any; nor an answer (a status, a
content type, a shape) the document does not list. Each test asks the real server and
holds the document to its answer."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx
from litestar.testing import AsyncTestClient

from tests.support.events import record_accepted, wire_event

UNKNOWN_FIELD = "Object contains unknown field"


class PathValues(dict[str, str]):
    """A value for every path parameter: the parameters are refused before anything is
    looked up, so what the path names need not exist."""

    def __missing__(self, name: str) -> str:
        return "1"


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in ("get", "post", "put", "patch", "delete")
    ]


def _query_parameters(operation: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in operation.get("parameters", []) if p["in"] == "query"}


async def test_a_query_parameter_the_server_requires_is_documented_as_required(
    server_factory: Callable[..., Any],
) -> None:
    server = server_factory()
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        document = (await http.get("/schema/openapi.json")).json()
        required_by_server = []
        for method, path, operation in _operations(document):
            if method != "get":
                continue
            answer = await http.get(path.format_map(PathValues()))
            if answer.status_code not in (400, 422):
                continue
            detail = answer.json()["detail"]
            for name, parameter in _query_parameters(operation).items():
                if detail.startswith((f"{name} is required", f"{name}: required")):
                    required_by_server.append(f"GET {path} {name}")
                    assert parameter.get("required") is True, (path, name, detail)
        # The walk met the routes that require one (reconciliation's was documented optional).
        assert "GET /v1/reconciliation group_by" in required_by_server
        assert "GET /v1/exports/focus from" in required_by_server


async def test_a_query_parameter_with_a_closed_list_of_values_documents_the_list(
    server_factory: Callable[..., Any],
) -> None:
    server = server_factory()
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        document = (await http.get("/schema/openapi.json")).json()
        listed = {}
        for method, path, operation in _operations(document):
            if method != "get":
                continue
            for name, parameter in _query_parameters(operation).items():
                if name in ("group_by", "cursor"):
                    continue  # comma-separated keys; an opaque token
                answer = await http.get(path.format_map(PathValues()), params={name: "zz"})
                if answer.status_code not in (400, 422):
                    continue
                found = re.search(r"(?:must be|is not) one of (.+)$", answer.json()["detail"])
                if found is None:
                    continue
                values = found.group(1).split(", ")
                listed[f"GET {path} {name}"] = values
                assert parameter["schema"].get("enum") == values, (path, name, parameter)
        assert listed["GET /v1/invoices/{number} format"] == ["json", "csv", "html"]
        assert listed["GET /v1/invoices/{number} view"] == ["customer", "internal"]
        assert listed["GET /v1/budgets scope"] == ["global", "agent", "job", "model", "customer"]
        assert listed["GET /v1/alerts type"] == [
            "budget.threshold_crossed",
            "customer.credits_low",
            "customer.credits_exhausted",
        ]


async def test_every_page_size_documents_its_range(server_factory: Callable[..., Any]) -> None:
    server = server_factory()
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        document = (await http.get("/schema/openapi.json")).json()
        paged = []
        for method, path, operation in _operations(document):
            limit = _query_parameters(operation).get("limit")
            if method != "get" or limit is None:
                continue
            answer = await http.get(path.format_map(PathValues()), params={"limit": "0"})
            assert answer.status_code == 400, (path, answer.text)
            assert answer.json()["detail"] == "limit must be between 1 and 1000", path
            assert (limit["schema"].get("minimum"), limit["schema"].get("maximum")) == (1, 1000)
            paged.append(path)
        assert len(paged) >= 7, paged


async def test_a_body_that_refuses_unknown_fields_is_documented_as_closed(
    server_factory: Callable[..., Any],
) -> None:
    server = server_factory()
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        document = (await http.get("/schema/openapi.json")).json()
        schemas = document["components"]["schemas"]
        closed = []
        for method, path, operation in _operations(document):
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if body is None or "$ref" not in body["schema"]:
                continue
            name = body["schema"]["$ref"].rsplit("/", 1)[-1]
            url = path.format_map(PathValues())
            answer = await http.request(method, url, json={"zz_not_a_field": 1})
            if UNKNOWN_FIELD in answer.text:
                assert schemas[name].get("additionalProperties") is False, (method, path, name)
                closed.append(f"{method.upper()} {path}")
            else:
                assert schemas[name].get("additionalProperties") is not False, (method, path)
        assert "POST /v1/budgets" in closed
        assert "PATCH /v1/customers/{customer_id}" in closed
        assert len(closed) >= 14, closed


async def test_a_budgets_thresholds_are_documented_as_the_numbers_it_takes(
    server_factory: Callable[..., Any],
) -> None:
    """SPEC §10 writes ``"thresholds": [0.5, 0.8, 1.0]``: numbers, as the answer gives them.
    The request bodies documented them as strings (a ``Decimal`` field), so a client made
    from the document sent strings and a validator refused SPEC's own example."""
    server = server_factory()
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        schemas = (await http.get("/schema/openapi.json")).json()["components"]["schemas"]
        for name in ("BudgetIn", "BudgetPatch"):
            [array] = [
                s for s in schemas[name]["properties"]["thresholds"]["oneOf"] if "items" in s
            ]
            assert array == {"type": "array", "items": {"type": "number"}}, name
        assert schemas["BudgetOut"]["properties"]["thresholds"]["items"] == {"type": "number"}
        made = await http.post(
            "/v1/budgets",
            json={"scope": "global", "period": "day", "limit_usd": "10", "thresholds": [0.5, 1]},
        )
        assert made.status_code == 201, made.text
        assert made.json()["thresholds"] == [0.5, 1.0]


async def test_a_missing_referent_named_in_the_body_is_a_422_naming_it(
    server_factory: Callable[..., Any],
) -> None:
    # A catalog version on a parent that does not exist was a 404 (which Schemathesis's
    # stateful walk found undocumented), where a customer's unknown plan_id or a job's
    # unknown customer_id is a 422 naming the field: the route exists, the client's input
    # names what does not. Now the same 422, and the document no longer offers a 404 for
    # an operation whose path and query name nothing.
    server = server_factory()
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        document = (await http.get("/schema/openapi.json")).json()
        answers = {
            "parent": await http.post(
                "/v1/catalog/versions",
                json={"effective_from": "2025-01-01T00:00:00Z", "parent": 606, "models": []},
            ),
            "plan_id": await http.post(
                "/v1/customers", json={"id": "c-606", "name": "C", "plan_id": "plan-606"}
            ),
        }
        for field, answer in answers.items():
            assert answer.status_code == 422, (field, answer.text)
            assert answer.json()["detail"].startswith(f"{field}: "), answer.text
        assert answers["parent"].json()["detail"] == "parent: catalog version 606 does not exist"
        create = document["paths"]["/v1/catalog/versions"]["post"]
        assert "422" in create["responses"] and "404" not in create["responses"]
        # The catalog in force is a resource a request can miss without naming it.
        assert "404" in document["paths"]["/v1/catalog"]["get"]["responses"]


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    return document["components"]["schemas"][ref.rsplit("/", 1)[-1]] if ref else schema


def _matching(document: dict[str, Any], schema: dict[str, Any], body: dict[str, Any]) -> list[Any]:
    """The alternatives of ``schema`` whose required fields ``body`` has and whose
    properties name every field of ``body``."""
    alternatives = schema.get("anyOf") or schema.get("oneOf") or [schema]
    found = []
    for alternative in map(lambda s: _resolve(document, s), alternatives):
        if set(alternative.get("required", [])) <= set(body) <= set(alternative["properties"]):
            found.append(alternative.get("title"))
    return found


async def test_every_form_of_an_invoice_is_documented(
    server_factory: Callable[..., Any],
) -> None:
    # Schemathesis with a read key on a loaded ledger: ?format=csv answered text/csv and
    # ?view=internal an invoice without digest, while the document promised only the
    # customer's JSON (InvoiceOut, digest required).
    server = server_factory()
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        await record_accepted(http, [wire_event("e1"), wire_event("e2")])
        issued = await http.post("/v1/jobs/job-1/invoices")
        assert issued.status_code == 201, issued.text
        number = issued.json()["number"]
        document = (await http.get("/schema/openapi.json")).json()
        content = document["paths"]["/v1/invoices/{number}"]["get"]["responses"]["200"]["content"]
        for form, media_type in (("csv", "text/csv"), ("html", "text/html")):
            answer = await http.get(f"/v1/invoices/{number}", params={"format": form})
            assert answer.status_code == 200
            assert answer.headers["content-type"] == f"{media_type}; charset=utf-8"
            assert content[media_type]["schema"] == {"type": "string"}
        customer = (await http.get(f"/v1/invoices/{number}")).json()
        internal = (await http.get(f"/v1/invoices/{number}", params={"view": "internal"})).json()
        assert "digest" in customer and "digest" not in internal
        assert internal["view"] == "internal"
        json_schema = content["application/json"]["schema"]
        assert _matching(document, json_schema, customer) == ["InvoiceOut"]
        assert _matching(document, json_schema, internal) == ["InvoiceInternalOut"]


async def test_a_body_field_with_a_closed_list_of_values_documents_the_list(
    client: AsyncTestClient[Any],
) -> None:
    # BudgetIn's scope, period and measure and JobPatch's status were plain strings in the
    # document, though the server takes only a few values of each: a generated client
    # offered none of them and a fuzzer sent anything.
    await record_accepted(client, [wire_event("e1")])  # job-1 exists, for its PATCH
    # Customer x exists, for a budget of scope customer.
    assert (await client.post("/v1/customers", json={"id": "x", "name": "X"})).status_code == 201
    document = (await client.get("/schema/openapi.json")).json()
    schemas = document["components"]["schemas"]
    budget = {"scope": "global", "period": "day", "limit_usd": "10"}

    def budget_with(field: str, value: str) -> dict[str, Any]:
        scope_id = {"scope_id": "x"} if field == "scope" and value != "global" else {}
        return {**budget, field: value, **scope_id}

    cases: list[tuple[str, str, str, Callable[[str, str], dict[str, Any]], str]] = [
        ("post", "/v1/budgets", "BudgetIn", budget_with, "scope"),
        ("post", "/v1/budgets", "BudgetIn", budget_with, "period"),
        ("post", "/v1/budgets", "BudgetIn", budget_with, "measure"),
        ("patch", "/v1/jobs/job-1", "JobPatch", lambda f, v: {f: v}, "status"),
    ]
    documented = {}
    for method, path, schema, body, field in cases:
        prop = schemas[schema]["properties"][field]
        # A field that may be absent (JobPatch) documents the list on its text alternative.
        enum = prop.get("enum") or next(
            (a["enum"] for a in prop.get("oneOf", []) if "enum" in a), None
        )
        documented[f"{schema}.{field}"] = enum
        refused = await client.request(method, path, json=body(field, "zz"))
        assert refused.status_code == 422, refused.text
        found = re.match(
            rf"{field}: (?:'zz' is not|must be) one of ([a-z_]+(?:, [a-z_]+)*)",
            refused.json()["detail"],
        )
        assert found is not None, refused.text
        assert found.group(1).split(", ") == enum, (schema, field, refused.text)
        for value in enum:
            taken = await client.request(method, path, json=body(field, value))
            assert taken.is_success, (schema, field, value, taken.text)
    assert documented == {
        "BudgetIn.scope": ["global", "agent", "job", "model", "customer"],
        "BudgetIn.period": ["lifetime", "day", "month"],
        "BudgetIn.measure": ["cost", "actual_cost", "price"],
        "JobPatch.status": ["open", "closed"],
    }
    # What comes back names the same values (a budget, and its standing in a check).
    for answer in ("BudgetOut", "StandingOut"):
        for field in ("scope", "period", "measure"):
            assert schemas[answer]["properties"][field]["enum"] == documented[f"BudgetIn.{field}"]

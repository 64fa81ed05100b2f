"""Reads that take a model take it as events do (SPEC §2: a catalog id or an alias).

``GET /v1/usage?model=``: an alias filters on the model it names, as pricing resolved it,
whether the events were sent by the alias or by the id, from a rollup or from the ledger.
``GET /v1/catalog/models/{alias}/history``: the price history of the model it names.

Events, by hand: three calls of 1,000 input and 500 output tokens of
google/gemini-3.0-flash (0.0003 USD each), two sent by the alias ``gemini-3.0-flash``, one
by the id; one call of anthropic/claude-haiku-4.5, which the filter leaves out.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from litestar.testing import AsyncTestClient

from tests.support.events import record_accepted, wire_event


async def test_the_model_filter_takes_an_alias_as_events_do(
    client: AsyncTestClient[Any],
) -> None:
    await record_accepted(
        client,
        [
            wire_event("a1", model="gemini-3.0-flash"),
            wire_event("a2", model="gemini-3.0-flash", agent="ORACLE"),
            wire_event("a3", model="google/gemini-3.0-flash"),
            wire_event("a4", model="anthropic/claude-haiku-4.5"),
        ],
    )
    # From a rollup (no range), then from the ledger (a range not on midnights).
    for window in ("", "&from=2026-11-20T09:00:00Z&to=2026-11-20T11:00:00Z"):
        for name in ("gemini-3.0-flash", "google/gemini-3.0-flash"):
            response = await client.get(f"/v1/usage?group_by=model&model={name}{window}")
            assert response.status_code == 200, response.text
            rows = [(r["model"], r["events"], r["cost_usd"]) for r in response.json()["rows"]]
            assert rows == [("google/gemini-3.0-flash", 3, "0.0009")], (name, window)
    by_agent = await client.get("/v1/usage?group_by=agent&model=gemini-3.0-flash")
    assert [(r["agent"], r["events"]) for r in by_agent.json()["rows"]] == [
        ("ACHEEVY", 2),
        ("ORACLE", 1),
    ]
    # A name that is neither an id nor an alias is taken as it is: no rows.
    unknown = await client.get("/v1/usage?group_by=model&model=gemini")
    assert unknown.json()["rows"] == []


async def test_a_models_price_history_is_found_by_its_alias_too(
    client: AsyncTestClient[Any],
) -> None:
    by_id = await client.get("/v1/catalog/models/google/gemini-3.0-flash/history")
    assert by_id.status_code == 200, by_id.text
    by_alias = await client.get("/v1/catalog/models/gemini-3.0-flash/history")
    assert by_alias.status_code == 200, by_alias.text
    assert by_alias.json() == by_id.json()
    assert by_alias.json()["model_id"] == "google/gemini-3.0-flash"
    assert [v["price"]["input"] for v in by_alias.json()["versions"]] == ["0.1"]
    unknown = await client.get("/v1/catalog/models/gemini/history")
    assert unknown.status_code == 404, unknown.text


async def test_the_history_path_the_openapi_document_names_is_the_one_that_answers(
    client: AsyncTestClient[Any],
) -> None:
    """The route is one path parameter that must end in ``/history``; the document named it
    ``/v1/catalog/models/{model_path}``, and a client built from it got a 404 for every
    model. Filled in as the document says, the id percent-encoded, it answers."""
    document = (await client.get("/schema/openapi.json")).json()
    [template] = [p for p in document["paths"] if p.startswith("/v1/catalog/models/")]
    assert template == "/v1/catalog/models/{model_id}/history"
    [parameter] = document["paths"][template]["get"]["parameters"]
    assert (parameter["name"], parameter["in"]) == ("model_id", "path")
    url = template.format(model_id=quote("google/gemini-3.0-flash", safe=""))
    assert url == "/v1/catalog/models/google%2Fgemini-3.0-flash/history"
    history = await client.get(url)
    assert history.status_code == 200, history.text
    assert history.json()["model_id"] == "google/gemini-3.0-flash"

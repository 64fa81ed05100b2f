"""A JSON body of the wrong type is refused, on every route that takes one, as an event's
fields are (SPEC §2: a wrong type is rejected with a clear, per-field message). Litestar
converts leniently: ``"dry_run": "false"`` would have been read as false and a re-rating
applied, ``"parent": "1"`` taken as version 1, ``1000.0`` as 1000. Nothing is changed by a
refused request."""

from __future__ import annotations

from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

pytestmark = pytest.mark.asyncio

SINCE = "2026-11-01T00:00:00Z"
MODEL = {"id": "acme/rocket-1", "name": "Rocket", "input": "1", "output": "2"}


@pytest.mark.parametrize(
    ("path", "body", "detail"),
    [
        pytest.param(
            "/v1/catalog/rerate",
            {"since": SINCE, "dry_run": "false"},
            "dry_run: Expected `bool`, got `str`",
            id="dry_run as a string",
        ),
        pytest.param(
            "/v1/catalog/rerate",
            {"since": SINCE, "dry_run": 0},
            "dry_run: Expected `bool`, got `int`",
            id="dry_run as a number",
        ),
        pytest.param(
            "/v1/plans/none/reprice",
            {"since": SINCE, "dry_run": "true"},
            "dry_run: Expected `bool`, got `str`",
            id="a plan's dry_run as a string",
        ),
        pytest.param(
            "/v1/catalog/versions",
            {"effective_from": SINCE, "parent": "1", "models": [MODEL]},
            "parent: Expected `int | null`, got `str`",
            id="parent as a string",
        ),
        pytest.param(
            "/v1/catalog/versions",
            {"effective_from": SINCE, "models": [{**MODEL, "context_tokens": 1000.0}]},
            "models[0].context_tokens: Expected `int | null`, got `float`",
            id="context window as a float",
        ),
        pytest.param(
            "/v1/customers",
            {"id": "c1", "name": "C", "credit_stop": "true"},
            "credit_stop: Expected `bool`, got `str`",
            id="credit_stop as a string",
        ),
        pytest.param(
            "/v1/customers",
            {"id": "c1", "name": "C", "credit_stop": 1},
            "credit_stop: Expected `bool`, got `int`",
            id="credit_stop as a number",
        ),
        pytest.param(
            "/v1/catalog/rerate",
            {"since": SINCE, "dry_run": True, "colour": "red"},
            "Object contains unknown field `colour`",
            id="unknown field",
        ),
    ],
)
async def test_a_body_value_of_the_wrong_type_is_a_400_naming_its_field(
    client: AsyncTestClient[Litestar], path: str, body: dict[str, Any], detail: str
) -> None:
    before = (await client.get("/v1/catalog")).json()
    refused = await client.post(path, json=body)
    assert refused.status_code == 400, refused.text
    assert refused.json()["detail"] == f"Validation failed for POST {path}: {detail}"
    assert (await client.get("/v1/catalog")).json() == before
    assert (await client.get("/v1/customers")).json()["items"] == []


async def test_a_name_given_twice_in_a_body_is_a_400_naming_it_and_nothing_is_created(
    client: AsyncTestClient[Litestar],
) -> None:
    # Litestar's decoder keeps the last value: this customer would have been created with
    # credit_stop false, though the body also says true.
    body = b'{"id": "c1", "name": "C", "credit_stop": true, "credit_stop": false}'
    refused = await client.post(
        "/v1/customers", content=body, headers={"content-type": "application/json"}
    )
    assert refused.status_code == 400, refused.text
    assert refused.json()["detail"] == (
        "Validation failed for POST /v1/customers: credit_stop: given more than once; a JSON "
        "object's names must be unique, and LUC will not guess which value was meant"
    )
    assert (await client.get("/v1/customers")).json()["items"] == []
    # The same body with each name once is taken.
    created = await client.post(
        "/v1/customers", content=body.replace(b', "credit_stop": false', b"")
    )
    assert created.status_code == 201, created.text
    assert created.json()["credit_stop"] is True

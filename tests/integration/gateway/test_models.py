"""``GET /v1/models``: the catalog in force in OpenAI's list format, readable with the key
an OpenAI SDK calls the proxy with."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.testing import AsyncTestClient

pytestmark = pytest.mark.asyncio

AIMS_EFFECTIVE = 1735689600  # aims-v1 takes effect 2025-01-01T00:00:00Z
AIMS_IDS = [
    "anthropic/claude-haiku-4.5",
    "anthropic/claude-opus-4.5",
    "anthropic/claude-opus-4.6",
    "anthropic/claude-sonnet-4.5",
    "google/gemini-2.5-flash-preview",
    "google/gemini-3-pro-preview",
    "google/gemini-3.0-flash",
    "meta-llama/llama-3.3-70b-instruct",
    "openai/gpt-5.1",
    "openai/gpt-5.2",
]


async def test_the_catalog_in_force_is_listed_as_openai_lists_its_models(
    client: AsyncTestClient[Any],
) -> None:
    response = await client.get("/v1/models")
    assert response.status_code == 200, response.text
    listing = response.json()
    assert listing["object"] == "list"
    assert [m["id"] for m in listing["data"]] == AIMS_IDS
    flash = listing["data"][AIMS_IDS.index("google/gemini-3.0-flash")]
    assert flash == {
        "id": "google/gemini-3.0-flash",
        "object": "model",
        "created": AIMS_EFFECTIVE,
        "owned_by": "google",
        "name": "Gemini 3.0 Flash",
        "tier": "fast",
        "context_window": 1000000,
        "aliases": ["gemini-3.0-flash"],
    }
    llama = listing["data"][AIMS_IDS.index("meta-llama/llama-3.3-70b-instruct")]
    assert (llama["owned_by"], llama["aliases"]) == ("meta-llama", [])


async def test_a_new_version_adds_its_model_and_older_models_keep_their_first_appearance(
    client: AsyncTestClient[Any],
) -> None:
    created = await client.post(
        "/v1/catalog/versions",
        json={
            "effective_from": "2026-01-01T00:00:00Z",
            "parent": 1,
            "models": [
                {"id": "acme/tool-model", "name": "Tool", "tier": "economy", "input": "0.50",
                 "output": "1.50"},
                # A price change does not make Flash a new model.
                {"id": "google/gemini-3.0-flash", "name": "Gemini 3.0 Flash", "tier": "fast",
                 "input": "0.20", "output": "0.80"},
            ],
            "remove": ["openai/gpt-5.2"],
        },
    )  # fmt: skip
    assert created.status_code == 201, created.text
    data = {m["id"]: m for m in (await client.get("/v1/models")).json()["data"]}
    assert set(data) == (set(AIMS_IDS) - {"openai/gpt-5.2"}) | {"acme/tool-model"}
    assert data["acme/tool-model"]["created"] == 1767225600  # 2026-01-01T00:00:00Z
    assert (data["acme/tool-model"]["owned_by"], data["acme/tool-model"]["context_window"]) == (
        "acme",
        None,
    )
    assert data["google/gemini-3.0-flash"]["created"] == AIMS_EFFECTIVE


async def test_one_model_is_found_by_id_or_alias_and_an_unknown_one_is_an_openai_404(
    client: AsyncTestClient[Any],
) -> None:
    by_id = await client.get("/v1/models/google/gemini-3.0-flash")
    assert by_id.status_code == 200, by_id.text
    assert by_id.json()["id"] == "google/gemini-3.0-flash"
    by_alias = await client.get("/v1/models/gemini-3.0-flash")
    assert by_alias.json() == by_id.json()
    missing = await client.get("/v1/models/openai/gpt-nope")
    assert missing.status_code == 404
    error = missing.json()["error"]
    assert error["type"] == "not_found_error"
    assert error["message"].startswith("model 'openai/gpt-nope' is not in LUC's catalog")


async def test_a_path_no_route_has_answers_a_404_that_names_it(
    client: AsyncTestClient[Any],
) -> None:
    response = await client.get("/v1/modelz")
    assert response.status_code == 404
    assert response.json()["detail"] == (
        "no route GET /v1/modelz: the OpenAPI document at /schema lists LUC's routes"
    )

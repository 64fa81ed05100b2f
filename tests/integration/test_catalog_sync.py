"""`luc catalog sync` and `luc catalog import` against a fake OpenRouter on loopback.

The fake is a real HTTP server serving ``GET /api/v1/models`` in OpenRouter's shape
(reference/openrouter.md §5): per-token USD decimal strings, a dynamic ``"-1"`` router,
a model without cache prices, one with ``internal_reasoning``, one with cache read/write
prices, one with a per-request price; ``overrides`` on ``min_prompt_tokens`` (long-context
tiers, keys left out inheriting the base price) and one on a UTC time window (skipped). The
CLI runs as a child process, as an operator would run it; the versions it creates are read
back over REST.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from click.testing import CliRunner, Result

from service.cli import main
from service.settings import get_settings
from tests.support.commands import luc_on
from tests.support.fake_openrouter import FakeOpenRouter
from tests.support.paths import AIMS_CATALOG_FILE


def model(model_id: str, name: str, pricing: dict[str, Any], context_length: int) -> dict[str, Any]:
    """One entry of ``data[]`` with the fields OpenRouter serves."""
    return {
        "id": model_id,
        "canonical_slug": model_id,
        "name": name,
        "created": 1_750_000_000,
        "description": f"{name}.",
        "context_length": context_length,
        "architecture": {
            "modality": "text->text",
            "input_modalities": ["text"],
            "output_modalities": ["text"],
            "tokenizer": "Other",
            "instruct_type": None,
        },
        "pricing": pricing,
        "top_provider": {
            "context_length": context_length,
            "max_completion_tokens": 16384,
            "is_moderated": False,
        },
        "per_request_limits": None,
        "supported_parameters": ["max_tokens", "temperature", "tools"],
        "default_parameters": None,
        "expiration_date": None,
    }


def models_payload(deepseek_completion: str = "0.000002") -> dict[str, Any]:
    data = [
        model(
            "openai/gpt-4o-mini",
            "OpenAI: GPT-4o-mini",
            {
                "prompt": "0.00000015",
                "completion": "0.0000006",
                "request": "0",
                "image": "0.000217",
                "web_search": "0",
                # "0": not priced separately, so reasoning is billed at the output price.
                "internal_reasoning": "0",
                "input_cache_read": "0.000000075",
                # Past 100,000 prompt tokens the prompt costs double; the completion and
                # the cache read are left out, so they inherit the base price.
                "overrides": [{"min_prompt_tokens": 100000, "prompt": "0.0000003"}],
            },
            128000,
        ),
        model(
            # No cache prices at all; reasoning priced on its own.
            "deepseek/deepseek-r1",
            "DeepSeek: R1",
            {
                "prompt": "0.0000004",
                "completion": deepseek_completion,
                "internal_reasoning": "0.0000035",
                "request": "0",
                "image": "0",
                "web_search": "0",
                # Two tiers: past 64,000 the prompt price, past 128,000 the completion price
                # (each override's left-out keys at the base price, not the other tier's);
                # and a night-time discount LUC cannot hold: prices by the time of day.
                "overrides": [
                    {"min_prompt_tokens": 64000, "prompt": "0.0000008"},
                    {"utc_start": 1630, "utc_end": 30, "prompt": "0.0000002"},
                    {"min_prompt_tokens": 128000, "completion": "0.000004"},
                ],
            },
            163840,
        ),
        model(
            # Known to the AIMS catalog (standard): name and tier kept.
            "anthropic/claude-sonnet-4.5",
            "Anthropic: Claude Sonnet 4.5",
            {
                "prompt": "0.000003",
                "completion": "0.000015",
                "request": "0",
                "image": "0.0048",
                "web_search": "0",
                "internal_reasoning": "0",
                "input_cache_read": "0.0000003",
                "input_cache_write": "0.00000375",
                # The whole request at the long-context rate past 200,000 prompt tokens.
                "overrides": [
                    {
                        "min_prompt_tokens": 200000,
                        "prompt": "0.000006",
                        "completion": "0.0000225",
                        "input_cache_read": "0.0000006",
                        "input_cache_write": "0.0000075",
                    }
                ],
            },
            1000000,
        ),
        model(
            # Known (economy in AIMS); the rule alone would say fast (output 0.40).
            "meta-llama/llama-3.3-70b-instruct",
            "Meta: Llama 3.3 70B Instruct",
            {"prompt": "0.00000013", "completion": "0.0000004"},
            131072,
        ),
        model(
            "perplexity/sonar-pro",
            "Perplexity: Sonar Pro",
            {"prompt": "0.000003", "completion": "0.000015", "request": "0.005"},
            200000,
        ),
        model(
            "openai/o1-pro",
            "OpenAI: o1-pro",
            {"prompt": "0.00015", "completion": "0.0006"},
            200000,
        ),
        model(
            # Output exactly 0.30 per 1M: the fast floor is inclusive.
            "qwen/qwen-2.5-72b-instruct",
            "Qwen2.5 72B Instruct",
            {"prompt": "0.00000012", "completion": "0.0000003"},
            32768,
        ),
        model(
            # Output just under 0.30 per 1M: economy; many digits, moved exactly.
            "mistralai/mistral-nemo",
            "Mistral: Mistral Nemo",
            {"prompt": "0.0000000075", "completion": "0.00000029999"},
            131072,
        ),
        model(
            "openrouter/auto",
            "Auto Router",
            {"prompt": "-1", "completion": "-1"},
            2000000,
        ),
        model(
            "openai/text-embedding-3-small",
            "OpenAI: Text Embedding 3 Small",
            {"prompt": "0.00000002"},
            8192,
        ),
    ]
    return {"data": data, "total_count": len(data), "links": {"next": None}}


# The imported models as GET /v1/catalog/versions/{id} must show them, per 1M tokens,
# worked out by hand from the per-token strings above.
EXPECTED_IMPORTED = {
    "openai/gpt-4o-mini": {
        "name": "OpenAI: GPT-4o-mini",
        "tier": "fast",  # output 0.6 ≥ 0.30
        "input": "0.15",  # 0.00000015 × 10⁶
        "output": "0.6",
        "cache_read": "0.075",
        "cache_write": "0.15",  # absent: defaults to input
        "reasoning": "0.6",  # "0": falls back to output
        "per_request": "0",
        "context_tokens": 128000,
        # OpenRouter's "strictly greater than 100,000" is LUC's "at least 100,001"; the
        # completion and cache read inherit the base price, written out; cache write and
        # reasoning (not priced by OpenRouter) default to this entry's input and output.
        "long_context": [
            {
                "min_input_tokens": 100001,
                "input": "0.3",
                "output": "0.6",
                "cache_read": "0.075",
                "cache_write": "0.3",
                "reasoning": "0.6",
            }
        ],
    },
    "deepseek/deepseek-r1": {
        "name": "DeepSeek: R1",
        "tier": "fast",  # output 2
        "input": "0.4",
        "output": "2",
        "cache_read": "0.4",
        "cache_write": "0.4",
        "reasoning": "3.5",
        "per_request": "0",
        "context_tokens": 163840,
        # The separately priced reasoning keeps its base price in every tier.
        "long_context": [
            {
                "min_input_tokens": 64001,
                "input": "0.8",
                "output": "2",
                "cache_read": "0.8",
                "cache_write": "0.8",
                "reasoning": "3.5",
            },
            {
                "min_input_tokens": 128001,
                "input": "0.4",
                "output": "4",
                "cache_read": "0.4",
                "cache_write": "0.4",
                "reasoning": "3.5",
            },
        ],
    },
    "anthropic/claude-sonnet-4.5": {
        "name": "Claude Sonnet 4.5",  # the catalog's name, not OpenRouter's
        "tier": "standard",
        "input": "3",
        "output": "15",
        "cache_read": "0.3",
        "cache_write": "3.75",
        "reasoning": "15",
        "per_request": "0",
        "context_tokens": 1000000,
        # As the AIMS catalog has it: the import changes nothing of Sonnet's.
        "long_context": [
            {
                "min_input_tokens": 200001,
                "input": "6",
                "output": "22.5",
                "cache_read": "0.6",
                "cache_write": "7.5",
                "reasoning": "22.5",
            }
        ],
    },
    "meta-llama/llama-3.3-70b-instruct": {
        "name": "Llama 3.3 70B",
        "tier": "economy",  # kept from the AIMS catalog
        "input": "0.13",
        "output": "0.4",
        "cache_read": "0.13",
        "cache_write": "0.13",
        "reasoning": "0.4",
        "per_request": "0",
        "context_tokens": 131072,
        "long_context": [],
    },
    "perplexity/sonar-pro": {
        "name": "Perplexity: Sonar Pro",
        "tier": "standard",  # 8 ≤ 15 < 20
        "input": "3",
        "output": "15",
        "cache_read": "3",
        "cache_write": "3",
        "reasoning": "15",
        "per_request": "0.005",  # per call, not scaled
        "context_tokens": 200000,
        "long_context": [],
    },
    "openai/o1-pro": {
        "name": "OpenAI: o1-pro",
        "tier": "premium",  # 600 ≥ 20
        "input": "150",
        "output": "600",
        "cache_read": "150",
        "cache_write": "150",
        "reasoning": "600",
        "per_request": "0",
        "context_tokens": 200000,
        "long_context": [],
    },
    "qwen/qwen-2.5-72b-instruct": {
        "name": "Qwen2.5 72B Instruct",
        "tier": "fast",
        "input": "0.12",
        "output": "0.3",
        "cache_read": "0.12",
        "cache_write": "0.12",
        "reasoning": "0.3",
        "per_request": "0",
        "context_tokens": 32768,
        "long_context": [],
    },
    "mistralai/mistral-nemo": {
        "name": "Mistral: Mistral Nemo",
        "tier": "economy",
        "input": "0.0075",
        "output": "0.29999",
        "cache_read": "0.0075",
        "cache_write": "0.0075",
        "reasoning": "0.29999",
        "per_request": "0",
        "context_tokens": 131072,
        "long_context": [],
    },
}
NEW_MODELS = sorted(
    EXPECTED_IMPORTED.keys() - {"anthropic/claude-sonnet-4.5", "meta-llama/llama-3.3-70b-instruct"}
)


@pytest.fixture
def openrouter() -> Iterator[FakeOpenRouter]:
    """The fake OpenRouter, its ``GET /api/v1/models`` serving ``models_payload()``."""
    fake = FakeOpenRouter().start()
    fake.models = models_payload()["data"]
    yield fake
    fake.stop()


async def luc_in_process(database_url: str, *args: str, **env: str) -> Result:
    """The same command through click's runner: quicker, for the cases that fail early."""

    def invoke() -> Result:
        get_settings.cache_clear()  # settings are read once per process; read them anew
        try:
            return CliRunner().invoke(
                main, list(args), env={"LUC_DATABASE_URL": database_url, **env}
            )
        finally:
            get_settings.cache_clear()

    # In a thread: the command runs its own event loop.
    return await asyncio.to_thread(invoke)


def models_by_id(version: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m.pop("id"): m for m in (dict(m) for m in version["models"])}


async def test_sync_creates_a_version_only_when_openrouter_prices_change(
    client: Any, database_url: str, openrouter: FakeOpenRouter
) -> None:
    env = {"LUC_OPENROUTER_BASE_URL": openrouter.base_url}

    first = await luc_on(
        database_url, "catalog", "sync", "--label", "openrouter-1", check=False, **env
    )
    assert first.returncode == 0, first.stderr
    assert f"fetched {openrouter.base_url}/models" in first.stdout
    assert "skipped openrouter/auto: pricing.prompt is dynamic (-1)" in first.stdout
    assert (
        "skipped openai/text-embedding-3-small: "
        "pricing.prompt and pricing.completion are both required" in first.stdout
    )
    assert "8 models priced by the source, 2 skipped" in first.stdout
    assert (
        "skipped deepseek/deepseek-r1 pricing.overrides[1]: its condition utc_start/utc_end "
        "is a UTC time window: LUC prices an event by its tokens, never by the time of day; "
        "the model is imported without it"
    ) in first.stdout
    assert "created catalog version 2" in first.stdout
    assert "+ openai/o1-pro (premium): input 150, output 600" in first.stdout

    versions = (await client.get("/v1/catalog/versions")).json()["items"]
    assert [v["id"] for v in versions] == [1, 2]
    assert versions[1]["label"] == "openrouter-1"
    assert versions[1]["parent"] == 1
    current = (await client.get("/v1/catalog")).json()
    assert current["id"] == 2
    models = models_by_id(current)
    assert {m: models[m] for m in EXPECTED_IMPORTED} == EXPECTED_IMPORTED
    assert "openrouter/auto" not in models
    assert "openai/text-embedding-3-small" not in models
    # AIMS models the payload does not list are kept as they were, with aliases and default.
    assert models["anthropic/claude-opus-4.6"]["input"] == "5"
    assert models["google/gemini-3.0-flash"]["output"] == "0.4"
    assert len(models) == 10 + len(NEW_MODELS)
    assert current["aliases"] == {"gemini-3.0-flash": "google/gemini-3.0-flash"}
    assert current["default_model"] == "google/gemini-3.0-flash"

    diff = (await client.get("/v1/catalog/diff", params={"from": 1, "to": 2})).json()
    assert [m["id"] for m in diff["added"]] == NEW_MODELS
    assert diff["removed"] == []
    # Sonnet's prices (cache and long context) are the AIMS catalog's: unchanged.
    assert {c["id"]: c["fields"] for c in diff["changed"]} == {
        "meta-llama/llama-3.3-70b-instruct": [
            "input",
            "output",
            "cache_read",
            "cache_write",
            "reasoning",
            "context_tokens",
        ],
    }

    second = await luc_on(database_url, "catalog", "sync", check=False, **env)
    assert second.returncode == 0, second.stderr
    assert "no change: catalog version 2, in force at " in second.stdout
    assert "already has these prices" in second.stdout
    assert "created catalog version" not in second.stdout
    versions = (await client.get("/v1/catalog/versions")).json()["items"]
    assert [v["id"] for v in versions] == [1, 2]

    openrouter.models = models_payload(deepseek_completion="0.00000219")["data"]
    third = await luc_on(database_url, "catalog", "sync", check=False, **env)
    assert third.returncode == 0, third.stderr
    assert "~ deepseek/deepseek-r1: output 2 → 2.19" in third.stdout
    assert "created catalog version 3" in third.stdout
    versions = (await client.get("/v1/catalog/versions")).json()["items"]
    assert [v["id"] for v in versions] == [1, 2, 3]

    diff = (await client.get("/v1/catalog/diff", params={"from": 2, "to": 3})).json()
    assert diff["from"] == 2 and diff["to"] == 3
    assert diff["added"] == [] and diff["removed"] == []
    assert len(diff["changed"]) == 1
    change = diff["changed"][0]
    assert change["id"] == "deepseek/deepseek-r1"
    # The 64,001 tier inherits the base completion price, so it moves with it; the 128,001
    # tier has its own.
    assert change["fields"] == ["output", "long_context"]
    assert change["before"]["output"] == "2" and change["after"]["output"] == "2.19"
    assert [lc["output"] for lc in change["before"]["long_context"]] == ["2", "4"]
    assert [lc["output"] for lc in change["after"]["long_context"]] == ["2.19", "4"]
    assert (
        "long_context ≥ 64,001: input 0.8, output 2, cache_read 0.8, cache_write 0.8, "
        "reasoning 3.5; ≥ 128,001: input 0.4, output 4, cache_read 0.4, cache_write 0.4, "
        "reasoning 3.5 → ≥ 64,001: input 0.8, output 2.19,"
    ) in third.stdout
    # The separately priced reasoning does not follow the output price.
    assert change["before"]["reasoning"] == change["after"]["reasoning"] == "3.5"
    assert openrouter.requests == ["/api/v1/models"] * 3


async def test_import_of_a_saved_payload_matches_what_a_sync_would_create(
    client: Any, database_url: str, openrouter: FakeOpenRouter, tmp_path: Path
) -> None:
    saved = tmp_path / "openrouter-models.json"
    saved.write_text(json.dumps(models_payload()))

    dry = await luc_in_process(database_url, "catalog", "import", str(saved), "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "+ perplexity/sonar-pro (standard): input 3, output 15" in dry.stdout
    assert "dry run: no version created" in dry.stdout
    assert len((await client.get("/v1/catalog/versions")).json()["items"]) == 1

    done = await luc_on(
        database_url,
        "catalog",
        "import",
        str(saved),
        "--effective-from",
        "2026-11-01T00:00:00Z",
        "--label",
        "saved",
    )
    assert done.returncode == 0, done.stderr
    assert "skipped openrouter/auto: pricing.prompt is dynamic (-1)" in done.stdout
    assert "created catalog version 2 effective 2026-11-01T00:00:00Z" in done.stdout
    version = (await client.get("/v1/catalog/versions/2")).json()
    assert version["label"] == "saved"
    assert version["effective_from"] == "2026-11-01T00:00:00Z"
    models = models_by_id(version)
    assert {m: models[m] for m in EXPECTED_IMPORTED} == EXPECTED_IMPORTED

    # The same payload over HTTP finds nothing new.
    synced = await luc_in_process(
        database_url, "catalog", "sync", LUC_OPENROUTER_BASE_URL=openrouter.base_url
    )
    assert synced.exit_code == 0, synced.output
    assert "no change" in synced.stdout
    assert len((await client.get("/v1/catalog/versions")).json()["items"]) == 2


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(
            AIMS_CATALOG_FILE.read_text(),
            "expected OpenRouter's /api/v1/models shape",
            id="a catalog file in LUC's own shape",
        ),
        pytest.param(
            json.dumps(models_payload()["data"]),
            "expected OpenRouter's /api/v1/models shape",
            id="the model list without its data wrapper",
        ),
        pytest.param("<html>Bad gateway</html>", "is not JSON", id="not JSON"),
        pytest.param(
            json.dumps(
                {"data": [{"id": "a/b", "pricing": {"prompt": 0.000001, "completion": 0.000002}}]}
            ),
            "pricing.prompt is 1e-06, not a decimal string",
            id="prices as JSON numbers",
        ),
    ],
)
async def test_import_of_a_file_that_is_not_openrouters_shape_is_refused_and_creates_nothing(
    db: asyncpg.Connection, database_url: str, tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "models.json"
    path.write_text(content)

    result = await luc_in_process(database_url, "catalog", "import", str(path))

    assert result.exit_code == 1, result.output
    assert message in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert await db.fetchval("SELECT count(*) FROM catalog_versions") == 1
    assert await db.fetchval("SELECT count(*) FROM catalog_prices") == 10


async def test_a_model_the_catalog_cannot_hold_is_skipped_with_its_reason_and_its_neighbours_synced(
    client: Any, db: asyncpg.Connection, database_url: str, openrouter: FakeOpenRouter
) -> None:
    # Per token 10^-37 USD is 10^-31 per 1M, past a price's 30 decimals; 2,000,000 USD per
    # token is 2·10^12 per 1M, past a price's bound; a context past the column's integer.
    # Each one refused the whole version, after a dry run that listed it as imported.
    openrouter.models = [
        model("acme/fine", "Fine", {"prompt": "0.0000012", "completion": "0.0000048"}, 8000),
        model("acme/tiny", "Tiny", {"prompt": "0." + "0" * 36 + "1", "completion": "0"}, 8000),
        model("acme/huge", "Huge", {"prompt": "2000000", "completion": "0.000001"}, 8000),
        model("acme/wide", "Wide", {"prompt": "0.000001", "completion": "0.000001"}, 2**31),
        # Held, and shown with every digit (str() of the Decimal was 1E-7).
        model("acme/speck", "Speck", {"prompt": "0.0000000000001", "completion": "0"}, 8000),
    ]
    env = {"LUC_OPENROUTER_BASE_URL": openrouter.base_url}

    dry = await luc_in_process(database_url, "catalog", "sync", "--dry-run", **env)
    synced = await luc_in_process(database_url, "catalog", "sync", **env)

    for result in (dry, synced):
        assert result.exit_code == 0, result.output
        assert "2 models priced by the source, 3 skipped" in result.stdout
        assert (
            "skipped acme/tiny: model 'acme/tiny': prices must be finite, not negative, below "
            "1000000000000 and have at most 30 decimal places (input is "
            "0.0000000000000000000000000000001)"
        ) in result.stdout
        assert "skipped acme/huge: model 'acme/huge': prices must be finite" in result.stdout
        assert "(input is 2000000000000)" in result.stdout
        assert (
            "skipped acme/wide: model 'acme/wide': context_tokens must be between 1 and 2147483647"
        ) in result.stdout
        assert "+ acme/fine (fast): input 1.2, output 4.8" in result.stdout
        assert "+ acme/speck (economy): input 0.0000001, output 0" in result.stdout
    assert "created catalog version 2" in synced.stdout
    models = models_by_id((await client.get("/v1/catalog/versions/2")).json())
    assert models["acme/fine"]["input"] == "1.2" and models["acme/fine"]["output"] == "4.8"
    assert not {"acme/tiny", "acme/huge", "acme/wide"} & set(models)
    assert await db.fetchval("SELECT count(*) FROM catalog_versions") == 2


async def test_a_listed_model_named_as_an_alias_of_the_catalog_is_skipped_dry_run_or_not(
    client: Any, db: asyncpg.Connection, database_url: str, openrouter: FakeOpenRouter
) -> None:
    """The AIMS catalog's alias ``gemini-3.0-flash`` names ``google/gemini-3.0-flash``. A
    listing with a model of that id dry-ran fine, then the import (and every sync after it)
    failed: "alias 'gemini-3.0-flash' is also the id of a model of the version"."""
    openrouter.models = [
        model("acme/fine", "Fine", {"prompt": "0.0000012", "completion": "0.0000048"}, 8000),
        model("gemini-3.0-flash", "Clash", {"prompt": "0.000001", "completion": "0.000002"}, 8000),
    ]
    env = {"LUC_OPENROUTER_BASE_URL": openrouter.base_url}
    dry = await luc_in_process(database_url, "catalog", "sync", "--dry-run", **env)
    synced = await luc_in_process(database_url, "catalog", "sync", **env)
    for result in (dry, synced):
        assert result.exit_code == 0, result.output
        assert "1 models priced by the source, 1 skipped" in result.stdout
        assert (
            "skipped gemini-3.0-flash: its id is an alias of the catalog ('gemini-3.0-flash' "
            "names 'google/gemini-3.0-flash'), and an alias names another model"
        ) in result.stdout
    assert "created catalog version 2" in synced.stdout
    version = (await client.get("/v1/catalog/versions/2")).json()
    assert version["aliases"] == {"gemini-3.0-flash": "google/gemini-3.0-flash"}
    assert "gemini-3.0-flash" not in models_by_id(version)


async def test_a_dry_run_refuses_an_effective_from_the_import_would_refuse(
    db: asyncpg.Connection, database_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "models.json"
    path.write_text(json.dumps(models_payload()))

    dry = await luc_in_process(
        database_url,
        "catalog",
        "import",
        str(path),
        "--dry-run",
        "--effective-from",
        "0001-01-01T00:00:00Z",
    )

    assert dry.exit_code == 1, dry.output
    assert "effective_from: 0001-01-01T00:00:00Z is the first or last instant" in dry.stderr
    assert "dry run: no version created" not in dry.stdout
    assert await db.fetchval("SELECT count(*) FROM catalog_versions") == 1


async def test_an_import_changes_the_version_in_force_at_its_date_not_one_scheduled_later(
    client: Any, database_url: str, tmp_path: Path
) -> None:
    """A price rise scheduled for later (version 2, Opus 5 → 50 from 2099) must not take
    effect at the import's date: the import changes version 1, in force then, and version 2
    keeps its own prices from its own date. Built on the newest version, the import copied
    Opus at 50 into now (every model the payload does not list comes from its base)."""
    scheduled = await client.post(
        "/v1/catalog/versions",
        json={
            "effective_from": "2099-01-01T00:00:00Z",
            "label": "opus rise",
            "parent": 1,
            "models": [
                {
                    "id": "anthropic/claude-opus-4.6",
                    "name": "Claude Opus 4.6",
                    "tier": "premium",
                    "input": "50",
                    "output": "250",
                }
            ],
        },
    )
    assert scheduled.status_code == 201, scheduled.text
    saved = tmp_path / "openrouter-models.json"
    saved.write_text(json.dumps(models_payload()))

    dry = await luc_in_process(
        database_url,
        "catalog",
        "import",
        str(saved),
        "--effective-from",
        "2026-11-01T00:00:00Z",
        "--dry-run",
    )
    assert dry.exit_code == 0, dry.output
    assert "changes to catalog version 1, in force at 2026-11-01T00:00:00Z," in dry.stdout
    assert (
        "note: catalog version 2 takes effect later, at 2099-01-01T00:00:00Z, "
        "and keeps its own prices"
    ) in dry.stdout
    assert "claude-opus" not in dry.stdout

    done = await luc_in_process(
        database_url, "catalog", "import", str(saved), "--effective-from", "2026-11-01T00:00:00Z"
    )
    assert done.exit_code == 0, done.output
    assert "created catalog version 3 effective 2026-11-01T00:00:00Z" in done.stdout
    imported = (await client.get("/v1/catalog/versions/3")).json()
    assert imported["parent"] == 1
    models = models_by_id(imported)
    assert (
        models["anthropic/claude-opus-4.6"]["input"],
        models["anthropic/claude-opus-4.6"]["output"],
    ) == ("5", "25")
    assert models["perplexity/sonar-pro"]["input"] == "3"
    # Version 2 still holds its rise, and takes over at its date.
    later = models_by_id((await client.get("/v1/catalog/versions/2")).json())
    assert later["anthropic/claude-opus-4.6"]["input"] == "50"
    assert "perplexity/sonar-pro" not in later

    # Backdated before the AIMS catalog (2025-01-01): no version is in force then, so the
    # new one holds the payload's models alone, and says so.
    early = await luc_in_process(
        database_url,
        "catalog",
        "import",
        str(saved),
        "--effective-from",
        "2024-06-01T00:00:00Z",
        "--dry-run",
    )
    assert early.exit_code == 0, early.output
    assert "no catalog version is in force at 2024-06-01T00:00:00Z:" in early.stdout
    assert "note: catalog version 1 takes effect later" in early.stdout

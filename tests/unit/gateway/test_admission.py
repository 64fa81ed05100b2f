"""The proxy's reservation estimate prices a call as the ledger will, long context included
(``gateway.admission``, ``pricing.cost``).

Claude Sonnet 4.5 in the AIMS catalog: 3.00 in / 15.00 out per 1M tokens; from 200,001
input tokens every token at 6.00 / 22.50. A prompt is estimated at one token per four
characters; the output at the call's ``max_tokens``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from service.catalog.service import bundled_catalog
from service.errors import UnknownModelError
from service.gateway.admission import admit
from service.gateway.models import CallContext, ChatRequest
from service.gateway.ports import BudgetVerdict, fixed_catalog

SONNET = "anthropic/claude-sonnet-4.5"


class Recorder:
    """A budget gate that admits every call and keeps the estimates it was asked for."""

    def __init__(self) -> None:
        self.estimates: list[Decimal] = []
        self.fallbacks: list[list[str]] = []

    async def reserve(
        self,
        *,
        job_id: str,
        agent: str,
        model: str,
        estimated_cost_usd: Decimal,
        customer_id: str | None = None,
        at: datetime | None = None,
        fallback_models: Sequence[str] = (),
    ) -> BudgetVerdict:
        self.estimates.append(estimated_cost_usd)
        self.fallbacks.append(list(fallback_models))
        return BudgetVerdict(True, reservation_id="r-1")

    async def release(self, reservation_id: str) -> None:
        pass


async def estimate(prompt_characters: int, **more: Any) -> Decimal:
    gate = Recorder()
    request = ChatRequest(
        model=SONNET,
        body={
            "model": SONNET,
            "messages": [{"role": "user", "content": "x" * prompt_characters}],
            "max_tokens": 1_000,
            **more,
        },
    )
    await _admit(request, gate)
    [amount] = gate.estimates
    return amount


async def _admit(request: ChatRequest, gate: Recorder | None) -> None:
    await admit(
        request,
        CallContext(job_id="job-1", agent="ORACLE"),
        catalog=fixed_catalog(bundled_catalog()),
        budgets=gate,
        clock=lambda: datetime(2026, 11, 20, tzinfo=UTC),
    )


async def test_a_prompt_estimated_below_the_threshold_is_reserved_at_the_base_rate() -> None:
    # 800,000 characters → 200,000 tokens: 200,000·3 + 1,000·15 = 615,000 per 1M
    assert await estimate(800_000) == Decimal("0.615")


async def test_a_prompt_estimated_at_the_threshold_is_reserved_at_the_long_context_rate() -> None:
    # 800,001 characters → 200,001 tokens: 200,001·6 + 1,000·22.50 = 1,222,506 per 1M
    assert await estimate(800_001) == Decimal("1.222506")


async def test_each_of_n_answers_is_reserved_for() -> None:
    # n = 3: 4,000 characters → 1,000 tokens in, once; 3 × 1,000 out.
    # 1,000·3 + 3,000·15 = 48,000 per 1M
    assert await estimate(4_000, n=3) == Decimal("0.048")
    assert await estimate(4_000, n=1) == Decimal("0.018")  # 1,000·3 + 1,000·15
    assert await estimate(4_000, n="3") == Decimal(
        "0.018"
    )  # not a number: the provider's to refuse


async def test_the_dearest_model_that_may_answer_is_reserved_for() -> None:
    # OpenRouter may answer with Claude Opus 4.5 (5.00 / 25.00): 1,000·5 + 1,000·25 = 30,000
    # per 1M, above Sonnet's 18,000; Gemini 3 Pro (1.25 / 10.00) is cheaper and changes nothing.
    models = [SONNET, "google/gemini-3-pro-preview", "anthropic/claude-opus-4.5"]
    assert await estimate(4_000, models=models) == Decimal("0.03")
    assert await estimate(4_000, models=[SONNET, "google/gemini-3-pro-preview"]) == Decimal("0.018")


async def test_a_fallback_model_luc_cannot_price_is_refused_under_a_budget() -> None:
    with pytest.raises(UnknownModelError, match="models: LUC cannot price 'acme/unknown-1'"):
        await estimate(4_000, models=[SONNET, "acme/unknown-1"])


async def test_a_fallback_model_luc_cannot_price_is_refused_without_budgets_too() -> None:
    # Its answer would be booked at Sonnet's price: the call is refused before it is bought.
    request = ChatRequest(
        model=SONNET,
        body={"model": SONNET, "messages": [], "models": [SONNET, "acme/unknown-1"]},
    )
    with pytest.raises(UnknownModelError, match="models: LUC cannot price 'acme/unknown-1'"):
        await _admit(request, None)


async def test_the_gate_is_told_every_other_model_that_may_answer_by_its_catalog_id() -> None:
    gate = Recorder()
    opus = "anthropic/claude-opus-4.5"
    request = ChatRequest(
        model=SONNET,
        body={
            "model": SONNET,
            "messages": [],
            # Sonnet itself left out; an alias resolved; a model named twice told once.
            "models": [SONNET, "gemini-3.0-flash", opus, opus],
        },
    )
    await _admit(request, gate)
    assert gate.fallbacks == [["google/gemini-3.0-flash", opus]]


async def test_images_tool_schemas_and_earlier_tool_calls_are_part_of_the_prompt_estimate() -> None:
    tools = [{"type": "function", "function": {"name": "look_up", "parameters": {}}}]
    schema = '[{"type":"function","function":{"name":"look_up","parameters":{}}}]'  # 67 characters
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "x" * 400},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "look_up", "arguments": "y" * 400},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "z" * 399},
    ]
    # Text: 400 + "\n" + 400 (the call's arguments) + "\n" + 399 + "\n" + 68 (the tools'
    # JSON) = 1,269 characters → 318 tokens; two images at 1,600 each → 3,518 tokens in.
    assert len(schema) == 67
    # 3,518·3 + 1,000·15 = 25,554 per 1M
    assert await estimate(0, messages=messages, tools=tools) == Decimal("0.025554")
    # Before, only the texts of the messages counted: 400 + "\n" + 399 → 200 tokens.

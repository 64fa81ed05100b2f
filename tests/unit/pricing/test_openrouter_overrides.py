"""OpenRouter's conditional prices (``pricing.overrides``) as LUC's long-context entries.

OpenRouter: an override applies when a request's prompt tokens are strictly greater than
its ``min_prompt_tokens``; its keys left out inherit the base price (SPEC §3), never
another override's. LUC: an entry applies from ``min_input_tokens`` (inclusive) and prices
every token, each price written out.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from service.pricing.openrouter import ImportResult, parse_models

D = Decimal


def imported(pricing: dict[str, Any]) -> ImportResult:
    return parse_models({"data": [{"id": "v/m", "name": "M", "pricing": pricing}]}, {})


BASE = {
    "prompt": "0.000002",
    "completion": "0.00001",
    "input_cache_read": "0.0000002",
    "input_cache_write": "0.0000025",
}


def test_an_override_on_prompt_size_alone_is_a_long_context_entry_from_one_token_past_it() -> None:
    result = imported({**BASE, "overrides": [{"min_prompt_tokens": 200000, "prompt": "0.000004"}]})
    [model] = result.models
    [entry] = model.long_context
    # Only the prompt price is given: completion and cache prices inherit the base's.
    assert (entry.min_input_tokens, entry.input, entry.output) == (200_001, D(4), D(10))
    assert (entry.cache_read, entry.cache_write, entry.reasoning) == (D("0.2"), D("2.5"), None)
    assert result.skipped_overrides == []
    # Written out with defaults applied: reasoning at this entry's output.
    assert model.with_defaults().long_context[0].reasoning == D(10)


def test_a_float_threshold_that_is_a_whole_number_is_taken() -> None:
    result = imported(
        {**BASE, "overrides": [{"min_prompt_tokens": 128000.0, "prompt": "0.000003"}]}
    )
    assert [lc.min_input_tokens for lc in result.models[0].long_context] == [128_001]


@pytest.mark.parametrize(
    ("override", "reason"),
    [
        pytest.param(
            {"utc_start": 100, "utc_end": 400, "prompt": "0.000001"},
            "its condition utc_start/utc_end is a UTC time window: LUC prices an event by its "
            "tokens, never by the time of day",
            id="a time window",
        ),
        pytest.param(
            {"min_prompt_tokens": 200000, "utc_start": 2200, "prompt": "0.000001"},
            "its condition utc_start is a UTC time window",
            id="a size and a time window",
        ),
        pytest.param(
            {"min_prompt_tokens": 100000, "max_prompt_tokens": 150000, "prompt": "0.000004"},
            "its condition max_prompt_tokens is not min_prompt_tokens alone",
            id="a size and another condition",
        ),
        pytest.param({"prompt": "0.000001"}, "no min_prompt_tokens condition", id="no condition"),
        pytest.param(
            {"min_prompt_tokens": 1000.5, "prompt": "0.000001"},
            "min_prompt_tokens is 1000.5, not a whole count of tokens",
            id="a fractional threshold",
        ),
        pytest.param(
            {"min_prompt_tokens": "200000", "prompt": "0.000001"},
            "min_prompt_tokens is '200000', not a number",
            id="a threshold as a string",
        ),
        pytest.param(
            {"min_prompt_tokens": 10**12, "prompt": "0.000001"},
            "no event carries that many input tokens",
            id="a threshold no event reaches",
        ),
        pytest.param(
            {"min_prompt_tokens": 200000, "prompt": "-1"},
            "pricing.prompt is dynamic (-1)",
            id="a dynamic price",
        ),
        pytest.param("cheap after 200k", "not an object", id="not an object"),
    ],
)
def test_an_override_luc_cannot_hold_is_skipped_with_its_reason_and_the_model_kept(
    override: Any, reason: str
) -> None:
    result = imported({**BASE, "overrides": [override]})
    [model] = result.models
    assert model.long_context == ()
    [skipped] = result.skipped_overrides
    assert (skipped.model_id, skipped.index) == ("v/m", 0)
    assert reason in skipped.reason


def test_each_override_is_an_entry_whose_left_out_keys_are_the_base_prices() -> None:
    """Listed after the 300,000 one, the 200,000 override once gave its prompt price to the
    300,001 entry, whose own left-out prompt is the base's: a call past 300,000 tokens was
    billed the 200,000 tier's input rate, by list order alone."""
    result = imported(
        {
            **BASE,
            "internal_reasoning": "0.00003",
            "overrides": [
                {"min_prompt_tokens": 100000, "prompt": "0.000003", "completion": "0.000015"},
                {"min_prompt_tokens": 300000, "completion": "0.00002"},
                {"min_prompt_tokens": 200000, "prompt": "0.000005"},
                # The same threshold again: one entry, the later one winning its keys.
                {"min_prompt_tokens": 300000, "input_cache_read": "0.0000004"},
            ],
        }
    )
    entries = result.models[0].long_context
    assert [
        (lc.min_input_tokens, lc.input, lc.output, lc.cache_read, lc.reasoning) for lc in entries
    ] == [
        (100_001, D(3), D(15), D("0.2"), D(30)),
        (200_001, D(5), D(10), D("0.2"), D(30)),
        (300_001, D(2), D(20), D("0.4"), D(30)),
    ]


def test_an_overrides_reasoning_price_is_the_entrys_and_its_zero_means_billed_as_completion() -> (
    None
):
    result = imported(
        {
            **BASE,
            "internal_reasoning": "0.00002",
            "overrides": [
                {"min_prompt_tokens": 100000, "internal_reasoning": "0.00004"},
                {"min_prompt_tokens": 200000, "completion": "0.00003", "internal_reasoning": "0"},
            ],
        }
    )
    [model] = result.models
    assert result.skipped_overrides == []
    assert [(lc.min_input_tokens, lc.output, lc.reasoning) for lc in model.long_context] == [
        (100_001, D(10), D(40)),
        # "0": billed as completion, this entry's output (None: the entry's default), not
        # the base's reasoning price of 20.
        (200_001, D(30), None),
    ]


@pytest.mark.parametrize(
    ("context_length", "kept"),
    [
        (200_000, 200_000),
        (True, None),  # a bool is no window (Python's bool is an int: it was stored as 1)
        (2**31, 2**31),  # kept: the catalog's check skips the model, saying why
        (0, None),
        ("128000", None),
    ],
)
def test_a_context_length_is_kept_only_as_a_whole_number(
    context_length: Any, kept: int | None
) -> None:
    payload = {
        "data": [{"id": "v/m", "name": "M", "pricing": BASE, "context_length": context_length}]
    }
    [model] = parse_models(payload, {}).models
    assert model.context_tokens == kept

"""Provider usage → SPEC §2 fields, and the SSE reader: pure functions, checked by hand."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

import msgspec
import pytest

from service.gateway.models import (
    CallContext,
    ProviderUsage,
    StreamEvent,
    StreamHandle,
    decode_json,
)
from service.gateway.sse import DONE, EventTooLarge, SSEMessage, SSEParser
from service.gateway.streaming import read_stream
from service.gateway.usage import (
    counted,
    from_generation,
    from_openai_usage,
    from_vertex_usage,
    merged,
    usage_event,
)
from service.wire import money_text


def read(usage: ProviderUsage | None) -> ProviderUsage:
    """A usage object whose counts were read."""
    assert usage is not None
    return usage


def test_openrouter_usage_maps_every_token_class_and_keeps_the_cost_exact() -> None:
    raw = decode_json(
        b'{"prompt_tokens": 2150, "completion_tokens": 40, "total_tokens": 2190,'
        b' "cost": 0.0009804, "prompt_tokens_details": {"cached_tokens": 2000,'
        b' "cache_write_tokens": 100}, "completion_tokens_details": {"reasoning_tokens": 30}}'
    )
    usage = read(from_openai_usage(raw))
    assert (usage.input_tokens, usage.cached_input_tokens, usage.cache_write_tokens) == (
        2150,
        2000,
        100,
    )
    assert (usage.output_tokens, usage.reasoning_tokens) == (40, 30)
    assert usage.provider_cost_usd == Decimal("0.0009804")
    event = usage_event(
        generation_id="gen-1767225600-Q3vX8kLm2PzR7tYw1NbC",
        occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
        context=CallContext("job-1", "ACHEEVY"),
        provider="openrouter",
        model="anthropic/claude-sonnet-4.5",
        usage=usage,
    )
    assert event.id == "gen-1767225600-Q3vX8kLm2PzR7tYw1NbC"
    assert event.provider_cost_usd == "0.0009804"


def test_missing_or_null_usage_parts_count_as_zero() -> None:
    usage = read(
        from_openai_usage(
            {"prompt_tokens": 5, "completion_tokens": 1, "prompt_tokens_details": None}
        )
    )
    assert (usage.cached_input_tokens, usage.reasoning_tokens, usage.provider_cost_usd) == (
        0,
        0,
        None,
    )


@pytest.mark.parametrize(
    "raw",
    [
        {"prompt_tokens": None, "completion_tokens": None, "cost": None},
        {"prompt_tokens": 1000, "completion_tokens": None},
        {"prompt_tokens": Decimal("1000.5"), "completion_tokens": 100},
        {"prompt_tokens": "about 1000", "completion_tokens": 100},
        {"prompt_tokens": -1, "completion_tokens": 100},
        {"total_tokens": 1100, "cost": Decimal("0.002")},
    ],
)
def test_a_usage_object_whose_counts_cannot_be_read_is_no_usage(raw: dict[str, object]) -> None:
    """Read as zeros, a paid call whose usage said ``"prompt_tokens": null`` was booked at 0
    tokens and 0 USD: such an object says nothing of what the call used, so the call is
    billed as one without usage (the provider's record, else an estimate)."""
    usage = from_openai_usage(raw)
    # Its counts are unknown; a cost it reports is kept (the call's bill), the counts to be
    # found elsewhere (``counted``).
    assert counted(usage) is None
    if raw.get("cost") is None:
        assert usage is None
    else:
        assert usage is not None
        assert (usage.provider_cost_usd, usage.counted) == (raw["cost"], False)
    assert from_vertex_usage(raw) is None
    native = {f"native_tokens_{k.removesuffix('_tokens')}": v for k, v in raw.items()}
    assert from_generation(native) is None


def test_the_cost_a_usage_without_counts_reported_is_kept_unless_a_later_report_has_its_own() -> (
    None
):
    reported = read(from_openai_usage({"prompt_tokens": None, "cost": "0.77"}))
    estimate = ProviderUsage(input_tokens=8, output_tokens=3, source="estimate")
    assert merged(reported, estimate) == ProviderUsage(
        input_tokens=8, output_tokens=3, source="estimate", provider_cost_usd=Decimal("0.77")
    )
    record = ProviderUsage(
        input_tokens=1000, output_tokens=100, provider_cost_usd=Decimal("0"), source="generation"
    )
    assert merged(reported, record) == record  # the record's own figure, even 0
    whole = read(from_openai_usage({"prompt_tokens": 5, "completion_tokens": 1}))
    assert merged(whole, whole) == whole and merged(None, estimate) == estimate
    assert merged(whole, None) == whole and merged(None, None) is None
    # A record with a bill but no counts: its bill, the counts still to be found.
    billed = read(
        from_generation(
            {
                "native_tokens_prompt": None,
                "native_tokens_completion": None,
                "total_cost": Decimal("0.4"),
            }
        )
    )
    assert (billed.counted, billed.provider_cost_usd) == (False, Decimal("0.4"))
    assert merged(reported, billed).provider_cost_usd == Decimal("0.4")  # type: ignore[union-attr]


def test_a_later_report_of_nothing_leaves_the_tokens_counted_before_it() -> None:
    # A stream's usage chunk, then a closing chunk whose usage block is zeroed: before, the
    # call was billed on the zeros (0.00 for 1,200 tokens). A later count that says
    # something still wins, and so does a later cost of its own.
    real = read(
        from_openai_usage({"prompt_tokens": 1000, "completion_tokens": 200, "cost": "0.0042"})
    )
    zeroed = read(from_openai_usage({"prompt_tokens": 0, "completion_tokens": 0}))
    zeroed_free = read(from_openai_usage({"prompt_tokens": 0, "completion_tokens": 0, "cost": 0}))
    assert merged(real, zeroed) == real
    assert merged(real, zeroed_free) == real
    assert merged(zeroed, real) == real
    assert merged(zeroed, zeroed_free) == zeroed_free  # nothing counted before: the later
    recount = read(from_openai_usage({"prompt_tokens": 1000, "completion_tokens": 250}))
    assert merged(real, recount) == replace(recount, provider_cost_usd=Decimal("0.0042"))
    billed_zero_tokens = read(
        from_openai_usage({"prompt_tokens": 0, "completion_tokens": 0, "cost": "0.001"})
    )
    assert merged(real, billed_zero_tokens) == billed_zero_tokens  # its own cost: a report


def test_a_count_left_out_is_zero_when_the_other_is_given() -> None:
    # OpenAI's conventions: a prompt-only usage (an answer that generated nothing).
    usage = read(from_openai_usage({"prompt_tokens": 7, "cost": Decimal("0.0000007")}))
    assert (usage.input_tokens, usage.output_tokens) == (7, 0)
    assert usage.provider_cost_usd == Decimal("0.0000007")


class _Provider:
    """What ``read_stream`` asks of a provider: OpenRouter's usage, nothing to redact."""

    name = "openrouter"

    def usage_of(self, usage: dict[str, object]) -> ProviderUsage | None:
        return from_openai_usage(usage)

    def redacted(self, text: str) -> str:
        return text

    def redacted_bytes(self, content: bytes) -> bytes:
        return content


class _Upstream:
    def __init__(self, chunks: list[dict[str, object]]) -> None:
        self.generation_id = "gen-1"
        self._chunks = chunks

    async def events(self) -> AsyncIterator[StreamEvent]:
        for chunk in self._chunks:
            yield StreamEvent(msgspec.json.encode(chunk), chunk)

    async def aclose(self) -> None:
        return None


async def test_a_stream_s_unreadable_usage_chunk_does_not_replace_the_usage_read_before() -> None:
    chunks: list[dict[str, object]] = [
        {"id": "gen-1", "choices": [{"delta": {"content": "Hi"}, "finish_reason": "stop"}]},
        {"id": "gen-1", "choices": [], "usage": {"prompt_tokens": 1000, "completion_tokens": 100}},
        {"id": "gen-1", "choices": [], "usage": {"prompt_tokens": None, "completion_tokens": None}},
    ]
    read_ = await read_stream(_Provider(), _Upstream(chunks), StreamHandle())  # type: ignore[arg-type]
    assert read_.usage is not None
    assert (read_.usage.input_tokens, read_.usage.output_tokens) == (1000, 100)
    # Its cost apart from its counts, in either order: both kept.
    cost_only = {"id": "gen-1", "choices": [], "usage": {"cost": "0.5"}}
    for chunks_in_order in ([chunks[0], chunks[1], cost_only], [chunks[0], cost_only, chunks[1]]):
        both = await read_stream(_Provider(), _Upstream(chunks_in_order), StreamHandle())  # type: ignore[arg-type]
        assert both.usage is not None
        assert (both.usage.input_tokens, both.usage.output_tokens) == (1000, 100)
        assert (both.usage.provider_cost_usd, both.usage.counted) == (Decimal("0.5"), True)
    # Alone, it leaves the stream without usage: billed as such a stream is.
    alone = await read_stream(_Provider(), _Upstream([chunks[0], chunks[2]]), StreamHandle())  # type: ignore[arg-type]
    assert alone.usage is None
    # A closing chunk with a zeroed usage block after the real one: the real one stands.
    zeroed: dict[str, object] = {
        "id": "gen-1",
        "choices": [],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0},
    }
    echoed = await read_stream(_Provider(), _Upstream([*chunks[:2], zeroed]), StreamHandle())  # type: ignore[arg-type]
    assert echoed.usage is not None
    assert (echoed.usage.input_tokens, echoed.usage.output_tokens) == (1000, 100)


def test_a_tiny_cost_in_exponent_notation_becomes_a_plain_decimal_string() -> None:
    raw = decode_json(b'{"prompt_tokens": 1, "completion_tokens": 1, "cost": 1e-7}')
    cost = read(from_openai_usage(raw)).provider_cost_usd
    assert cost is not None
    assert money_text(cost) == "0.0000001"


def test_cache_tokens_reported_outside_the_prompt_are_added_to_it() -> None:
    usage = read(
        from_openai_usage(
            {
                "prompt_tokens": 10,
                "completion_tokens": 1,
                "prompt_tokens_details": {"cached_tokens": 90},
            }
        )
    )
    assert (usage.input_tokens, usage.cached_input_tokens) == (100, 90)


def test_vertex_output_is_the_larger_of_completion_and_total_minus_prompt() -> None:
    thinking = read(
        from_vertex_usage(
            {
                "prompt_tokens": 100,
                "completion_tokens": 20,
                "total_tokens": 150,
                "completion_tokens_details": {"reasoning_tokens": 30},
            }
        )
    )
    assert (thinking.output_tokens, thinking.reasoning_tokens) == (50, 30)
    plain = read(
        from_vertex_usage({"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120})
    )
    assert plain.output_tokens == 20 and plain.provider_cost_usd is None


def test_the_generation_record_maps_native_counts() -> None:
    usage = read(
        from_generation(
            decode_json(
                b'{"native_tokens_prompt": 100, "native_tokens_completion": 20,'
                b' "native_tokens_reasoning": 5, "native_tokens_cached": 40, "total_cost": 0.00002,'
                b' "model": "anthropic/claude-sonnet-4.5"}'
            )
        )
    )
    assert usage.model == "anthropic/claude-sonnet-4.5"  # the model that answered
    assert (usage.input_tokens, usage.output_tokens, usage.reasoning_tokens) == (100, 20, 5)
    assert (usage.cached_input_tokens, usage.provider_cost_usd) == (40, Decimal("0.00002"))
    assert usage.source == "generation"


def test_a_byok_call_costs_openrouter_s_fee_and_the_provider_s_bill() -> None:
    # With AIMS's own key at the provider, OpenRouter's cost is its 5 % fee (0.0000009) and
    # the provider bills its key 0.000018: the call cost 0.0000189, not the fee alone.
    byok = decode_json(
        b'{"prompt_tokens": 100, "completion_tokens": 10, "cost": 0.0000009, "is_byok": true,'
        b' "cost_details": {"upstream_inference_cost": 0.000018}}'
    )
    assert read(from_openai_usage(byok)).provider_cost_usd == Decimal("0.0000189")
    # Not BYOK: cost is the whole bill, and the upstream figure repeats it (2026 answers).
    plain = decode_json(
        b'{"prompt_tokens": 100, "completion_tokens": 10, "cost": 0.000018, "is_byok": false,'
        b' "cost_details": {"upstream_inference_cost": 0.000018}}'
    )
    assert read(from_openai_usage(plain)).provider_cost_usd == Decimal("0.000018")
    # BYOK without the upstream figure: the fee is all that is known.
    unknown = decode_json(b'{"prompt_tokens": 1, "cost": 0.0000009, "is_byok": true}')
    assert read(from_openai_usage(unknown)).provider_cost_usd == Decimal("0.0000009")
    record = decode_json(
        b'{"native_tokens_prompt": 100, "native_tokens_completion": 10, "total_cost": 0.0000009,'
        b' "is_byok": true, "upstream_inference_cost": 0.000018}'
    )
    assert read(from_generation(record)).provider_cost_usd == Decimal("0.0000189")


def test_sse_reader_skips_nothing_but_comments_and_joins_multiline_data() -> None:
    body = (
        b": OPENROUTER PROCESSING\r\n\r\n"
        b'data: {"a":\n'
        b"data: 1}\r\n"
        b"\r\n"
        b"event: ignored\r"
        b"data:[DONE]\r"
        b"\r"
        b"data: cut short"  # no blank line: the body's end delivers it
    )
    expected = [
        SSEMessage(b" OPENROUTER PROCESSING", comment=True),
        SSEMessage(b'{"a":\n1}'),
        SSEMessage(b"[DONE]"),
        SSEMessage(b"cut short"),
    ]
    parser = SSEParser()
    assert parser.feed(body) + parser.close() == expected
    # However the bytes arrive, a CRLF cut in two included, the messages are the same.
    for cut in range(1, len(body)):
        for second in (cut + 1, len(body)):
            parser = SSEParser()
            got = parser.feed(body[:cut]) + parser.feed(body[cut:second])
            got += parser.feed(body[second:]) + parser.close()
            assert got == expected, (cut, second)
    # One byte at a time too: a line's pieces are kept apart until its end comes.
    parser = SSEParser()
    got = [m for i in range(len(body)) for m in parser.feed(body[i : i + 1])]
    assert got + parser.close() == expected


def test_sse_reader_takes_a_long_event_in_time_linear_in_its_length() -> None:
    """An image-output model sends each image inline, base64 in one data line of several
    MB, which arrives in many reads. Before: each read joined and split the whole line so
    far again, 17 s of the event loop (every call of the process stalled) for 20 MB in
    reads of 64 KiB, over a minute in reads of 16 KiB; now well under a second."""
    image = b"A" * (20 * 1024 * 1024)
    body = b'data: {"url": "data:image/png;base64,' + image + b'"}\r\n\r\ndata: [DONE]\n\n'
    parser = SSEParser()
    started = time.perf_counter()
    got = [m for i in range(0, len(body), 16384) for m in parser.feed(body[i : i + 16384])]
    elapsed = time.perf_counter() - started
    assert got == [SSEMessage(b'{"url": "data:image/png;base64,' + image + b'"}'), SSEMessage(DONE)]
    assert elapsed < 3, elapsed


def test_the_sse_parser_bounds_an_event_and_a_line_but_not_a_stream() -> None:
    parser = SSEParser(limit=10)
    # Many events of 8 bytes each: a stream of any length passes.
    for _ in range(100):
        assert [m.data for m in parser.feed(b"data: 12345678\n\n")] == [b"12345678"]
    # One event of two lines, 2·6 bytes: past the limit.
    with pytest.raises(EventTooLarge):
        parser.feed(b"data: 12345\ndata: 67890\n")
    # One line that never ends, in pieces.
    parser = SSEParser(limit=10)
    parser.feed(b"data: 123")
    with pytest.raises(EventTooLarge):
        parser.feed(b"456789")

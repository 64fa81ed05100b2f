"""Provider usage → the SPEC §2 event fields.

OpenRouter (OpenAI conventions) → event:

    usage.prompt_tokens                               → input_tokens
    usage.prompt_tokens_details.cached_tokens         → cached_input_tokens
    usage.prompt_tokens_details.cache_write_tokens    → cache_write_tokens
    usage.completion_tokens                           → output_tokens
    usage.completion_tokens_details.reasoning_tokens  → reasoning_tokens
    usage.cost                                        → provider_cost_usd (decimal string)
    id (gen-…)                                        → id

Vertex AI sends no cost, and its ``completion_tokens`` may leave thinking tokens out
(``total_tokens`` then exceeds prompt + completion), so output is billed as
``max(completion_tokens, total_tokens − prompt_tokens)``.

The cost is decoded from the JSON text as a Decimal (``decode_json``), never through a
binary float (a cost sent as a plain decimal string is taken too). Sub-objects may be
missing or ``null``; counts that break SPEC's invariants (cache tokens above the prompt,
reasoning above the completion) mean the provider counted them apart, so they are added
to the total instead of failing the event.
"""

from __future__ import annotations

import hashlib
import math
import uuid
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, ROUND_HALF_EVEN, Context, Decimal
from typing import Any, Literal

import structlog

from service.gateway.models import CallContext, ProviderUsage
from service.ingest.models import AgentName, CustomerId, JobId, UsageEventIn
from service.money import exact_sum
from service.tokens import counts_of
from service.wire import WireValueError, instant_text, money_text, parse_money

log = structlog.get_logger("luc.gateway")

MAX_EVENT_ID = 128
CHARS_PER_TOKEN = 4  # the usual rule of thumb for English text and code


MAX_REPORTED_COUNT = 10**18
"""The largest token count kept as reported. A provider's count can be any JSON integer
(``1e5000``); one past Python's 4,300-digit limit for writing an int as text could not
even be encoded, and the paid call's usage would be lost with a 500 to the caller. Far
above SPEC's 10^12, it still puts the event out of the ledger's range: parked, for an
operator to see, with the count it was given in the log."""


def _readable_count(value: Any) -> int | None:
    """A token count from JSON (a number, or a string of digits); ``None`` for anything
    else (null, a fraction, a negative number, other text)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):  # some relays write counts as text; digits only are counted
        if not (value.isascii() and value.isdigit()):
            log.warning("provider_count_ignored", count=value[:100])
            return None
        # Past 19 digits it is above the cap below anyway (and Python reads at most 4,300).
        value = int(value) if len(value) <= 19 else MAX_REPORTED_COUNT + 1
    if isinstance(value, Decimal):
        if not value.is_finite() or value != value.to_integral_value():
            return None
    elif not isinstance(value, int):
        return None
    if value < 0:
        return None
    if value > MAX_REPORTED_COUNT:
        log.warning("provider_count_too_large", kept=MAX_REPORTED_COUNT)
        return MAX_REPORTED_COUNT
    return int(value)


def _count(value: Any) -> int:
    """A count of a detail (cached, reasoning, …): one missing or unreadable is 0."""
    count = _readable_count(value)
    return 0 if count is None else count


def _main_counts(
    usage: Mapping[str, Any],
    prompt_key: str = "prompt_tokens",
    completion_key: str = "completion_tokens",
) -> tuple[int, int] | None:
    """The prompt's and the completion's counts, or ``None`` when the object says nothing
    of what the call used: either given but unreadable (``null``, a fraction, text), or
    both left out. (One left out is 0, as OpenAI's conventions read it.) Read as zeros, a
    paid call whose usage came as ``{"prompt_tokens": null, …}`` was booked at 0 tokens and
    0 USD, where a call whose usage is unknown is billed on the provider's record, else on
    an estimate."""
    counts = []
    for key in (prompt_key, completion_key):
        value = usage.get(key)
        count = 0 if key not in usage else _readable_count(value)
        if count is None:
            log.warning("provider_usage_unreadable", usage=repr(dict(usage))[:300])
            return None
        counts.append(count)
    if prompt_key not in usage and completion_key not in usage:
        log.warning("provider_usage_unreadable", usage=repr(dict(usage))[:300])
        return None
    return counts[0], counts[1]


def _sub(usage: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = usage.get(key)
    return value if isinstance(value, Mapping) else {}


COST_DECIMAL_PLACES = 30
"""Of ``provider_cost_usd``, what the ledger keeps (``ingest.rules``); a finer cost is
rounded to it."""
_COST_QUANTUM = Decimal(1).scaleb(-COST_DECIMAL_PLACES)
_WIDE = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN)


def _cost(value: Any) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, str):  # some relays write it as text: kept when it reads as money
        try:
            return parse_money("cost", value)
        except WireValueError as exc:
            log.warning("provider_cost_ignored", cost=value[:100], reason=exc.reason)
            return None
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        log.warning("provider_cost_ignored", cost=repr(value)[:100])
        return None
    cost = Decimal(value)
    if not cost.is_finite() or cost < 0:
        log.warning("provider_cost_ignored", cost=str(value)[:100])
        return None
    if int(cost.as_tuple().exponent) < -COST_DECIMAL_PLACES:
        # Finer than any provider bills: a float's tail (3.6e-31), not money. Rounded, so
        # the figure stays within SPEC's 40 significant digits, rather than the whole paid
        # call's usage parked for an informative figure.
        rounded = cost.quantize(_COST_QUANTUM, rounding=ROUND_HALF_EVEN, context=_WIDE)
        log.info("provider_cost_rounded", cost=str(value)[:100], kept=money_text(rounded))
        return rounded
    return cost


def _billed(fee_or_cost: Any, is_byok: Any, upstream: Any) -> Decimal | None:
    """What the call cost AIMS, from OpenRouter's figures. With a key of AIMS's own at the
    provider (BYOK), OpenRouter's ``cost`` is only its fee (5 % of list) and the provider
    bills ``upstream_inference_cost`` to that key: the call cost both. Booked as the fee
    alone, a BYOK call's actual cost was a twentieth of it, and an ``actual``-basis plan
    sold it at that. Otherwise ``cost`` is the whole bill (the upstream figure then
    repeats it, or is null: never added)."""
    cost = _cost(fee_or_cost)
    if is_byok is True and cost is not None and (provider := _cost(upstream)) is not None:
        return exact_sum([cost, provider])
    return cost


def _consistent(
    input_tokens: int, cached: int, cache_write: int, output: int, reasoning: int
) -> tuple[int, int]:
    if cached + cache_write > input_tokens:
        input_tokens += cached + cache_write
    if reasoning > output:
        output += reasoning
    return input_tokens, output


def _cost_only(cost: Decimal | None, source: str) -> ProviderUsage | None:
    """A report whose counts cannot be read: its bill is kept all the same (``counted``
    False), for dropped with the counts, the call's actual cost (and a price made from it)
    fell to an estimate's list price. ``None`` when it gives no bill either."""
    if cost is None:
        return None
    return ProviderUsage(
        input_tokens=0, output_tokens=0, provider_cost_usd=cost, counted=False, source=source
    )


def from_openai_usage(usage: Mapping[str, Any], source: str = "response") -> ProviderUsage | None:
    """OpenRouter's (and the stub's) ``usage`` object; ``None`` when its counts cannot be
    read (``_main_counts``)."""
    cost = _billed(
        usage.get("cost"),
        usage.get("is_byok"),
        _sub(usage, "cost_details").get("upstream_inference_cost"),
    )
    if (counts := _main_counts(usage)) is None:
        return _cost_only(cost, source)
    prompt = _sub(usage, "prompt_tokens_details")
    completion = _sub(usage, "completion_tokens_details")
    cached = _count(prompt.get("cached_tokens"))
    cache_write = _count(prompt.get("cache_write_tokens"))
    reasoning = _count(completion.get("reasoning_tokens"))
    input_tokens, output = _consistent(counts[0], cached, cache_write, counts[1], reasoning)
    return ProviderUsage(
        input_tokens=input_tokens,
        output_tokens=output,
        cached_input_tokens=cached,
        cache_write_tokens=cache_write,
        reasoning_tokens=reasoning,
        provider_cost_usd=cost,
        source=source,
    )


def from_vertex_usage(usage: Mapping[str, Any]) -> ProviderUsage | None:
    """Vertex AI's ``usage``: no cost; thinking tokens may sit outside completion_tokens.
    ``None`` when its counts cannot be read (``_main_counts``)."""
    if (counts := _main_counts(usage)) is None:
        return None
    prompt_tokens, completion_tokens = counts
    total = _count(usage.get("total_tokens"))
    cached = _count(_sub(usage, "prompt_tokens_details").get("cached_tokens"))
    reasoning = _count(_sub(usage, "completion_tokens_details").get("reasoning_tokens"))
    output = max(completion_tokens, total - prompt_tokens)
    input_tokens, output = _consistent(prompt_tokens, cached, 0, output, reasoning)
    return ProviderUsage(
        input_tokens=input_tokens,
        output_tokens=output,
        cached_input_tokens=cached,
        reasoning_tokens=reasoning,
    )


def from_generation(data: Mapping[str, Any]) -> ProviderUsage | None:
    """OpenRouter's ``GET /generation`` record (native counts, which is what it bills);
    ``None`` when its counts cannot be read (``_main_counts``)."""
    cost = _billed(data.get("total_cost"), data.get("is_byok"), data.get("upstream_inference_cost"))
    counts = _main_counts(data, "native_tokens_prompt", "native_tokens_completion")
    if counts is None:
        return _cost_only(cost, "generation")
    cached = _count(data.get("native_tokens_cached"))
    reasoning = _count(data.get("native_tokens_reasoning"))
    input_tokens, output = _consistent(counts[0], cached, 0, counts[1], reasoning)
    return ProviderUsage(
        input_tokens=input_tokens,
        output_tokens=output,
        cached_input_tokens=cached,
        reasoning_tokens=reasoning,
        provider_cost_usd=cost,
        source="generation",
        model=model if isinstance(model := data.get("model"), str) and model else None,
    )


def counted(usage: ProviderUsage | None) -> ProviderUsage | None:
    """``usage`` when its token counts were read; None when they are to be found elsewhere
    (the provider's record, else an estimate)."""
    return usage if usage is not None and usage.counted else None


def merged(earlier: ProviderUsage | None, later: ProviderUsage | None) -> ProviderUsage | None:
    """Two reports of one call, ``later`` the more recent (a stream's chunks in order; its
    usage block, then the provider's record): the later one's counts when it has any, else
    the earlier's; the later one's cost when it gives one (even 0), else the earlier's. A
    cost and the counts sent apart were each a call's whole usage, and one of them lost.

    A later report of no tokens and no cost after one that counted tokens is the earlier's
    empty echo (a stream's closing chunk with a zeroed usage block), never a correction to
    nothing: the earlier stands, or the call was billed nothing."""
    if later is None or earlier is None:
        return earlier if later is None else later
    if _counted_tokens(earlier) and not _counted_tokens(later) and not later.provider_cost_usd:
        return earlier
    kept = later if later.counted or not earlier.counted else earlier
    cost = later.provider_cost_usd
    return replace(kept, provider_cost_usd=earlier.provider_cost_usd if cost is None else cost)


def _counted_tokens(usage: ProviderUsage) -> bool:
    return usage.counted and bool(usage.input_tokens or usage.output_tokens)


def estimate_tokens(text: str) -> int:
    """Tokens of ``text`` by length: one per four characters, at least one for any text."""
    return math.ceil(len(text) / CHARS_PER_TOKEN) if text else 0


ESTIMATE = "estimate"
"""The ``usage_source`` of usage LUC estimated from the text (no provider's count)."""


def estimated_usage(prompt: str, reply: str) -> ProviderUsage:
    return ProviderUsage(
        input_tokens=estimate_tokens(prompt),
        output_tokens=estimate_tokens(reply),
        source=ESTIMATE,
    )


def _length_limits(kind: Any) -> tuple[int, int]:
    meta = kind.__metadata__[0]
    return meta.min_length, meta.max_length


# SPEC §2's limits, read from the event's own declaration (service.ingest.models).
ATTRIBUTION_LIMITS = {
    "job_id": _length_limits(JobId),
    "agent": _length_limits(AgentName),
    "customer_id": _length_limits(CustomerId),
}


def attribution_problems(job_id: str, agent: str, customer_id: str | None = None) -> dict[str, str]:
    """What keeps ``job_id``, ``agent`` and ``customer_id`` (when given) off the ledger, by
    field (empty when nothing): checked before a call, so the provider is never paid for
    usage LUC would refuse."""
    problems: dict[str, str] = {}
    given = (("job_id", job_id), ("agent", agent), ("customer_id", customer_id))
    for name, value in ((n, v) for n, v in given if v is not None):
        shortest, longest = ATTRIBUTION_LIMITS[name]
        if not shortest <= len(value) <= longest:
            problems[name] = f"must be {shortest} to {longest} characters, got {len(value)}"
        elif "\x00" in value:
            problems[name] = "must not contain the NUL character (U+0000)"
    return problems


LUC_ID_PREFIX = "luc-"
"""Starts the id of an event whose provider gave none LUC can use (``usage_event``)."""


def billed_fields(usage: ProviderUsage) -> dict[str, Any]:
    """The event's fields that say what a call used and what its provider charged."""
    cost = usage.provider_cost_usd
    return {**counts_of(usage), "provider_cost_usd": None if cost is None else money_text(cost)}


def usage_event(
    *,
    generation_id: str | None,
    occurred_at: datetime,
    context: CallContext,
    provider: str,
    model: str,
    usage: ProviderUsage,
    status: Literal["ok", "error"] = "ok",
    attributes: Mapping[str, Any] | None = None,
    reservation_id: str | None = None,
) -> UsageEventIn:
    """The one usage event of one upstream attempt; its id is the generation id."""
    if not generation_id:
        generation_id = f"{LUC_ID_PREFIX}{uuid.uuid4().hex}"
    elif len(generation_id) > MAX_EVENT_ID or "\x00" in generation_id:
        # Kept stable (the same id again is the same event), within the wire limit and
        # without the NUL that PostgreSQL text cannot hold.
        generation_id = LUC_ID_PREFIX + hashlib.sha256(generation_id.encode()).hexdigest()
    return UsageEventIn(
        id=generation_id,
        occurred_at=instant_text(occurred_at),
        job_id=context.job_id,
        agent=context.agent,
        provider=provider,
        model=model,
        **billed_fields(usage),
        status=status,
        reservation_id=reservation_id,
        customer_id=context.customer_id,
        attributes={**context.attributes, **(attributes or {}), "usage_source": usage.source},
    )

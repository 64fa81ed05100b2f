"""The usage event: as it arrives on the wire, and once validated."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

import msgspec

from service.tokens import TOKEN_FIELDS, TokenCounts
from service.wire import MONEY_MAX_CHARS

# Per class per event (SPEC §2): far above any call. Sums of them are NUMERIC in the rollups
# and invoices (migration 0007), so no number of events can overflow them.
MAX_TOKENS = 10**12

EventId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
JobId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
AgentName = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
ProviderName = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
ModelName = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
TokenCount = Annotated[int, msgspec.Meta(ge=0, le=MAX_TOKENS)]
DecimalString = Annotated[str, msgspec.Meta(min_length=1, max_length=MONEY_MAX_CHARS)]
ReservationId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
CustomerId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
# Text, checked by service.wire.parse_instant: a decoder that parsed it would round a 7th
# fractional digit instead of refusing it.
Timestamp = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


# The token fields are the classes of service.tokens, spelled out so that the OpenAPI
# document and mypy see them; tests/unit/test_token_classes.py checks them against it.
# (The docstring is the OpenAPI description.)
class UsageEventIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One gateway call, exactly as SPEC §2 defines the wire format."""

    id: EventId
    occurred_at: Timestamp
    job_id: JobId
    agent: AgentName
    provider: ProviderName
    model: ModelName
    input_tokens: TokenCount
    output_tokens: TokenCount
    cached_input_tokens: TokenCount = 0
    cache_write_tokens: TokenCount = 0
    reasoning_tokens: TokenCount = 0
    provider_cost_usd: DecimalString | None = None
    status: Literal["ok", "error"] = "ok"
    reservation_id: ReservationId | None = None
    """The budget reservation the call was admitted under (``POST /v1/budgets/reservations``);
    recording the event settles exactly that one, when sent with the key that reserved (or
    an admin key). An id that settles nothing (unknown, another key's, expired, settled
    already) does not reject the event (the call was paid): its answer's ``warning`` says
    why."""
    customer_id: CustomerId | None = None
    """The customer the job is done for (kept with the event; customers and their plans
    price it in a later version)."""
    attributes: dict[str, Any] | None = None


class BatchIn(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /v1/events/batch``: events are decoded one by one so one bad event sinks alone."""

    events: list[msgspec.Raw]


@dataclass(frozen=True, slots=True, kw_only=True)
class UsageEvent(TokenCounts):
    """A validated event: offsets normalised, defaults applied, cost parsed; a count per
    token class (``TokenCounts``)."""

    id: str
    occurred_at: datetime
    job_id: str
    agent: str
    provider: str
    model: str
    provider_cost_usd: Decimal | None
    status: str
    attributes: dict[str, Any] | None
    reservation_id: str | None = None
    customer_id: str | None = None
    reservation_key: int | None = None
    """Whose reservation ``reservation_id`` may settle: the id of the ingest key that sent
    the event (only a reservation that key made), or None (any: LUC's own gateway, an admin
    key, authentication off). Not content: the same event sent by two keys is a duplicate.
    Every ingest path sets it (``api.events`` from the request's key)."""


# The fields that make an event's content; equal content under one id is a duplicate.
CONTENT_FIELDS = (
    "occurred_at",
    "job_id",
    "agent",
    "provider",
    "model",
    *TOKEN_FIELDS,
    "provider_cost_usd",
    "status",
    "attributes",
    "reservation_id",
    "customer_id",
)


def differing_fields(first: UsageEvent, second: UsageEvent) -> list[str]:
    """Content fields whose values differ (decimals and instants compare by value)."""
    return [
        f
        for f in CONTENT_FIELDS
        if not (
            same_json(first.attributes, second.attributes)
            if f == "attributes"
            else getattr(first, f) == getattr(second, f)
        )
    ]


def _json_number(value: object) -> object:
    # jsonb keeps numbers as NUMERIC and prints 1e23 back as an integer literal, so a float
    # and what PostgreSQL returns for it compare as the decimals their JSON texts denote.
    # bool is tested first: JSON true is not the number 1.
    if isinstance(value, bool):
        return value
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, int):
        return Decimal(value)
    return value


def same_json(first: object, second: object) -> bool:
    """Equality of two decoded JSON values as JSON sees it (numbers by value, true ≠ 1)."""
    pending = [(first, second)]  # iterative: attributes may nest deeply
    while pending:
        a, b = pending.pop()
        if isinstance(a, dict) and isinstance(b, dict):
            if a.keys() != b.keys():
                return False
            pending.extend((a[k], b[k]) for k in a)
        elif isinstance(a, list) and isinstance(b, list):
            if len(a) != len(b):
                return False
            pending.extend(zip(a, b, strict=True))
        elif isinstance(a, (dict, list)) or isinstance(b, (dict, list)):
            return False
        else:
            x, y = _json_number(a), _json_number(b)
            if type(x) is not type(y) or x != y:
                return False
    return True


@dataclass(frozen=True, slots=True)
class Rejection:
    """An event that failed validation; ``id`` is recovered when the body had one."""

    index: int
    id: str | None
    reason: str

"""Before a call: the checks that keep the gateway from buying usage LUC would not take.

The job and agent must be ones the ledger takes, and a customer named must be the job's own
when the job has one (else ``InvalidRequestError``), the model
must be in LUC's catalog (else ``UnknownModelError``), and the budget gate, when there is
one, must admit the estimated cost (else ``BudgetExceededError``, or
``CreditsExhaustedError`` when the customer's prepaid credits are at zero under
``credit_stop``); under hard budgets it
reserves the estimate, and the call's usage event carries the ``reservation_id``.

The estimate is the prompt (counted from its text, tool calls and tool schemas included, and
``IMAGE_TOKENS`` per image) and the most output the call can produce: its ``max_tokens`` or
``max_completion_tokens`` (the larger, when it sends both: a provider may honour either),
else ``default_max_tokens`` (``LUC_GATEWAY_DEFAULT_MAX_TOKENS``), for each of the ``n``
answers it asks for, at the dearest of the models that may answer it (its own and
OpenRouter's ``models`` fallbacks, each of which LUC must be able to price). A call admitted
under a reservation without a bound of its own goes upstream with ``max_tokens`` = that
default, so the reserved estimate is a real cap: an unbounded call estimated at no output
let a hard budget be overspent without limit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

from service.errors import (
    BudgetExceededError,
    CreditsExhaustedError,
    InvalidRequestError,
    UnknownModelError,
)
from service.gateway.models import CallContext, ChatRequest
from service.gateway.ports import AdmissionLookup, BudgetGate, CatalogSource
from service.gateway.usage import attribution_problems, estimate_tokens
from service.pricing.catalog import Catalog
from service.pricing.cost import event_cost
from service.pricing.models import ModelPrice
from service.settings import GatewaySettings
from service.tokens import TokenCounts
from service.wire import ESTIMATE_DECIMAL_PLACES, money_ceiling

DEFAULT_MAX_TOKENS = GatewaySettings.default_max_tokens
"""``LUC_GATEWAY_DEFAULT_MAX_TOKENS``'s default (declared with the setting)."""

IMAGE_TOKENS = 1_600
"""What one image of a prompt is reserved at: the most one image costs under Anthropic's
published rule (about 1,600 tokens at the largest size it reads before resizing), above
OpenAI's high detail (85 + 170 per 512-pixel tile, about 1,100 for a 1,024-pixel square)
and Gemini's 258 per tile of a small image. Providers bill images as prompt tokens; an
estimate that counted them as nothing let a hard budget be overspent by every image."""


@dataclass(frozen=True, slots=True)
class Admitted:
    """A call cleared to go upstream, with what metering it later needs."""

    request: ChatRequest
    """With the model resolved to its catalog id (aliases work)."""
    catalog: Catalog
    occurred_at: datetime
    reservation_id: str | None = None
    """The budget reservation the call was admitted under; its usage event settles it."""


async def admit(
    request: ChatRequest,
    context: CallContext,
    *,
    catalog: CatalogSource,
    budgets: BudgetGate | None,
    clock: Callable[[], datetime],
    default_max_tokens: int = DEFAULT_MAX_TOKENS,
    lookup: AdmissionLookup | None = None,
) -> Admitted:
    """Check ``request`` for ``context`` and reserve its estimate; raises when refused.
    With ``lookup``, the catalog and whether ``budgets`` may hold anything come from it,
    in one look, and ``budgets`` is only asked when it may."""
    if problems := attribution_problems(context.job_id, context.agent, context.customer_id):
        raise InvalidRequestError(
            "; ".join(f"{name}: {problem}" for name, problem in problems.items())
        )
    now = clock()
    if lookup is None:
        prices, may_reserve = await catalog(), True
    else:
        outlook = await lookup(
            job_id=context.job_id,
            agent=context.agent,
            model=request.model,
            at=now,
            customer_id=context.customer_id,
        )
        prices, may_reserve = outlook.catalog, outlook.may_reserve
        owner = outlook.job_customer_id
        if context.customer_id is not None and owner not in (None, context.customer_id):
            raise InvalidRequestError(
                f"customer_id: job {context.job_id!r} belongs to customer {owner!r}, and this "
                f"call names customer {context.customer_id!r}; a job has one customer (send "
                f"its own, or change it with PATCH /v1/jobs/{context.job_id} first)",
                status_code=400,  # OpenAI's invalid_request_error, as the proxy's other checks
            )
    quote = prices.quote(request.model, now)
    if quote.price is None:
        raise UnknownModelError(f"LUC cannot price {request.model!r}: {quote.reason}")
    fallbacks = _fallbacks(request, prices, now)
    fallback_ids = list(dict.fromkeys(m for m, _ in fallbacks if m != quote.model_id))
    reservation_id = None
    # The one look asked about the call's own model: a fallback's hard budget is the gate's.
    if budgets is not None and (may_reserve or fallback_ids):
        prompt_tokens = (
            estimate_tokens(request.prompt_text()) + IMAGE_TOKENS * request.prompt_images()
        )
        bound = request.max_output_tokens()
        tokens = TokenCounts(
            input_tokens=prompt_tokens,
            output_tokens=(bound or default_max_tokens) * request.choices(),
        )
        # Rounded up to what a reservation holds (30 places, 40 digits): never below.
        estimate = money_ceiling(
            max(
                event_cost(tokens, price)
                for price in [quote.price, *(price for _, price in fallbacks)]
            ),
            ESTIMATE_DECIMAL_PLACES,
        )
        verdict = await budgets.reserve(
            job_id=context.job_id,
            agent=context.agent,
            model=quote.model_id,
            estimated_cost_usd=estimate,
            customer_id=context.customer_id,
            # The call's one instant: read again at the reservation, a midnight between
            # the two readings judged and held the call in the day after the one it spends in.
            at=now,
            fallback_models=fallback_ids,
        )
        if not verdict.allowed and verdict.refused_by == "credits":
            raise CreditsExhaustedError(
                f"prepaid credits exhausted: {verdict.reason or 'the customer has none left'}"
            )
        if not verdict.allowed:
            raise BudgetExceededError(
                f"budget exhausted: {verdict.reason or 'a hard budget refuses the call'}; "
                "raise the budget's limit_usd or wait for its next period"
            )
        reservation_id = verdict.reservation_id
        if reservation_id is not None and bound is None:
            request = _capped(request, default_max_tokens)
    return Admitted(replace(request, model=quote.model_id), prices, now, reservation_id)


_Fallback = tuple[str, ModelPrice]
"""A model that may answer a call in place of its own: its catalog id and its price."""


def _fallbacks(request: ChatRequest, prices: Catalog, now: datetime) -> list[_Fallback]:
    """The other models that may answer ``request`` (OpenRouter's ``models``), each with its
    price. One LUC cannot price is refused, budgets or none: its answer would be booked
    at the call's own model's price (see ``metering``), and a reservation must cover the
    dearest model that may answer."""
    found = []
    for model in request.fallback_models():
        fallback = prices.quote(model, now)
        if fallback.price is None:
            raise UnknownModelError(
                f"models: LUC cannot price {model!r}, which may answer this call (add it to "
                "the catalog, or leave it out of models)"
            )
        found.append((fallback.model_id, fallback.price))
    return found


def _capped(request: ChatRequest, max_tokens: int) -> ChatRequest:
    """``request`` with ``max_tokens`` as its only output bound (one the provider might
    read but LUC could not, a float say, is dropped with it)."""
    body = {
        k: v for k, v in request.body.items() if k not in ("max_tokens", "max_completion_tokens")
    }
    return replace(request, body={**body, "max_tokens": max_tokens})

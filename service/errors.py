"""One error tree for LUC; the API maps it to HTTP statuses in one handler.

::

    LucError
    ├── SettingsError            a LUC_* variable is invalid            (start-up)
    │   └── DatabaseNotReadyError  no LUC database where they point, or not
    │                              at the newest schema                 (command line)
    ├── DatabaseUnavailableError PostgreSQL cannot be reached           503
    ├── DatabaseSetupError       LUC's role lacks a privilege, or the   start-up / 503
    │                            schema is not the one this LUC needs
    ├── NotFoundError            the resource does not exist            404
    ├── InvalidRequestError      the request cannot be processed        400 / 422
    │   └── PayloadTooLargeError body or batch beyond its limit         413
    ├── CatalogError             a catalog version is invalid           422
    ├── ConflictError            the request clashes with stored state  409
    ├── BudgetExceededError      a hard budget refuses an LLM call      402
    │   └── CreditsExhaustedError  the customer's prepaid credits are   402
    │                              at zero under credit_stop
    └── UpstreamError            an outside service failed us           502
        └── GatewayError         an LLM provider call failed; carries advice
            ├── AuthenticationFailedError  provider refused LUC's credentials   502
            ├── InsufficientCreditsError   provider account out of credits      402
            ├── RateLimitedError           provider rate limit, retries spent   429
            ├── UnknownModelError          model id unknown to catalog/provider 400
            ├── UpstreamRejectedError      provider refused the request itself  400
            └── UpstreamUnavailableError   5xx, timeout, connection, mid-stream 502

A ``GatewayError`` says whether the fallback chain may try the next provider
(``falls_through``) and whether the same provider may be retried (``retryable``), and
(``billed``) whether the provider had already answered 2xx, so the attempt is paid for.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class LucError(Exception):
    """Root of every error LUC raises on purpose."""

    status_code = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class SettingsError(LucError):
    """A ``LUC_*`` environment variable holds an invalid value."""


class DatabaseNotReadyError(SettingsError):
    """``LUC_DATABASE_URL`` / ``LUC_DATA_DIR`` name no LUC database, or one whose schema is
    not the one this LUC needs: a command that only uses the database refuses it rather
    than create or migrate one that the server may not be using."""


class DatabaseUnavailableError(LucError):
    """PostgreSQL cannot be reached; the client should retry later."""

    status_code = 503


class DatabaseSetupError(LucError):
    """The database is not set up as LUC needs: its role lacks a privilege, or the schema
    is at another revision. An operator must act (the message says what); a request that
    meets it answers 503, as the service cannot do its work until then."""

    status_code = 503


class ClientGoneError(LucError):
    """The client disconnected before the answer, and the work it asked for was dropped
    (a dry run nobody waits for). Nobody reads the answer: 499 is for the access log."""

    status_code = 499


class NotFoundError(LucError):
    status_code = 404


class InvalidRequestError(LucError):
    status_code = 422

    def __init__(self, message: str, status_code: int = 422) -> None:
        super().__init__(message)
        self.status_code = status_code


class PayloadTooLargeError(InvalidRequestError):
    def __init__(self, message: str) -> None:
        super().__init__(message, status_code=413)


class CatalogError(LucError):
    status_code = 422


class ConflictError(LucError):
    """The request cannot apply to the state stored now (nothing new to invoice, say)."""

    status_code = 409


class UpstreamError(LucError):
    """An outside service (OpenRouter's model list, say) failed or answered nonsense."""

    status_code = 502


class BudgetExceededError(LucError):
    """A hard budget refuses the call before any token is spent."""

    status_code = 402


class CreditsExhaustedError(BudgetExceededError):
    """The job's customer has ``credit_stop`` and no prepaid credits left."""


@dataclass(frozen=True, slots=True)
class BilledAttempt:
    """What is known of an attempt that was answered 2xx but gave no usable answer."""

    generation_id: str | None = None
    model: str | None = None
    usage: Mapping[str, Any] | None = None
    """The provider's own ``usage`` object, when the broken answer carried one."""
    outcome: str | None = None
    """``timeout`` or ``connection_lost``: the request was sent whole but no answer came
    (the provider may have run and billed it all the same); ``None``: a 2xx came."""


class GatewayError(UpstreamError):
    """An LLM provider call failed. ``advice`` says what to do about it."""

    falls_through = False
    """May the fallback chain try the next provider?"""
    retryable = False
    """May the same provider be asked again (after ``retry_after`` or a backoff)?"""
    advice = ""
    billed: BilledAttempt | None = None
    """Set when a 2xx arrived before the failure (a body that is not an answer, or that
    stalled): the provider spent tokens, so the gateway meters the attempt before the
    chain raises or falls through."""
    paid = False
    """Set by the chain on the error that ends a call when some attempt of it reached a
    provider (``billed``, this one or an earlier one): asking again is a new paid call."""

    def __init__(
        self,
        detail: str,
        *,
        provider: str | None = None,
        upstream_status: int | None = None,
        retry_after: float | None = None,
        advice: str | None = None,
    ) -> None:
        if advice is not None:
            self.advice = advice
        where = f"{provider}: " if provider else ""
        status = f" (HTTP {upstream_status})" if upstream_status else ""
        tail = f" — {self.advice}" if self.advice else ""
        super().__init__(f"{where}{detail}{status}{tail}")
        self.detail = detail
        self.provider = provider
        self.upstream_status = upstream_status
        self.retry_after = retry_after


class AuthenticationFailedError(GatewayError):
    """The provider refused LUC's own credentials: an operator must fix them (502 to
    callers, whose LUC key is fine)."""

    status_code = 502
    advice = "check OPENROUTER_API_KEY: it must be a valid, enabled OpenRouter key (sk-or-v1-…)"


class InsufficientCreditsError(GatewayError):
    status_code = 402
    advice = (
        "add credits to the OpenRouter account (https://openrouter.ai/settings/credits) "
        "or ask for fewer max_tokens; a negative balance refuses even free models"
    )


class RateLimitedError(GatewayError):
    status_code = 429
    falls_through = True
    retryable = True
    advice = (
        "lower the request rate: use a cheaper/lower tier model or less concurrency, and "
        "wait Retry-After seconds (free :free models allow 20 requests per minute)"
    )


class UnknownModelError(GatewayError):
    status_code = 400
    advice = (
        "check the model id against LUC's catalog (GET /v1/catalog) and the provider's "
        "model list (OpenRouter GET /api/v1/models); ids look like google/gemini-3.0-flash"
    )


class UpstreamRejectedError(GatewayError):
    """The provider refused the request itself (bad parameters, context too long,
    moderation); another provider would refuse it too."""

    status_code = 400
    advice = "fix the request: the provider's message says which parameter it refused"


class AnswerDeadlineError(GatewayError):
    """The provider answered 2xx but its answer was still arriving at
    ``LUC_GATEWAY_STREAM_DEADLINE_SECONDS`` (keep-alives, or a trickle): LUC cut it. The
    tokens so far are billed; no other provider is tried (the caller has waited that long
    already, and a streamed answer's first bytes may be with it)."""

    status_code = 504
    advice = (
        "the provider kept the answer going past LUC_GATEWAY_STREAM_DEADLINE_SECONDS, so LUC "
        "cut it; its tokens so far are billed; try again, or ask for fewer tokens"
    )


class UpstreamUnavailableError(GatewayError):
    status_code = 502
    falls_through = True
    retryable = True
    advice = (
        "the provider is down or overloaded; LUC retried with backoff and tried the next "
        "provider of LUC_GATEWAY_CHAIN — try again later"
    )

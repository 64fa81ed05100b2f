"""Budget admission for a gateway running outside LUC: the ``BudgetGate`` port over HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx
import structlog

from service.gateway.ports import BudgetVerdict
from service.wire import ESTIMATE_DECIMAL_PLACES, money_ceiling, money_text

log = structlog.get_logger("luc.client")

RATE_LIMIT_RETRIES = 3
"""How many times a reservation refused with 429 (LUC's per-key limiter) is asked again."""
MAX_RETRY_AFTER_SECONDS = 5.0
"""The longest ``Retry-After`` waited for (longer ones are cut to it): the call waits."""


class RemoteBudgets:
    """Admission against a remote LUC: ``POST /v1/budgets/reservations`` before each call,
    with a key of scope ``ingest``. The answer's ``reservation_id`` goes on the call's usage
    event (the gateway does that), which settles the reservation once LUC records it; a
    call that ends without usage releases it (``DELETE /v1/budgets/reservations/{id}``).

    Fail-open policy: only when LUC cannot be reached (connection error, timeout) or says
    it is unavailable (503) is the call allowed without a reservation (logged, counted in
    ``failed_open``): a LUC outage must not stop AIMS, and its usage still arrives through
    the spool. A 429 is asked again after its ``Retry-After`` (at most
    ``RATE_LIMIT_RETRIES`` times, each wait at most ``MAX_RETRY_AFTER_SECONDS``). Any other
    answer that is not a verdict — a 4xx (a bad key, a request LUC refuses, still 429), a
    5xx other than 503, a body that is no verdict — refuses the call with LUC's message:
    letting it through would let a hard budget be bypassed by anything unexpected."""

    def __init__(self, base_url: str, api_key: str, http: httpx.AsyncClient) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self._http = http
        self.failed_open = 0
        """Calls allowed without a reservation because LUC was unreachable or unavailable."""

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
        # ``at`` is not sent: the reservations API takes no instant (a client naming the
        # period it is judged in could pick one with headroom), so LUC judges by its clock.
        del at
        body = {
            "job_id": job_id,
            "agent": agent,
            "model": model,
            # The money form LUC takes (40 significant digits, 30 places), rounded up.
            "estimated_cost_usd": money_text(
                money_ceiling(estimated_cost_usd, ESTIMATE_DECIMAL_PLACES)
            ),
            # The job's customer decides credit_stop; before an event has named it, the
            # call's own customer does.
            **({"customer_id": customer_id} if customer_id is not None else {}),
            **({"fallback_models": list(fallback_models)} if fallback_models else {}),
        }
        url = f"{self.base_url}/v1/budgets/reservations"
        attempt = 0
        while True:
            try:
                response = await self._http.post(url, json=body, headers=self._headers)
            except httpx.TransportError as exc:  # connection errors and timeouts
                return self._fail_open(f"{type(exc).__name__}: {exc}")
            status = response.status_code
            if status == 429 and attempt < RATE_LIMIT_RETRIES:
                attempt += 1
                await asyncio.sleep(_retry_after(response, attempt))
                continue
            break
        if status == 503:
            return self._fail_open(f"HTTP 503: {_message(response)}")
        if status in (200, 201, 402):
            verdict = _verdict(response)
            if verdict is not None:
                return verdict
        message = _message(response)
        if status in (401, 403):
            log.error(
                "budget_reservation_refused_api_key",
                status=status,
                detail="check the gateway's LUC key (scope ingest); calls are refused",
            )
        log.warning("budget_reservation_refused_unexpected_answer", status=status, error=message)
        return BudgetVerdict(allowed=False, reason=f"LUC answered HTTP {status}: {message}")

    async def release(self, reservation_id: str) -> None:
        try:
            response = await self._http.delete(
                f"{self.base_url}/v1/budgets/reservations/{reservation_id}",
                headers=self._headers,
            )
        except httpx.HTTPError as exc:
            log.warning("budget_reservation_not_released", error=str(exc))
            return
        if response.status_code != 204:
            # It expires in the end; until then it holds headroom its call never used.
            log.warning(
                "budget_reservation_not_released",
                status=response.status_code,
                error=_message(response),
            )

    def _fail_open(self, error: str) -> BudgetVerdict:
        self.failed_open += 1
        log.warning("budget_reservation_unavailable_allowing", error=error)
        return BudgetVerdict(allowed=True, reason="LUC unreachable; allowed")


def _verdict(response: httpx.Response) -> BudgetVerdict | None:
    """The verdict in a 200, 201 or 402 answer; ``None`` when the body is none."""
    try:
        data = response.json()
        if not isinstance(data, dict) or not isinstance(data.get("allowed"), bool):
            return None
        remaining = data.get("remaining_usd")
        reservation_id = data.get("reservation_id")
        reason = data.get("reason")
        refused_by = data.get("refused_by")
        return BudgetVerdict(
            allowed=response.status_code != 402 and data["allowed"],
            remaining_usd=Decimal(remaining) if isinstance(remaining, str) else None,
            reason=reason if isinstance(reason, str) else None,
            # It travels on the usage event: anything but an id the event can carry would
            # get the call's usage rejected, so it is dropped instead.
            reservation_id=reservation_id
            if isinstance(reservation_id, str) and 0 < len(reservation_id) <= 128
            else None,
            refused_by=refused_by if isinstance(refused_by, str) else None,
        )
    except (ValueError, InvalidOperation):
        return None


def _message(response: httpx.Response) -> str:
    """LUC's error message (``detail`` or ``error.message``), else the body's start."""
    try:
        data: Any = response.json()
    except ValueError:
        data = None
    if isinstance(data, dict):
        error = data.get("error")
        for text in (
            data.get("detail"),
            error.get("message") if isinstance(error, dict) else error,
        ):
            if isinstance(text, str) and text:
                return text[:500]
    return response.text[:500] or "no message"


def _retry_after(response: httpx.Response, attempt: int) -> float:
    try:
        seconds = float(response.headers.get("retry-after", ""))
    except ValueError:
        seconds = 0.1 * 2**attempt  # no usable header: a short backoff
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)

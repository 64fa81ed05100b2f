"""Budget admission for a gateway running outside LUC: the ``BudgetGate`` port over HTTP."""

from __future__ import annotations

from decimal import Decimal

import httpx
import structlog

from service.gateway.ports import BudgetVerdict

log = structlog.get_logger("luc.client")


class RemoteBudgets:
    """Admission against a remote LUC: ``POST /v1/budgets/reservations`` before each call,
    with a key of scope ``ingest``. The answer's ``reservation_id`` goes on the call's usage
    event (the gateway does that), which settles the reservation once LUC records it.

    When LUC cannot be reached, or answers something other than a verdict, the call is
    allowed (logged), without a reservation: a LUC outage must not stop AIMS, and its usage
    still arrives through the spool."""

    def __init__(self, base_url: str, api_key: str, http: httpx.AsyncClient) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self._http = http

    async def reserve(
        self, *, job_id: str, agent: str, model: str, estimated_cost_usd: Decimal
    ) -> BudgetVerdict:
        body = {
            "job_id": job_id,
            "agent": agent,
            "model": model,
            "estimated_cost_usd": format(estimated_cost_usd, "f"),
        }
        try:
            response = await self._http.post(
                f"{self.base_url}/v1/budgets/reservations", json=body, headers=self._headers
            )
            if response.status_code not in (200, 201, 402):
                response.raise_for_status()
                raise ValueError(f"unexpected HTTP {response.status_code}")
            data = response.json()
            remaining = data.get("remaining_usd")
            reservation_id = data.get("reservation_id")
            verdict = BudgetVerdict(
                allowed=response.status_code != 402 and data.get("allowed") is True,
                remaining_usd=None if remaining is None else Decimal(remaining),
                reason=data.get("reason"),
                # It travels on the usage event: anything but an id the event can carry
                # would get the call's usage rejected, so it is dropped instead.
                reservation_id=reservation_id
                if isinstance(reservation_id, str) and 0 < len(reservation_id) <= 128
                else None,
            )
        except (httpx.HTTPError, ValueError, ArithmeticError, AttributeError) as exc:
            status = exc.response.status_code if isinstance(exc, httpx.HTTPStatusError) else None
            if status in (401, 403):
                log.error(
                    "budget_reservation_refused_api_key",
                    status=status,
                    detail="check the gateway's LUC key (scope ingest); calls are let through",
                )
            log.warning("budget_reservation_unavailable_allowing", error=str(exc))
            return BudgetVerdict(allowed=True, reason="LUC unreachable; allowed")
        return verdict

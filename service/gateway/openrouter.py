"""OpenRouter's chat completions, streaming and not (``/api/v1/chat/completions``).

Sends ``Authorization: Bearer $OPENROUTER_API_KEY`` and the app attribution headers
(``HTTP-Referer``, ``X-Title``). Usage comes on the answer, or in a stream on whichever
chunk carries a non-null ``usage`` (the last data event before ``[DONE]``, in any of its
three shapes). When a stream ended in an error without usage, ``usage_after`` asks
``GET /generation?id=…``, whose record often answers 404 for a few seconds first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, ClassVar

import httpx
import msgspec
import structlog

from service.gateway.models import ProviderUsage, decode_json
from service.gateway.upstream import HttpProvider, RetryPolicy
from service.gateway.usage import from_generation, from_openai_usage

log = structlog.get_logger("luc.gateway")

# Waits before each look-up of /generation: the record appears after ~0.5 s to a few s.
GENERATION_DELAYS = (0.5, 1.0, 2.0, 4.0)
HELD_GENERATION_DELAYS = (0.0, 1.0, 2.0, 4.0, 8.0, 14.0)
"""...and for a call a dead process held (``usage_after(..., patient=True)``): no caller
waits on it, so the look-ups go on for 29 s."""


class OpenRouterProvider(HttpProvider):
    name: ClassVar[str] = "openrouter"

    def __init__(
        self,
        http: httpx.AsyncClient,
        base_url: str,
        api_key: str,
        retry: RetryPolicy,
        *,
        http_referer: str | None = None,
        app_title: str | None = "LUC",
        generation_delays: tuple[float, ...] = GENERATION_DELAYS,
        held_generation_delays: tuple[float, ...] = HELD_GENERATION_DELAYS,
    ) -> None:
        super().__init__(http, base_url, retry)
        self._api_key = api_key
        self._attribution: dict[str, str] = {}
        if http_referer:
            self._attribution["HTTP-Referer"] = http_referer
        if app_title:
            self._attribution["X-Title"] = app_title
            self._attribution["X-OpenRouter-Title"] = app_title
        self.generation_delays = generation_delays
        self.held_generation_delays = held_generation_delays

    async def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._api_key}", **self._attribution}

    def secrets(self) -> tuple[str, ...]:
        return (self._api_key,)

    def usage_of(self, usage: Mapping[str, Any]) -> ProviderUsage | None:
        return from_openai_usage(usage)

    async def usage_after(
        self, generation_id: str, *, patient: bool = False
    ) -> ProviderUsage | None:
        delays = self.generation_delays if not patient else self.held_generation_delays
        for delay in delays:
            await asyncio.sleep(delay)
            try:
                response = await self.http.get(
                    f"{self.base_url}/generation",
                    params={"id": generation_id},
                    headers=await self.headers(),
                )
            except httpx.HTTPError as exc:
                log.info("generation_lookup_failed", id=generation_id, error=str(exc))
                continue
            if response.status_code == 404:
                continue  # not written yet
            if response.status_code != 200:
                log.info("generation_lookup_failed", id=generation_id, status=response.status_code)
                return None
            try:
                data = decode_json(response.content).get("data")
            except (msgspec.DecodeError, AttributeError):
                return None
            return from_generation(data) if isinstance(data, Mapping) else None
        return None

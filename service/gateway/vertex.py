"""Vertex AI through its OpenAI-compatible endpoint
(``…/projects/{p}/locations/{l}/endpoints/openapi/chat/completions``).

Auth is an OAuth2 access token (API keys are refused): ``LUC_VERTEX_ACCESS_TOKEN`` as
given, or the output of ``LUC_VERTEX_TOKEN_COMMAND`` (``gcloud auth print-access-token``),
run at first use and again, once, when Vertex answers 401 (tokens last about an hour).
Vertex serves the models whose ids start with one of ``LUC_VERTEX_MODELS`` (``google/``).
Usage has no cost field; output is billed as ``max(completion, total − prompt)``.
"""

from __future__ import annotations

import asyncio
import shlex
import time
from collections.abc import Mapping
from typing import Any, ClassVar

import httpx

from service.errors import (
    AuthenticationFailedError,
    GatewayError,
    RateLimitedError,
    UpstreamRejectedError,
)
from service.gateway.models import ChatRequest, ProviderUsage
from service.gateway.upstream import HttpProvider, RetryPolicy
from service.gateway.usage import from_vertex_usage

TOKEN_ADVICE = (
    "refresh the Vertex AI access token: set LUC_VERTEX_ACCESS_TOKEN or "
    "LUC_VERTEX_TOKEN_COMMAND (e.g. 'gcloud auth print-access-token'); the account needs "
    "the aiplatform.endpoints.predict permission on LUC_VERTEX_PROJECT"
)
QUOTA_ADVICE = (
    "Vertex AI quota exhausted: lower concurrency, use a lower tier model, or ask Google "
    "Cloud for a higher quota; LUC moves on to the next provider of LUC_GATEWAY_CHAIN"
)
TOKEN_LIFETIME_SECONDS = 50 * 60  # Google's tokens last ~1 h; renew a little before
COMMAND_TIMEOUT_SECONDS = 30.0


class VertexProvider(HttpProvider):
    name: ClassVar[str] = "vertex"

    def __init__(
        self,
        http: httpx.AsyncClient,
        base_url: str,
        retry: RetryPolicy,
        *,
        access_token: str | None = None,
        token_command: str | None = None,
        model_prefixes: tuple[str, ...] = ("google/",),
    ) -> None:
        super().__init__(http, base_url, retry)
        self._token = access_token
        self._token_command = token_command
        self._token_at = 0.0 if access_token is None else float("inf")
        self._lock = asyncio.Lock()
        self.model_prefixes = model_prefixes

    def serves(self, model: str) -> bool:
        return model.startswith(self.model_prefixes)

    def payload(self, request: ChatRequest, stream: bool) -> dict[str, Any]:
        body = super().payload(request, stream)
        if stream:  # OpenAI semantics: without it, Vertex may send no usage at all
            # A caller's options that are no object (`"yes"`) cannot be kept beside it.
            options = body.get("stream_options")
            kept = options if isinstance(options, dict) else {}
            body["stream_options"] = {**kept, "include_usage": True}
        return body

    def usage_of(self, usage: Mapping[str, Any]) -> ProviderUsage | None:
        return from_vertex_usage(usage)

    async def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {await self._access_token()}"}

    def secrets(self) -> tuple[str, ...]:
        return (self._token,) if self._token else ()

    async def _access_token(self, *, renew: bool = False) -> str:
        async with self._lock:
            stale = time.monotonic() - self._token_at > TOKEN_LIFETIME_SECONDS
            if self._token_command and (renew or self._token is None or stale):
                self._token = await _run_token_command(self._token_command)
                self._token_at = time.monotonic()
            if not self._token:
                raise AuthenticationFailedError(
                    "no access token", provider=self.name, advice=TOKEN_ADVICE
                )
            return self._token

    async def recover(self, error: GatewayError) -> bool:
        if isinstance(error, AuthenticationFailedError) and self._token_command:
            await self._access_token(renew=True)
            return True
        return False

    def classify(
        self, status: int, message: str, error: Mapping[str, Any], retry_after: float | None
    ) -> GatewayError:
        args: dict[str, Any] = {"provider": self.name, "upstream_status": status}
        if status in (401, 403):  # a stale token, or an account without the permission
            return AuthenticationFailedError(message, advice=TOKEN_ADVICE, **args)
        if status == 429:
            return RateLimitedError(message, retry_after=retry_after, advice=QUOTA_ADVICE, **args)
        if status == 402:  # Vertex bills the project; it does not answer 402
            return UpstreamRejectedError(message, **args)
        return super().classify(status, message, error, retry_after)


async def _run_token_command(command: str) -> str:
    try:
        process = await asyncio.create_subprocess_exec(
            *shlex.split(command),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), COMMAND_TIMEOUT_SECONDS)
    except (OSError, TimeoutError) as exc:
        raise AuthenticationFailedError(
            f"LUC_VERTEX_TOKEN_COMMAND failed to run: {exc}", provider="vertex", advice=TOKEN_ADVICE
        ) from exc
    token = out.decode().strip()
    if process.returncode != 0 or not token:
        raise AuthenticationFailedError(
            f"LUC_VERTEX_TOKEN_COMMAND exited with {process.returncode}: "
            f"{err.decode(errors='replace').strip()[:300]}",
            provider="vertex",
            advice=TOKEN_ADVICE,
        )
    return token.splitlines()[-1].strip()

"""LUC's proxy in front of a scripted OpenRouter, for the gateway's tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar.testing import AsyncTestClient

from service.app import create_app
from tests.support.scripted_http import Scripted, scripted_server_thread
from tests.support.settings import settings_for


@asynccontextmanager
async def relayed_to_scripted(
    database_url: str, **env: str
) -> AsyncIterator[tuple[Scripted, AsyncTestClient[Any]]]:
    """LUC's proxy to a scripted OpenRouter on a thread of its own (AsyncTestClient blocks
    the test's loop while the app answers), with ``env``'s settings beside."""
    with scripted_server_thread() as upstream:
        settings = settings_for(
            database_url,
            OPENROUTER_API_KEY="sk-or-v1-k",
            LUC_OPENROUTER_BASE_URL=upstream.url + "/api/v1",
            LUC_GATEWAY_CHAIN="openrouter",
            **env,
        )
        async with AsyncTestClient(app=create_app(settings)) as client:
            yield upstream, client

"""The OpenAI-compatible routes answer every failure in OpenAI's error shape, also one no
handler of LUC's foresaw (a bug, a database gone or a grant revoked mid-request): OpenAI's
SDKs read ``error.message``, ``error.type`` and ``error.code`` from the body."""

from __future__ import annotations

import asyncpg
import openai
import pytest
from litestar import Litestar, post
from litestar.testing import TestClient

from service.api.openai_models import ModelsController
from service.api.proxy import ChatCompletionsController


def _raising(exc: Exception) -> Litestar:
    """An app whose one route raises ``exc`` under the proxy's exception handlers."""

    @post("/v1/chat/completions", exception_handlers=ChatCompletionsController.exception_handlers)
    async def create() -> None:
        raise exc

    return Litestar([create])


@pytest.mark.parametrize(
    ("exc", "status", "retry_after", "message"),
    [
        (RuntimeError("a bug"), 500, None, "internal error"),
        (ConnectionRefusedError(), 503, "5", "PostgreSQL is unavailable"),
        (
            asyncpg.InsufficientPrivilegeError("permission denied for table event_keys"),
            503,
            "5",
            "lacks a privilege",
        ),
    ],
)
def test_an_unforeseen_failure_is_answered_in_openai_s_error_shape(
    exc: Exception, status: int, retry_after: str | None, message: str
) -> None:
    """Before: LUC's own ``{"status_code", "detail"}``, whose whole JSON an OpenAI SDK showed
    as the error's message (``e.body`` held no ``message``, ``type`` nor ``code``)."""
    with TestClient(_raising(exc)) as client:
        response = client.post("/v1/chat/completions", json={})
    assert response.status_code == status
    assert response.headers.get("retry-after") == retry_after
    error = response.json()["error"]
    assert error["type"] == "api_error"
    assert message in error["message"]
    # As the SDK reads it.
    # The SDK types its own httpx2.Response; it reads only request, status_code and headers.
    raised = openai.InternalServerError(
        error["message"],
        response=response,  # type: ignore[arg-type]
        body=error,
    )
    assert (raised.message, raised.type) == (error["message"], "api_error")


def test_the_model_list_answers_unforeseen_failures_alike() -> None:
    handlers = ModelsController.exception_handlers
    assert handlers is not None
    assert handlers[Exception] is ChatCompletionsController.exception_handlers[Exception]

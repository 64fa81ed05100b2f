"""The OpenAI-compatible proxy's error body, which OpenAI SDKs turn into their exceptions."""

from __future__ import annotations

import msgspec


class OpenAIErrorDetail(msgspec.Struct):
    message: str
    type: str
    param: str | None
    code: str | None


class OpenAIError(msgspec.Struct):
    """OpenAI's error body, which OpenAI SDKs turn into their exceptions."""

    error: OpenAIErrorDetail

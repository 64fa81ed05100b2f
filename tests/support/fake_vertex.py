"""A fake Vertex AI OpenAI-compatible endpoint, per reference §7: real HTTP on loopback.

``POST /v1/projects/{project}/locations/{location}/endpoints/openapi/chat/completions``
with ``Authorization: Bearer <access token>``; ids are not ``gen-…``,
``system_fingerprint`` is ``""``, ``usage`` has no ``cost`` and carries
``extra_properties.google.traffic_type``; with ``thinking`` tokens, ``total_tokens``
exceeds ``prompt + completion`` (completion leaves thinking out). Errors use Google's
envelope ``{"error": {"code", "message", "status"}}``.
"""

from __future__ import annotations

import random
import string
from typing import Any

from tests.support.fake_openrouter import FakeOpenRouter, Reply

_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}


def vertex_usage(
    prompt: int, completion: int, *, thinking: int = 0, cached: int = 0
) -> dict[str, Any]:
    """Vertex usage: thinking tokens counted in total_tokens only, as captured."""
    body: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion + thinking,
        "extra_properties": {"google": {"traffic_type": "ON_DEMAND"}},
    }
    if thinking:
        body["completion_tokens_details"] = {"reasoning_tokens": thinking}
    if cached:
        body["prompt_tokens_details"] = {"cached_tokens": cached}
    return body


class FakeVertex(FakeOpenRouter):
    def __init__(
        self,
        token: str = "ya29.fake-access-token",
        project: str = "aims-test",
        location: str = "global",
    ) -> None:
        self.prefix = f"/v1/projects/{project}/locations/{location}/endpoints/openapi"
        super().__init__(api_key=token)
        self.default = Reply(usage=vertex_usage(12, 3))

    def new_id(self) -> str:
        return "".join(random.choices(string.ascii_letters + string.digits, k=23))

    def error_body(self, status: int, message: str, metadata: dict[str, Any] | None) -> Any:
        return {"error": {"code": status, "message": message, "status": _STATUS.get(status, "")}}

    def base_fields(self, reply: Reply, gen_id: str, model: str) -> dict[str, Any]:
        fields = super().base_fields(reply, gen_id, model)
        del fields["provider"]
        fields["system_fingerprint"] = ""
        return fields

"""The probes' answer."""

from __future__ import annotations

import msgspec


class Health(msgspec.Struct):
    status: str


class GatewayReadiness(msgspec.Struct):
    mode: str
    """``stub`` (heuristic mode: no provider is configured, every chat completion is a stub
    answer, no LLM is called and nothing is billed) or ``providers``."""
    chain: list[str]
    """The providers ``/v1/chat/completions`` tries, in order."""
    detail: str


class Readiness(msgspec.Struct):
    status: str
    gateway: GatewayReadiness | None
    """What answers chat completions; null when this process has no gateway."""
    pid: int = 0
    """The process that answered: one of ``luc serve --workers N``'s workers."""

"""Parked usage: proxied calls' usage events the ledger refused, kept in the local spool."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec

from service.api.schemas.common import wire_struct
from service.client.spool import Parked
from service.wire import instant_text


class ParkedUsageOut(msgspec.Struct):
    id: int
    """The spool's number for it: what replay and discard take."""
    event_id: str
    status: str
    """``conflict`` or ``rejected``: the ledger's answer."""
    reason: str | None
    parked_at: str
    event: Any
    """The usage event as the gateway built it (its JSON text if it is no JSON)."""


class ParkedUsagePage(msgspec.Struct):
    items: list[ParkedUsageOut]
    next_cursor: str | None
    parked: int
    """Everything parked in this process's spool."""
    pending: int
    """Usage waiting in the spool to be recorded (replayed on its own, not parked)."""


def parked_out(item: Parked) -> ParkedUsageOut:
    try:
        event: Any = msgspec.json.decode(item.body)
    except msgspec.DecodeError:
        event = item.body.decode(errors="replace")
    parked_at = datetime.fromtimestamp(item.parked_at, UTC)  # seconds since the epoch
    return wire_struct(ParkedUsageOut, item, parked_at=instant_text(parked_at), event=event)

"""What recording answers: each event's outcome, in request order, once committed."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from service.ingest.models import Rejection, UsageEvent

ACCEPTED = "accepted"
DUPLICATE = "duplicate"
CONFLICT = "conflict"
REJECTED = "rejected"
STATUSES = (ACCEPTED, DUPLICATE, CONFLICT, REJECTED)
STORED = (ACCEPTED, DUPLICATE)
"""Both mean: on the ledger, once. The other two will not change on retry."""


@dataclass(frozen=True, slots=True)
class EventOutcome:
    id: str | None
    status: str
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    results: list[EventOutcome]
    alerts: int = 0
    """Budget alerts this batch raised (the dispatcher can be woken for them)."""

    def count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status)


RecordFn = Callable[[Sequence[UsageEvent | Rejection]], Awaitable[BatchOutcome]]
"""Records a batch in one transaction (``record_batch`` on a pooled connection, or
``Recorder.record_events`` with the ingest metrics)."""

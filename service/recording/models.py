"""What recording answers: each event's outcome, in request order, once committed."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from operator import attrgetter

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
    warning: str | None = None
    """Of an accepted event: what it asked for and did not get (its reservation_id settled
    nothing, and why). The event is recorded all the same."""


_status = attrgetter("status")


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    results: list[EventOutcome]
    alerts: int = 0
    """Budget alerts this batch raised (the dispatcher can be woken for them); for a group
    recorded in one trip, 1 when it may have raised some (``one_trip.Stored.may_alert``)."""
    _counts: Counter[str] = field(init=False, repr=False, compare=False)
    """Results by status, counted once: the answer and the metrics each ask for all four."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "_counts", Counter(map(_status, self.results)))

    def count(self, status: str) -> int:
        return self._counts[status]


RecordFn = Callable[[Sequence[UsageEvent | Rejection]], Awaitable[BatchOutcome]]
"""Records a batch in one transaction (``record_batch`` on a pooled connection, or
``Recorder.record_events`` with the ingest metrics)."""

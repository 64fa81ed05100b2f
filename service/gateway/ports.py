"""What the gateway needs from LUC, and nothing more: three ports, and a fourth optional one.

- ``UsageSink``: where each call's usage event goes.
- ``BudgetGate``: admission under budgets before a call.
- ``CatalogSource``: the price lookup (the catalog, every version) that calls are checked
  and metered against.
- ``AdmissionLookup`` (optional): the catalog and whether the budget gate has anything to
  hold for the call, in one look; inside LUC, one database round trip where the two others
  took two, each with its own pooled connection.

The gateway imports no database code: whoever builds a ``Gateway`` hands it adapters.
Inside LUC, ``app.py`` builds them from ``service.recording`` (the ledger, budgets and
catalog in PostgreSQL); a gateway running elsewhere uses ``service.client`` (the emitter
and remote budgets) and ``fixed_catalog`` over the catalog LUC ships
(``service.catalog.service.bundled_catalog``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from service.ingest.models import UsageEventIn
from service.pricing.catalog import Catalog


class UsageSink(Protocol):
    """Where usage events go: the ledger in-process, or the emitter to a remote LUC."""

    async def emit(self, event: UsageEventIn, supersedes: int | None = None) -> None:
        """Make ``event`` durable; ``supersedes``: the hold it replaces (``hold``)."""

    def hold(self, event: UsageEventIn, supersedes: int | None = None) -> int | None:
        """Keep ``event``, the usage of a call still in flight, to be booked should the
        process end before the call's own usage is emitted, in place of the hold
        ``supersedes``; a token, or ``None`` when the sink keeps no such thing."""

    def release(self, held: int) -> None:
        """Drop a hold whose call ended without usage of its own."""


@dataclass(frozen=True, slots=True)
class BudgetVerdict:
    allowed: bool
    remaining_usd: Decimal | None = None
    reason: str | None = None
    reservation_id: str | None = None
    """The reservation that holds the call's estimate under its hard budgets; the call's
    usage event carries it, which settles it. ``None`` when nothing is held."""
    refused_by: str | None = None
    """When refused: ``credits`` (the customer's credit_stop at zero) or ``budget``."""
    reservations_held: bool = False
    """When refused by a budget: some hard budget holds other calls' reservations, which
    may be of calls already answered whose usage is on its way (so room may come)."""


class BudgetGate(Protocol):
    """Admission under budgets: reserves the call's estimate against its hard budgets
    (``POST /v1/budgets/reservations``), or refuses the call; releases the reservation of
    a call that ended without a usage event (``DELETE /v1/budgets/reservations/{id}``)."""

    async def reserve(
        self,
        *,
        job_id: str,
        agent: str,
        model: str,
        estimated_cost_usd: Decimal,
        customer_id: str | None = None,
        at: datetime | None = None,
        fallback_models: Sequence[str] = (),
    ) -> BudgetVerdict:
        """``at``: the instant the call is admitted at, its usage event's ``occurred_at``:
        the day and month whose budgets judge and hold the call (else the gate's clock).
        ``fallback_models``: the other models that may answer the call (catalog ids); their
        hard budgets judge and hold it too."""
        ...

    async def release(self, reservation_id: str) -> None:
        """Stop holding ``reservation_id`` (idempotent; a settled one stays settled).
        Best effort: raises nothing, since an unreleased hold still expires."""
        ...


@dataclass(frozen=True, slots=True)
class Outlook:
    """What admission needs to know of LUC before a call, read at once."""

    catalog: Catalog
    """The catalog as it stands (as ``CatalogSource`` answers)."""
    may_reserve: bool
    """Whether a hard budget or a customer's ``credit_stop`` may apply to the call, read in
    the same look: when not, ``BudgetGate.reserve`` would hold nothing and is not asked."""
    job_customer_id: str | None = None
    """The customer the job already belongs to, if any: a call naming another is refused
    before it is paid for, as the ledger would refuse its usage (SPEC §11)."""


class AdmissionLookup(Protocol):
    """``Outlook`` for a call of ``job_id`` and ``agent`` asking for ``model`` (a catalog id
    or an alias, resolved at ``at``); as exact as asking ``CatalogSource`` and then the
    budget gate, in one look."""

    async def __call__(
        self, *, job_id: str, agent: str, model: str, at: datetime, customer_id: str | None = None
    ) -> Outlook:
        """``customer_id``: the customer the call names. A job LUC has not seen yet becomes
        that customer's at once (its usage would make it so when recorded, up to a usage
        writer's round later: meanwhile a call naming another customer was let through,
        paid, and its usage refused by the ledger)."""
        ...


CatalogSource = Callable[[], Awaitable[Catalog]]
"""The price lookup: the catalog as it stands, asked once per call."""


def fixed_catalog(catalog: Catalog) -> CatalogSource:
    """A price lookup that never changes (a gateway that cannot read LUC's catalog)."""

    async def load() -> Catalog:
        return catalog

    return load

"""Which catalog version prices an event: the latest ``effective_from`` not after it."""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

from service.pricing.models import CatalogVersion, ModelPrice

STUB_PROVIDER = "stub"
"""The gateway's heuristic mode: a canned answer, no LLM called (``service.gateway.stub``)."""
NOT_BILLED_STUB = "not billed: stub answer (heuristic mode, no LLM was called)"


@dataclass(frozen=True, slots=True)
class PriceQuote:
    """The outcome of looking an event's model up: a price, or why there is none."""

    version: CatalogVersion | None
    model_id: str
    price: ModelPrice | None
    reason: str | None
    """Why there is no price; or, beside a price, why it is not the catalog's."""

    def for_provider(self, provider: str) -> PriceQuote:
        """The quote an event answered by ``provider`` is charged at.

        A stub answer is not an LLM call: nobody paid a provider for it, so it must never
        be billed as one. Its usage is still recorded (who asked for what, in heuristic
        mode) but at a zero price with ``NOT_BILLED_STUB`` as the reason, which every
        ledger entry, job line and invoice shows; invoices list it apart as not billed.
        Zero rather than unpriced: its cost is known (nothing), so it must not wait for a
        catalog version nor count as unknown usage. A model the catalog lacks stays
        unpriced, as for any provider: unpriced is never silently zero.
        """
        if provider != STUB_PROVIDER or self.price is None:
            return self
        zero = Decimal(0)
        free = replace(
            self.price,
            input=zero,
            output=zero,
            cache_read=zero,
            cache_write=zero,
            reasoning=zero,
            per_request=zero,
            long_context=(),
        )
        return PriceQuote(self.version, self.model_id, free, NOT_BILLED_STUB)


class Catalog:
    """All catalog versions, ordered for lookup by event time. Immutable once built."""

    def __init__(self, versions: Iterable[CatalogVersion]) -> None:
        # On equal effective_from the version created last wins, so ids sort ascending
        # within a timestamp and the bisect takes the rightmost.
        self.versions = sorted(versions, key=lambda v: (v.effective_from, v.id))
        self._starts = [v.effective_from for v in self.versions]
        self.by_id = {v.id: v for v in self.versions}

    def __len__(self) -> int:
        return len(self.versions)

    @property
    def newest_id(self) -> int | None:
        return max(self.by_id) if self.by_id else None

    def version_at(self, when: datetime) -> CatalogVersion | None:
        """The version in force at ``when``, or ``None`` before the first one."""
        index = bisect.bisect_right(self._starts, when)
        return self.versions[index - 1] if index else None

    def quote(self, model: str, when: datetime) -> PriceQuote:
        version = self.version_at(when)
        if version is None:
            return PriceQuote(None, model, None, "no catalog version is in force at occurred_at")
        model_id = version.resolve(model)
        price = version.models.get(model_id)
        if price is None:
            return PriceQuote(
                version,
                model_id,
                None,
                f"model {model_id!r} is not in catalog version {version.id}",
            )
        return PriceQuote(version, model_id, price, None)

"""The generic usage query and the list of unpriced events."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Annotated, cast

from litestar import get
from litestar.di import NamedDependency
from litestar.params import FromQuery, QueryParameter

from service.api.deps import LucController, Resources
from service.api.params import From, Limit, To, decode_cursor, page, page_size, parse_range
from service.api.schemas.usage import UnpricedPage, UsageOut, UsageRowOut, unpriced_event_out
from service.auth.guard import READ
from service.db import Connection, on_connection
from service.ledger.models import UnpricedEvent
from service.ledger.service import unpriced_events
from service.pricing.catalog import Catalog
from service.rollups.models import WireRow
from service.rollups.service import USAGE_GROUPS, usage


class UsageController(LucController):
    path = "/v1"
    tags = ["usage"]
    opt = READ

    @get(
        "/usage",
        operation_id="queryUsage",
        summary="Usage, cost and price grouped by any of agent, model, provider, tier, day, "
        "job_id, catalog_version, customer",
        description=(
            f"`group_by` is a comma-separated list of: {', '.join(USAGE_GROUPS)}. `customer` "
            "groups by the customer each entry was priced for (null: jobs without one); "
            "`customer_id` keeps one customer's. `model` takes a catalog id or an alias, "
            "as events do."
        ),
    )
    async def query(
        self,
        luc: NamedDependency[Resources],
        group_by: Annotated[str | None, QueryParameter(description="comma-separated keys")] = None,
        start: From = None,
        end: To = None,
        agent: FromQuery[str | None] = None,
        model: FromQuery[str | None] = None,
        job_id: FromQuery[str | None] = None,
        provider: FromQuery[str | None] = None,
        customer_id: FromQuery[str | None] = None,
    ) -> UsageOut:
        lower, upper = parse_range(start, end)
        # A key named twice is one group (and one key in the answer), as in reconciliation.
        keys = list(dict.fromkeys(k.strip() for k in (group_by or "").split(",") if k.strip()))

        async def query(conn: Connection) -> list[WireRow]:
            # SPEC §2: events name a model by its id or an alias, and the ledger holds the
            # id pricing resolved; the filter takes an alias too, resolved as now.
            model_id = (
                None
                if model is None
                else await luc.catalog_cache.model_id(conn, model, datetime.now(UTC))
            )
            return await usage(
                conn,
                group_by=keys,
                start=lower,
                end=upper,
                agent=agent,
                model=model_id,
                job_id=job_id,
                provider=provider,
                customer_id=customer_id,
            )

        rows = await on_connection(luc.pool, query)
        # Structs of UsageRowOut's fields (rollups.service.wire_rows), encoded as they are
        # (made again as UsageRowOut, field by field, they would encode the same).
        return UsageOut(group_by=keys, rows=cast("list[UsageRowOut]", rows))

    @get(
        "/unpriced",
        operation_id="listUnpricedEvents",
        summary="Events kept without a price because no catalog version knows their model",
        description=(
            "Each with its customer and its price for that customer: null when unpriced for "
            "the customer too (a catalog-basis plan, or no plan); known where the plan prices "
            "the model itself or marks up the provider's reported cost. `customer_id` keeps "
            "one customer's."
        ),
    )
    async def unpriced(
        self,
        luc: NamedDependency[Resources],
        model: FromQuery[str | None] = None,
        job_id: FromQuery[str | None] = None,
        customer_id: FromQuery[str | None] = None,
        cursor: FromQuery[str | None] = None,
        limit: Limit = None,
    ) -> UnpricedPage:
        size = page_size(limit)

        async def read(conn: Connection) -> tuple[list[UnpricedEvent], Catalog]:
            rows = await unpriced_events(
                conn, decode_cursor(cursor), model, job_id, size + 1, customer_id
            )
            return rows, await luc.catalog_cache.get(conn)

        rows, catalog = await on_connection(luc.pool, read)
        items, next_cursor = page(rows, size, lambda e: e.event_id)
        return UnpricedPage(
            items=[unpriced_event_out(_reason_now(e, catalog)) for e in items],
            next_cursor=next_cursor,
        )


def _reason_now(event: UnpricedEvent, catalog: Catalog) -> UnpricedEvent:
    """``event`` with the reason pricing gives it now: the one recorded at its booking names
    the version then in force, and a version added since may have taken over at its instant
    (the model must be added to that one). Kept as recorded when the catalog would price it
    now (re-rating has yet to)."""
    reason = catalog.quote(event.model, event.occurred_at).reason
    return event if reason is None else dataclasses.replace(event, reason=reason)

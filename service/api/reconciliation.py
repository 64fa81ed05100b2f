"""Reconciliation: what the catalog priced beside what the providers reported (SPEC §5)."""

from __future__ import annotations

from typing import Annotated

from litestar import get
from litestar.di import NamedDependency
from litestar.params import QueryParameter

from service.api.deps import LucController, Resources
from service.api.params import From, To, parse_range
from service.api.schemas.reconciliation import ReconciliationOut, reconciliation_out
from service.auth.guard import READ
from service.db import Connection, on_connection
from service.reconciliation.models import ReconciliationRow
from service.reconciliation.service import DRIFT_MIN_EVENTS, GROUP_KEYS, group_keys, reconcile

# Required, but checked by the handler (group_keys) so that a missing one is told like a
# wrong one; the document says so, where it had it optional and clients left it out.
GroupBy = Annotated[
    str | None,
    QueryParameter(
        required=True,
        description=f"comma-separated, one or more of: {', '.join(GROUP_KEYS)}",
    ),
]


class ReconciliationController(LucController):
    path = "/v1"
    tags = ["reconciliation"]
    opt = READ

    @get(
        "/reconciliation",
        operation_id="reconcileCosts",
        summary="Catalog-priced against provider-reported cost by model, provider and UTC day",
        description=(
            "Per group: events, reported events, catalog and provider-reported cost of the "
            "reported, priced events, their difference and its ratio, and `drift` when the "
            f"ratio exceeds `LUC_RECONCILIATION_TOLERANCE` over at least {DRIFT_MIN_EVENTS} "
            "such events, with the reasons LUC can see. Reported events that no catalog "
            "version prices are counted apart (`unpriced_reported_events`)."
        ),
    )
    async def reconcile(
        self,
        luc: NamedDependency[Resources],
        group_by: GroupBy = None,
        start: From = None,
        end: To = None,
    ) -> ReconciliationOut:
        keys = group_keys(group_by)
        lower, upper = parse_range(start, end)
        tolerance = luc.settings.reconciliation.tolerance

        async def work(conn: Connection) -> list[ReconciliationRow]:
            catalog = await luc.catalog_cache.get(conn)
            return await reconcile(
                conn, keys=keys, start=lower, end=upper, tolerance=tolerance, catalog=catalog
            )

        rows = await on_connection(luc.pool, work)
        return reconciliation_out(keys, lower, upper, tolerance, DRIFT_MIN_EVENTS, rows)

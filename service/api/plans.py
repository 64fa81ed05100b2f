"""Rate plans: create one with its first version, add versions, read them."""

from __future__ import annotations

from litestar import get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from service.api.deps import LucController, Resources
from service.api.request import LucRequest, unless_client_leaves
from service.api.schemas.common import body_instant
from service.api.schemas.plans import (
    PlanIn,
    PlanList,
    PlanOut,
    PlanVersionIn,
    PlanVersionOut,
    RepriceIn,
    RepriceOut,
    plan_out,
    plan_version_out,
    reprice_out,
)
from service.auth.guard import ADMIN, READ
from service.customers.plans import add_plan_version, create_plan, get_plan, load_plans
from service.db import Connection, on_connection
from service.errors import InvalidRequestError
from service.pricing.plans import PlanVersion, RatePlan
from service.recording.repricing import RepriceSummary, reprice_plan
from service.wire import storable_instant_problem


class PlansController(LucController):
    path = "/v1/plans"
    tags = ["plans"]
    opt = READ

    @post(
        "/",
        operation_id="createPlan",
        summary="Create a rate plan with its first version",
        description=(
            "An event is priced by the version in force at its time (latest effective_from "
            "not after it): its model's own price in `models` when the version has one, "
            "else the basis cost (`catalog`: cost_usd, `actual`: actual_cost_usd) × "
            "(1 + markup) + per_request_usd. 409 when the id is taken."
        ),
        status_code=201,
        opt=ADMIN,
    )
    async def create(self, luc: NamedDependency[Resources], data: JSONBody[PlanIn]) -> PlanOut:
        first = data.new_version()

        async def create(conn: Connection) -> RatePlan:
            catalog = await luc.catalog_cache.get(conn)
            return await create_plan(conn, data.id, data.name, first, catalog)

        return plan_out(await on_connection(luc.pool, create))

    @post(
        "/{plan_id:str}/versions",
        operation_id="createPlanVersion",
        summary="Add a version to a rate plan (versions never change: a correction is one)",
        status_code=201,
        opt=ADMIN,
    )
    async def add_version(
        self, luc: NamedDependency[Resources], plan_id: FromPath[str], data: JSONBody[PlanVersionIn]
    ) -> PlanVersionOut:
        version = data.new_version()

        async def add(conn: Connection) -> PlanVersion:
            catalog = await luc.catalog_cache.get(conn)
            return await add_plan_version(conn, plan_id, version, catalog)

        return plan_version_out(await on_connection(luc.pool, add))

    @get("/", operation_id="listPlans", summary="Every rate plan with its versions")
    async def list(self, luc: NamedDependency[Resources]) -> PlanList:
        plans = await on_connection(luc.pool, load_plans)
        return PlanList(items=[plan_out(p) for _, p in sorted(plans.items())])

    @get("/{plan_id:str}", operation_id="getPlan", summary="One rate plan with every version")
    async def detail(self, luc: NamedDependency[Resources], plan_id: FromPath[str]) -> PlanOut:
        return plan_out(await on_connection(luc.pool, lambda conn: get_plan(conn, plan_id)))

    @post(
        "/{plan_id:str}/reprice",
        operation_id="repricePlan",
        summary="Re-price past events of a plan's customers (after a past-effective version "
        "or a customer's change of plan)",
        description=(
            "Every event since `since` of the jobs whose customer's plan is this one (of jobs "
            "without a customer or plan too, when it is LUC_DEFAULT_PLAN), and every event "
            "this plan priced before, is brought to the price its job's customer's plan "
            "gives it now, by adjustment entries: the change of price alone for the same "
            "customer; a reversal and a new booking when the event moves to another "
            "customer. The cost never moves. `dry_run: true` reports the change per customer "
            "and job without writing. A second run appends nothing. Issued invoices never "
            "change."
        ),
        status_code=200,
        opt=ADMIN,
    )
    async def reprice(
        self,
        request: LucRequest,
        luc: NamedDependency[Resources],
        plan_id: FromPath[str],
        data: JSONBody[RepriceIn],
    ) -> RepriceOut:
        since = body_instant("since", data.since)
        if problem := storable_instant_problem(since):
            raise InvalidRequestError(f"since: {problem}")

        async def run(conn: Connection) -> RepriceSummary:
            await get_plan(conn, plan_id)  # 404 before any work
            return await reprice_plan(
                conn,
                plan_id,
                since,
                default_plan=luc.settings.billing.default_plan,
                dry_run=data.dry_run,
            )

        work = on_connection(luc.pool, run)
        # An applied run finishes whoever waits: what it appends is the correction asked for.
        return reprice_out(await (unless_client_leaves(request, work) if data.dry_run else work))

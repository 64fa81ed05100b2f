"""``create_app()``: the one place where LUC's parts are wired together.

In the lifespan: the pool (migrated, catalog seeded), the webhook dispatcher, the write
path (``recording.Recorder``, its group writer), and the gateway behind
``/v1/chat/completions`` with its in-process ports: the usage sink
(``recording.sink.RecordingSink`` over a local spool) and the budget gate and price
lookup (``recording.adapters``). Controllers receive them through ``api.deps.Resources``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import structlog
from litestar import Litestar, Request, Response
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, SwaggerRenderPlugin
from uvicorn.config import STARTUP_FAILURE

from service.api.agents import AgentsController
from service.api.budgets import AlertsController, BudgetsController
from service.api.catalog import CatalogController
from service.api.credits import CreditsController
from service.api.customers import CustomersController
from service.api.deps import Resources
from service.api.encoded_ids import DecodePathParams, route_encoded_ids
from service.api.errors import http_error_handler, luc_error_handler, unexpected_error_handler
from service.api.events import EventsController
from service.api.exports import ExportsController
from service.api.head_requests import answer_head_as_get
from service.api.health import healthz, readyz
from service.api.invoices import (
    CustomerInvoicesController,
    InvoicesController,
    JobInvoicesController,
)
from service.api.jobs import JobsController
from service.api.keys import KeysController
from service.api.metrics import metrics as metrics_endpoint
from service.api.observe import InFlight, observe_requests, observe_unrouted
from service.api.openai_models import ModelsController
from service.api.openapi import document_errors
from service.api.options_requests import ALLOW, allow_by_route, options_answer
from service.api.params import BlankQueryValues, plain_path_numbers, single_query_values
from service.api.parked import ParkedUsageController
from service.api.plans import PlansController
from service.api.proxy import ChatCompletionsController
from service.api.rate_limit import RateLimitMiddleware
from service.api.reconciliation import ReconciliationController
from service.api.reference import ReferencePage, schema_by_accept
from service.api.request import LucRequest, strict_body
from service.api.usage import UsageController
from service.auth.guard import require_key
from service.auth.keys import count_admin_keys
from service.auth.rate_limit import RateLimiter
from service.budgets import reservations
from service.budgets.delivery import Dispatcher, make_webhook_client
from service.catalog.service import CatalogCache, seed_catalog
from service.client.spool import Spool
from service.customers.plans import PlanCache, check_default_plan, record_default_plan
from service.db import create_pool, is_unavailable, on_connection, wait_for_database
from service.db.embedded import resolve_database_url
from service.db.embedded_watch import EmbeddedWatch
from service.db.migrations import check_schema_revision, migrate, schema_revision
from service.db.privileges import check_privileges
from service.errors import DatabaseSetupError, DatabaseUnavailableError, LucError
from service.gateway.chain import build_chain, upstream_client
from service.gateway.metering import Gateway
from service.ledger.service import ensure_months_ahead
from service.metrics.instruments import Metrics
from service.recording.adapters import DatabaseBudgets, DatabaseLookup, database_catalog
from service.recording.catalog_upgrade import upgrade_aims_catalog
from service.recording.group_commit import WRITERS, GroupWriter
from service.recording.one_trip import OneTrip
from service.recording.recorder import Recorder
from service.recording.sink import RecordingSink
from service.settings import Settings, get_settings

log = structlog.get_logger("luc")

IN_FLIGHT = "luc_requests_in_flight"
"""Where ``app.state`` holds the ``InFlight`` count of ``observe_requests``."""


async def start_when_reachable(
    app: Litestar,
    settings: Settings,
    metrics: Metrics,
    stack: contextlib.AsyncExitStack,
    prepared: bool,
) -> None:
    """``start`` once PostgreSQL answers; give up, ending the process, after
    ``LUC_DB_STARTUP_TIMEOUT_SECONDS``."""
    assert settings.database.url is not None
    try:
        await wait_for_database(
            settings.database.url, within=settings.database.startup_timeout_seconds
        )
        await start(app, settings, metrics, stack, prepared)
    except Exception as exc:
        # Anything, not only LucError (a refused password once PostgreSQL answers): a
        # failure left in this task would keep the process answering 503 for ever.
        _log_startup_failure(exc)
        # Raised from a task, SystemExit leaves the event loop and the server: the process
        # ends with uvicorn's start-up failure status, so a supervisor sees a failed start.
        raise SystemExit(STARTUP_FAILURE) from exc


class _SaidAlready(logging.Filter):
    """Drops uvicorn's copy of a start-up failure that ``startup_failed`` has said in one
    line: Litestar hands uvicorn the whole traceback (an exception group) as the failure's
    message, where the setting to fix was buried."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            isinstance(record.msg, str) and "Traceback (most recent call last)" in record.msg
        )


def _log_startup_failure(exc: Exception) -> None:
    """One ``startup_failed`` line, as the other ways of starting end (``start_when_reachable``,
    the parent of ``luc serve --workers N``)."""
    detail = exc.message if isinstance(exc, LucError) else str(exc)
    log.error("startup_failed", error=type(exc).__name__, detail=detail)
    logging.getLogger("uvicorn.error").addFilter(_SaidAlready())


async def start(
    app: Litestar,
    settings: Settings,
    metrics: Metrics,
    stack: contextlib.AsyncExitStack,
    prepared: bool = False,
) -> None:
    """Connect, migrate, check and start LUC's parts; their stops go on ``stack`` (undone
    in reverse when the app stops). ``app.state.luc`` is set last: until then the routes
    answer 503 (``service.api.deps``)."""
    # What this attempt started is stopped again if it fails half-way.
    async with contextlib.AsyncExitStack() as attempt:
        await _start(app, settings, metrics, attempt, prepared)
        stack.push_async_callback(attempt.pop_all().aclose)


async def prepare_database(url: str, settings: Settings, pool: asyncpg.Pool) -> None:
    """What the database needs once before LUC serves, whatever the number of processes:
    the schema migrated (or, behind a transaction pooler, checked), the runtime role's
    grants checked, the AIMS catalog loaded into an empty ledger. ``luc serve --workers N``
    runs it once in the parent process; a lone process runs it as it starts."""
    if settings.database.pooler != "transaction":
        try:
            before = await on_connection(pool, schema_revision)
            await migrate(url)
            after = await on_connection(pool, schema_revision)
        except Exception as exc:
            if is_unavailable(exc):
                raise DatabaseUnavailableError(f"cannot migrate: {exc}") from exc
            raise
        if after != before:  # a deploy's migration is said, not done in silence
            log.info("schema_migrated", from_revision=before, to_revision=after)
    else:
        # Migrations hold a session lock that a transaction pooler cannot keep: they run
        # apart, on a direct connection (`luc migrate`); here the schema is only checked.
        await on_connection(pool, check_schema_revision)
    async with pool.acquire() as conn:
        for grant in await check_privileges(conn):
            log.warning(
                "database_privilege_missing",
                grant=grant,
                detail="batches above 32 events are staged as JSON instead (slower)",
            )
        if await seed_catalog(conn):
            log.info("catalog_seeded", label="aims-v1")
        # Before anything is priced with it (the catalog's upgrade below re-rates).
        await check_default_plan(conn, settings.billing.default_plan)
        # A ledger seeded with the AIMS catalog before its cache and long-context prices
        # gets the completed one, once (recording.catalog_upgrade).
        if upgrade := await upgrade_aims_catalog(conn, default_plan=settings.billing.default_plan):
            log.warning(
                "catalog_completed",
                version=upgrade.version_id,
                replaces=upgrade.replaced_version_id,
                events_rerated=upgrade.summary.events_changed,
                delta_usd=str(upgrade.summary.delta_usd),
            )
        # For the commands that price beside the server (customers.plans.servers_default_plan).
        await record_default_plan(conn, settings.billing.default_plan)
        if settings.auth.enabled and not await count_admin_keys(conn):
            log.warning(
                "no_admin_key",
                detail="every route but the probes (/healthz, /readyz) and the API's "
                "description needs an API key; create the first one with: "
                "luc keys create --scope admin --name <you>",
            )


async def _start(
    app: Litestar,
    settings: Settings,
    metrics: Metrics,
    stack: contextlib.AsyncExitStack,
    prepared: bool,
) -> None:
    url = await resolve_database_url(settings.database)
    if settings.database.url is None:
        # The embedded server is this process's own: started again should it die.
        watch = EmbeddedWatch(settings.database.data_dir / "pgdata")
        watch.start()
        stack.callback(watch.stop)
    pool = await create_pool(url, settings.database)
    stack.push_async_callback(pool.close)
    if not prepared:
        await prepare_database(url, settings, pool)
    # The ledger's coming months, now and every LUC_PARTITION_CHECK_SECONDS.
    upkeep = asyncio.create_task(
        keep_months_ahead(pool, settings.database.partition_check_seconds),
        name="luc-ledger-months",
    )
    stack.push_async_callback(_cancelled, upkeep)
    # Reservations that stopped holding long ago, at the same pace.
    pruning = asyncio.create_task(
        prune_reservations(
            pool,
            settings.budgets.reservation_retention_seconds,
            settings.database.partition_check_seconds,
        ),
        name="luc-reservation-pruning",
    )
    stack.push_async_callback(_cancelled, pruning)
    # One long-lived client for webhook targets (no redirects, no kept connections).
    webhook_client = make_webhook_client(settings.budgets)
    stack.push_async_callback(webhook_client.aclose)
    dispatcher = Dispatcher(pool, settings.budgets, webhook_client)
    dispatch_task = asyncio.create_task(dispatcher.run(), name="luc-webhook-dispatcher")

    async def stop_dispatcher() -> None:
        dispatcher.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(dispatch_task, timeout=settings.budgets.timeout_seconds + 5)

    stack.push_async_callback(stop_dispatcher)
    catalog_cache = CatalogCache()
    plan_cache = PlanCache(settings.billing.default_plan)
    # Behind a transaction pooler a connection's own function (one trip's opening) may not
    # be on the server session of the next transaction: every group takes the long way.
    one_trip = OneTrip(enabled=settings.database.pooler != "transaction")
    recorder = Recorder(
        pool, catalog_cache, plan_cache, settings.ingest, metrics, dispatcher, one_trip
    )
    resources = Resources(settings, pool, catalog_cache, recorder, metrics, dispatcher)
    if settings.auth.rate_limit_per_second:
        resources.rate_limiter = RateLimiter(pool, settings.auth.rate_limit_per_second)
        stack.push_async_callback(resources.rate_limiter.aclose)
    # The gateway behind /v1/chat/completions: one long-lived client per upstream
    # (timeouts and limits in upstream_client).
    openrouter_http = upstream_client(settings.gateway.timeout_seconds)
    stack.push_async_callback(openrouter_http.aclose)
    vertex_http = upstream_client(settings.gateway.timeout_seconds)
    stack.push_async_callback(vertex_http.aclose)
    # Every proxied call's usage is made durable here before its answer ends, then recorded
    # in batches off the answer's path; what the ledger refuses is parked here. One file per
    # database, so two ledgers on one machine never replay into each other, shared by the
    # processes of one ``luc serve --workers N`` (one of them at a time replays it).
    spool = Spool(
        settings.database.data_dir
        / "spool"
        / f"gateway-{hashlib.sha256(url.encode()).hexdigest()[:16]}.sqlite"
    )
    stack.push_async_callback(spool.close)
    # A second group in flight only while groups take the long way (group_commit).
    resources.group_writer = GroupWriter(
        recorder.record_events,
        writers=WRITERS if settings.ingest.writers is None else settings.ingest.writers,
        overlap=lambda: one_trip.long_way,
    )
    resources.group_writer.start()
    stack.push_async_callback(resources.group_writer.stop)
    sink = RecordingSink(
        pool,
        resources.catalog_cache,
        settings.ingest,
        record=recorder.record_events,
        plan_cache=plan_cache,
        spool=spool,
        metrics=metrics,
        record_timeout_seconds=settings.gateway.record_timeout_seconds,
    )
    resources.recording = sink
    replay_task = asyncio.create_task(sink.run_replay(), name="luc-gateway-spool-replay")
    stack.push_async_callback(_cancelled, replay_task)
    # Usage on its way to the ledger gets there before the pool closes (stops run in
    # reverse); what does not stays spooled.
    stack.push_async_callback(
        lambda: sink.aclose(grace_seconds=settings.gateway.record_timeout_seconds)
    )
    chain = build_chain(settings, openrouter_http=openrouter_http, vertex_http=vertex_http)
    metrics.gateway_stub_mode.set(1 if chain.heuristic else 0)
    resources.gateway = Gateway(
        chain,
        sink,
        database_catalog(pool, resources.catalog_cache),
        budgets=DatabaseBudgets(
            pool, settings.gateway_reservation_seconds, plan_cache, settled=sink.settled
        ),
        default_model=settings.gateway.default_model,
        default_max_tokens=settings.gateway.default_max_tokens,
        lookup=DatabaseLookup(pool, resources.catalog_cache),
        stream_deadline_seconds=settings.gateway.stream_deadline_seconds,
    )
    # Set before anything awaits, so the replay's first round has it too.
    sink.held_usage = resources.gateway.held_usage
    in_flight = app.state.get(IN_FLIGHT)
    if sink.journal is not None and isinstance(in_flight, InFlight):
        # With one request in flight (the call itself), its usage is written without the
        # hop to the journal's thread: nothing else waits on the event loop meanwhile.
        sink.journal.may_block = lambda: in_flight.count <= 1
    # Calls still running are metered before the sink closes (stops run in reverse): those
    # past the grace period are cancelled and meter what they know, so their usage is
    # journaled and recorded by the sink's close, or by the next process's replay.
    gateway = resources.gateway
    stack.push_async_callback(
        lambda: gateway.aclose(grace_seconds=settings.gateway.timeout_seconds)
    )
    app.state.luc = resources
    if not settings.auth.enabled:
        log.warning("auth_disabled", detail="LUC_AUTH=off: every route is open to anyone")
    if settings.issuer.name is None:
        # Said once here, not on each invoice: issuing still works (a preview, a test
        # ledger), and each invoice issued so says it has no issuer.
        log.info(
            "issuer_not_configured",
            detail="set LUC_ISSUER_NAME (and LUC_ISSUER_*) "
            "before issuing invoices a customer is to pay",
        )
    log.info("started", embedded=settings.database.url is None)


async def keep_months_ahead(pool: asyncpg.Pool, every_seconds: float) -> None:
    """Make the ledger's coming month partitions now, then every ``every_seconds``: a
    process that runs for months never writes the present into the default partition
    (from where rows cannot move to a month of their own). A failed round is logged and
    tried again at the next one."""
    while True:
        try:
            created = await on_connection(pool, ensure_months_ahead)
        except Exception as exc:  # an outage, a lock not granted in time: next round
            log.warning("ledger_months_failed", error=f"{type(exc).__name__}: {exc}")
        else:
            if created:
                log.info("ledger_months_created", partitions=created)
        await asyncio.sleep(every_seconds)  # the period of the upkeep, not a wait for state


async def prune_reservations(
    pool: asyncpg.Pool, retention_seconds: int, every_seconds: float
) -> None:
    """Delete the budget reservations that stopped holding more than ``retention_seconds``
    ago, now and every ``every_seconds`` (``budgets.reservations.prune``): settled, expired
    and released ones would otherwise pile up for ever. A failed round is logged and tried
    again at the next one."""
    while True:
        try:
            pruned = await on_connection(
                pool, lambda conn: reservations.prune(conn, retention_seconds)
            )
        except Exception as exc:  # an outage, a statement timeout: next round
            log.warning("reservation_pruning_failed", error=f"{type(exc).__name__}: {exc}")
        else:
            if pruned:
                log.info("reservations_pruned", rows=pruned)
        await asyncio.sleep(every_seconds)  # the period of the upkeep, not a wait for state


async def _cancelled(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _before_request(request: Request[Any, Any, Any]) -> Response[None] | None:
    """Every route's: the key first (``auth.guard``), then its query's single values. The
    key is checked here rather than in a Litestar guard: Litestar hands every guard a copy
    of the route handler, made anew at each request, and that copy was a twentieth of a
    single event's CPU (py-spy, 8 clients). This runs at the same point, before the
    request's body and parameters are read. OPTIONS is answered here, with every method of
    its route (``api.options_requests``); any other request's JSON body is checked strictly
    (``strict_body``) before Litestar's lenient conversion takes it."""
    await require_key(request, request.route_handler)
    await single_query_values(request)
    await plain_path_numbers(request)
    if request.method == "OPTIONS":
        return options_answer(request)
    await strict_body(request)
    return None


def create_app(settings: Settings | None = None, *, prepared: bool = False) -> Litestar:
    """The app; ``prepared``: the database was migrated and seeded already (by the parent
    of ``luc serve --workers N``), so this process connects and serves."""
    settings = settings or get_settings()
    metrics = Metrics()
    in_flight = InFlight()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            starting: asyncio.Task[None] | None = None
            url = settings.database.url
            try:
                if url is not None:  # the embedded server is LUC's own: started, not waited for
                    await wait_for_database(url, within=0)  # one attempt
            # A URL no wait makes right; or PostgreSQL refused LUC itself (a wrong password,
            # an unknown role or database): one line, as with several workers, not the
            # lifespan's traceback.
            except (DatabaseSetupError, asyncpg.PostgresError) as exc:
                _log_startup_failure(exc)
                raise
            except DatabaseUnavailableError as exc:
                # Serve meanwhile: /healthz says the process is up, /readyz and every
                # other route answer 503 with Retry-After until PostgreSQL is there.
                log.warning(
                    "database_unreachable_at_start",
                    error=str(exc),
                    detail="answering 503 while waiting for it "
                    f"(LUC_DB_STARTUP_TIMEOUT_SECONDS={settings.database.startup_timeout_seconds:g})",
                )
                starting = asyncio.create_task(
                    start_when_reachable(app, settings, metrics, stack, prepared),
                    name="luc-start",
                )
            else:
                try:
                    await start(app, settings, metrics, stack, prepared)
                except Exception as exc:
                    _log_startup_failure(exc)
                    raise
            try:
                yield
            finally:
                if starting is not None:
                    await _cancelled(starting)

    app = Litestar(
        request_class=LucRequest,
        route_handlers=[
            EventsController,
            JobsController,
            JobInvoicesController,
            CustomerInvoicesController,
            InvoicesController,
            AgentsController,
            BudgetsController,
            AlertsController,
            CatalogController,
            CustomersController,
            CreditsController,
            PlansController,
            UsageController,
            ReconciliationController,
            ExportsController,
            healthz,
            readyz,
            metrics_endpoint,
            KeysController,
            ChatCompletionsController,
            ModelsController,
            ParkedUsageController,
        ],
        lifespan=[lifespan],
        # The rate limit counts in PostgreSQL (per key, across processes): a process without
        # a limit set does not even look.
        middleware=[
            DecodePathParams,
            BlankQueryValues,
            observe_requests(metrics, in_flight),
            *([RateLimitMiddleware] if settings.auth.rate_limit_per_second else []),
        ],
        before_request=_before_request,
        exception_handlers={
            LucError: luc_error_handler,
            HTTPException: http_error_handler,
            Exception: unexpected_error_handler,
        },
        request_max_body_size=settings.ingest.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="LUC",
            version="0.1.0",
            description=(
                "LLM usage cost ledger: ingest usage events, price them against a versioned "
                "catalog, and read exact totals per job, agent, model and day. Money is always "
                "a decimal string in USD. An id in a path is percent-encoded, a `/` in it as "
                "`%2F` (`/v1/jobs/team%2Fa` is the job `team/a`)."
            ),
            path="/schema",
            # /schema itself works offline (the other UIs load their scripts from a CDN).
            render_plugins=[
                ReferencePage(),
                JsonRenderPlugin(),
                SwaggerRenderPlugin(path="/swagger"),
            ],
        ),
        logging_config=None,
    )
    app.state[IN_FLIGHT] = in_flight
    app.state[ALLOW] = allow_by_route(app)
    # Before routing: an id's encoded "/" stays inside its path segment (api.encoded_ids);
    # GET /schema is the document unless HTML is asked for (api.reference); HEAD is
    # answered as GET without the body (api.head_requests).
    # Outermost, requests no route takes are observed (api.observe).
    app.asgi_handler = observe_unrouted(
        route_encoded_ids(schema_by_accept(answer_head_as_get(app.asgi_handler))), metrics
    )
    document_errors(app)  # security and error answers in the OpenAPI document
    return app

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
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from litestar import Litestar
from litestar.exceptions import HTTPException
from litestar.middleware import DefineMiddleware
from litestar.middleware.rate_limit import RateLimitConfig
from litestar.openapi import OpenAPIConfig

from service.api.agents import AgentsController
from service.api.budgets import AlertsController, BudgetsController
from service.api.catalog import CatalogController
from service.api.deps import Resources
from service.api.errors import http_error_handler, luc_error_handler, unexpected_error_handler
from service.api.events import EventsController
from service.api.health import healthz, readyz
from service.api.invoices import InvoicesController, JobInvoicesController
from service.api.jobs import JobsController
from service.api.keys import KeysController
from service.api.metrics import metrics as metrics_endpoint
from service.api.observe import observe_requests
from service.api.openapi import document_errors
from service.api.parked import ParkedUsageController
from service.api.proxy import ChatCompletionsController
from service.api.usage import UsageController
from service.auth.guard import rate_limit_identity, require_key
from service.auth.keys import count_admin_keys
from service.budgets.delivery import Dispatcher, make_webhook_client
from service.catalog.service import CatalogCache, seed_catalog
from service.client.spool import Spool
from service.db import create_pool, migrate, resolve_database_url
from service.errors import LucError
from service.gateway.chain import build_chain, upstream_client
from service.gateway.metering import Gateway
from service.ledger.service import ensure_months_ahead
from service.metrics.instruments import Metrics
from service.recording.adapters import DatabaseBudgets, database_catalog
from service.recording.group_commit import GroupWriter
from service.recording.recorder import Recorder
from service.recording.sink import RecordingSink
from service.settings import Settings, get_settings

log = structlog.get_logger("luc")


def rate_limit(settings: Settings) -> list[DefineMiddleware]:
    """Per key (or per address without one) request rate, in this process."""
    if not settings.auth.rate_limit_per_second:
        return []
    config = RateLimitConfig(
        rate_limit=("second", settings.auth.rate_limit_per_second),
        exclude=["/healthz", "/readyz"],
        identifier_for_request=rate_limit_identity,
    )
    return [config.middleware]


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or get_settings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        url = await resolve_database_url(settings.database)
        await migrate(url)
        pool = await create_pool(url, settings.database)
        async with pool.acquire() as conn:
            if await seed_catalog(conn):
                log.info("catalog_seeded", label="aims-v1")
            if created := await ensure_months_ahead(conn):
                log.info("ledger_months_created", partitions=created)
            if settings.auth.enabled and not await count_admin_keys(conn):
                log.warning(
                    "no_admin_key",
                    detail="every route but /healthz needs an API key; create the first one "
                    "with: luc keys create --scope admin --name <you>",
                )
        # One long-lived client for webhook targets (no redirects, no kept connections).
        webhook_client = make_webhook_client(settings.budgets)
        dispatcher = Dispatcher(pool, settings.budgets, webhook_client)
        dispatch_task = asyncio.create_task(dispatcher.run(), name="luc-webhook-dispatcher")
        catalog_cache = CatalogCache()
        recorder = Recorder(pool, catalog_cache, settings.ingest, metrics, dispatcher)
        resources = Resources(settings, pool, catalog_cache, recorder, metrics, dispatcher)
        # The gateway behind /v1/chat/completions: one long-lived client per upstream
        # (timeouts and limits in upstream_client); usage goes straight to the ledger.
        openrouter_http = upstream_client(settings.gateway.timeout_seconds)
        vertex_http = upstream_client(settings.gateway.timeout_seconds)
        # Usage of proxied calls waits here while it cannot be recorded, and what the ledger
        # refuses is parked here; one file per database, so two ledgers on one machine never
        # replay into each other.
        spool = Spool(
            settings.database.data_dir
            / "spool"
            / f"gateway-{hashlib.sha256(url.encode()).hexdigest()[:16]}.sqlite"
        )
        sink = RecordingSink(
            pool,
            resources.catalog_cache,
            settings.ingest,
            record=recorder.record_events,
            spool=spool,
            metrics=metrics,
            record_timeout_seconds=settings.gateway.record_timeout_seconds,
        )
        resources.recording = sink
        replay_task = asyncio.create_task(sink.run_replay(), name="luc-gateway-spool-replay")
        resources.gateway = Gateway(
            build_chain(settings, openrouter_http=openrouter_http, vertex_http=vertex_http),
            sink,
            database_catalog(pool, resources.catalog_cache),
            budgets=DatabaseBudgets(pool, settings.budgets.reservation_seconds),
            default_model=settings.gateway.default_model,
        )
        resources.group_writer = GroupWriter(
            recorder.record_events, writers=settings.ingest.writers
        )
        resources.group_writer.start()
        app.state.luc = resources
        if not settings.auth.enabled:
            log.warning("auth_disabled", detail="LUC_AUTH=off: every route is open to anyone")
        log.info("started", embedded=settings.database.url is None)
        try:
            yield
        finally:
            # Streams still being read are metered before the pool closes.
            await resources.gateway.aclose(grace_seconds=settings.gateway.timeout_seconds)
            await resources.group_writer.stop()
            replay_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await replay_task
            await spool.close()
            await openrouter_http.aclose()
            await vertex_http.aclose()
            dispatcher.stop()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(dispatch_task, timeout=settings.budgets.timeout_seconds + 5)
            await webhook_client.aclose()
            await pool.close()

    app = Litestar(
        route_handlers=[
            EventsController,
            JobsController,
            JobInvoicesController,
            InvoicesController,
            AgentsController,
            BudgetsController,
            AlertsController,
            CatalogController,
            UsageController,
            healthz,
            readyz,
            metrics_endpoint,
            KeysController,
            ChatCompletionsController,
            ParkedUsageController,
        ],
        lifespan=[lifespan],
        middleware=[observe_requests(metrics), *rate_limit(settings)],
        guards=[require_key],
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
                "a decimal string in USD."
            ),
            path="/schema",
        ),
        logging_config=None,
    )
    document_errors(app)  # security and error answers in the OpenAPI document
    return app

"""What controllers receive: the process's resources, built once in ``app.create_app``."""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg
from litestar import Controller
from litestar.datastructures import State
from litestar.di import Provide

from service.auth.guard import KeyCache
from service.budgets.delivery import Dispatcher
from service.catalog.service import CatalogCache
from service.customers.plans import PlanCache
from service.db import STARTING
from service.errors import DatabaseUnavailableError
from service.gateway.metering import Gateway
from service.metrics.instruments import Metrics
from service.recording.group_commit import GroupWriter
from service.recording.recorder import Recorder
from service.recording.sink import RecordingSink
from service.settings import Settings


@dataclass
class Resources:
    settings: Settings
    pool: asyncpg.Pool
    catalog_cache: CatalogCache
    recorder: Recorder
    """The write path: ``POST /v1/events*`` and the gateway's sink record through it."""
    metrics: Metrics = field(default_factory=Metrics)
    dispatcher: Dispatcher | None = None
    key_cache: KeyCache = field(default_factory=KeyCache)
    group_writer: GroupWriter | None = None
    gateway: Gateway | None = None
    """Behind ``POST /v1/chat/completions``; built in the lifespan."""
    recording: RecordingSink | None = None
    """The gateway's usage sink: its spool and parked usage (``/v1/usage/parked``)."""

    @property
    def plan_cache(self) -> PlanCache:
        """The rate plans and LUC_DEFAULT_PLAN, as the write path prices with them."""
        return self.recorder.plan_cache


def started(state: State) -> Resources | None:
    """The process's resources, or None while start-up waits for PostgreSQL."""
    resources: Resources | None = state.get("luc")
    return resources


async def provide_resources(state: State) -> Resources:
    resources = started(state)
    if resources is None:
        raise DatabaseUnavailableError(STARTING)
    return resources


class LucController(Controller):
    """A controller whose handlers take the process's resources as ``luc``."""

    dependencies = {"luc": Provide(provide_resources)}

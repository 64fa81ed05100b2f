"""Agents: totals per agent, and one agent's UTC-day series."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, QueryParameter

from service.api.deps import Resources, provide_resources
from service.api.params import parse_range
from service.api.schemas import AgentDetailOut, AgentList, AgentOut, DayOut, totals_fields
from service.auth.guard import READ
from service.db import on_connection
from service.errors import NotFoundError
from service.rollups.service import agent_detail, list_agents
from service.wire import day_text


class AgentsController(Controller):
    path = "/v1/agents"
    tags = ["agents"]
    opt = READ
    dependencies = {"luc": Provide(provide_resources)}

    @get("/", operation_id="listAgents", summary="Every agent with its lifetime totals")
    async def list(self, luc: NamedDependency[Resources]) -> AgentList:
        agents = await on_connection(luc.pool, list_agents)
        return AgentList(items=[AgentOut(agent=a.agent, **totals_fields(a.totals)) for a in agents])

    @get(
        "/{agent:str}",
        operation_id="getAgent",
        summary="One agent: totals and a series per UTC day over [from, to)",
    )
    async def detail(
        self,
        luc: NamedDependency[Resources],
        agent: FromPath[str],
        start: Annotated[
            str | None, QueryParameter(name="from", description="RFC 3339, inclusive")
        ] = None,
        end: Annotated[
            str | None, QueryParameter(name="to", description="RFC 3339, exclusive")
        ] = None,
    ) -> AgentDetailOut:
        lower, upper = parse_range(start, end)
        found = await on_connection(luc.pool, lambda conn: agent_detail(conn, agent, lower, upper))
        if found is None:
            raise NotFoundError(f"agent {agent!r} has no recorded usage")
        return AgentDetailOut(
            agent=found.agent,
            days=[DayOut(day=day_text(d.day), **totals_fields(d.totals)) for d in found.days],
            **totals_fields(found.totals),
        )

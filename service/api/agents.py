"""Agents: totals per agent, and one agent's UTC-day series."""

from __future__ import annotations

from litestar import get
from litestar.di import NamedDependency
from litestar.params import FromPath

from service.api.deps import LucController, Resources
from service.api.params import From, To, parse_range
from service.api.schemas.agents import AgentDetailOut, AgentList, agent_detail_out, agent_list
from service.auth.guard import READ
from service.db import on_connection
from service.errors import NotFoundError
from service.rollups.service import agent_detail, list_agents


class AgentsController(LucController):
    path = "/v1/agents"
    tags = ["agents"]
    opt = READ

    @get("/", operation_id="listAgents", summary="Every agent with its lifetime totals")
    async def list(self, luc: NamedDependency[Resources]) -> AgentList:
        return agent_list(await on_connection(luc.pool, list_agents))

    @get(
        "/{agent:str}",
        operation_id="getAgent",
        summary="One agent: totals and a series per UTC day over [from, to)",
    )
    async def detail(
        self,
        luc: NamedDependency[Resources],
        agent: FromPath[str],
        start: From = None,
        end: To = None,
    ) -> AgentDetailOut:
        lower, upper = parse_range(start, end)
        found = await on_connection(luc.pool, lambda conn: agent_detail(conn, agent, lower, upper))
        if found is None:
            raise NotFoundError(f"agent {agent!r} has no recorded usage")
        return agent_detail_out(found)

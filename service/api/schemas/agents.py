"""Agents: totals per agent and one agent's UTC-day series."""

from __future__ import annotations

from typing import cast

import msgspec

from service.api.schemas.common import TotalsOut, totals_fields
from service.rollups.models import AgentDetail, AgentSummary


class AgentOut(TotalsOut, kw_only=True):
    agent: str


class AgentList(msgspec.Struct):
    items: list[AgentOut]


class DayOut(TotalsOut, kw_only=True):
    day: str


class AgentDetailOut(AgentOut, kw_only=True):
    days: list[DayOut]


def agent_list(agents: list[AgentSummary]) -> AgentList:
    return AgentList(items=[AgentOut(agent=a.agent, **totals_fields(a.totals)) for a in agents])


def agent_detail_out(found: AgentDetail) -> AgentDetailOut:
    """The agent as ``rollups.service.agent_detail`` read it, in wire form already."""
    # Each day is a struct of DayOut's fields already (rollups.service.wire_rows), sent as
    # it is: made again as a DayOut, field by field, it would only be encoded the same.
    days = cast("list[DayOut]", found.days)
    return AgentDetailOut(agent=found.agent, days=days, **msgspec.structs.asdict(found.totals))

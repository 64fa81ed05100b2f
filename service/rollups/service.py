"""Keeping rollups in step with the ledger, and answering questions from them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from functools import lru_cache
from operator import itemgetter
from typing import Any

import msgspec

from service.db import Connection
from service.errors import InvalidRequestError
from service.pricing.models import PRICE_CLASSES
from service.rollups import queries
from service.rollups.models import (
    AgentDetail,
    AgentSummary,
    CustomerMonth,
    JobDetail,
    JobSummary,
    Totals,
    WireRow,
)
from service.wire import day_text_sql

_COUNTS = frozenset(queries.COUNT_NAMES)


@lru_cache(maxsize=256)  # bounded: a usage query's columns follow its group_by
def _row_shape(names: tuple[str, ...], skip: frozenset[str]) -> tuple[Any, Any, Any]:
    """For rows of these columns: a struct whose one field, ``rows``, is msgspec's type of
    them (each count an int, the rest as it comes), what picks the answered ones out of a
    row, and the struct that holds those."""
    columns = tuple(int if name in _COUNTS else Any for name in names)
    kept = [i for i, name in enumerate(names) if name not in skip]
    assert len(kept) > 1, "a row answers its totals"
    pick = None if len(kept) == len(names) else itemgetter(*kept)
    row = msgspec.defstruct("WireRow", [(names[i], Any) for i in kept])
    # msgspec analyses a type such as list[tuple[...]] anew at every convert (30 µs for a
    # job's columns); a struct's field types are analysed once and kept on the class.
    rows = msgspec.defstruct("WireRows", [("rows", list[tuple[columns]])], array_like=True)  # type: ignore[valid-type]  # built from the columns
    return rows, pick, row


def wire_rows(records: Sequence[Any], skip: tuple[str, ...] = ()) -> list[WireRow]:
    """Rows whose measures PostgreSQL wrote in wire form (``queries.wire_totals``) as the
    API answers them; ``skip`` names columns that are not answered. The counts come as text
    (a token sum can pass 64 bits): msgspec's lax mode reads each as the int it is, in C.
    Each row is a struct of its answered columns, made from the row's values in one call:
    a usage answer of 124 rows cost 250 µs as dicts (made and encoded), 110 as structs."""
    if not records:
        return []
    rows, pick, row = _row_shape(tuple(records[0].keys()), frozenset(skip))
    values = msgspec.convert(([tuple(r) for r in records],), rows, strict=False).rows
    if pick is None:
        return [row(*v) for v in values]
    return [row(*pick(v)) for v in values]


_LINE_KEYS = ("agent", "model", "provider", "catalog_version", "long_context_from", "tier")


async def job_detail(conn: Connection, job_id: str) -> JobDetail | None:
    """A job's totals, customer and lines in wire form, or None when it has no usage."""
    rows = await conn.fetch(queries.SELECT_JOB_DETAIL, job_id)
    if not rows or rows[0]["part"] != 0:
        return None
    job, *lines = rows
    return JobDetail(
        job_id=job_id,
        customer_id=job["customer_id"],
        totals=wire_rows([job], skip=("part", *_LINE_KEYS, *PRICE_CLASSES, "customer_id"))[0],
        lines=[
            {
                **msgspec.structs.asdict(line),
                "unit_prices": None
                if r["catalog_version"] is None
                else {k: r[k] for k in PRICE_CLASSES},
            }
            for r, line in zip(
                lines, wire_rows(lines, skip=("part", *PRICE_CLASSES, "customer_id")), strict=True
            )
        ],
    )


async def list_jobs(
    conn: Connection,
    *,
    after_job_id: str,
    agent: str | None,
    start: datetime | None,
    end: datetime | None,
    limit: int,
) -> list[JobSummary]:
    rows = await conn.fetch(queries.SELECT_JOBS, after_job_id, start, end, agent, limit)
    return [JobSummary(job_id=r["job_id"], totals=Totals.from_row(r)) for r in rows]


def month_of(when: datetime) -> date:
    """The first day of the UTC month of ``when``: the key of the customer × month rollup."""
    return when.astimezone(UTC).date().replace(day=1)


async def customer_months(
    conn: Connection, customer_ids: Sequence[str], month: date
) -> dict[str, CustomerMonth]:
    """The totals of each of ``customer_ids`` in ``month`` (its first day) that has usage
    in it; a customer without any is absent."""
    rows = await conn.fetch(queries.SELECT_CUSTOMER_MONTHS, list(customer_ids), month)
    return {
        r["customer_id"]: CustomerMonth(r["customer_id"], r["month"], Totals.from_row(r))
        for r in rows
    }


async def month_to_date(
    conn: Connection, customer_ids: Sequence[str], now: datetime | None = None
) -> tuple[date, dict[str, Totals]]:
    """The current UTC month (its first day) and each customer's totals in it (absent: no
    usage yet): what a customer's answer shows month to date."""
    month = month_of(now or datetime.now(UTC))
    found = await customer_months(conn, customer_ids, month)
    return month, {customer_id: m.totals for customer_id, m in found.items()}


async def list_agents(conn: Connection) -> list[AgentSummary]:
    rows = await conn.fetch(queries.SELECT_AGENTS)
    return [AgentSummary(agent=r["agent"], totals=Totals.from_row(r)) for r in rows]


def _midnight(value: datetime | None) -> date | None:
    """The UTC date of ``value`` if it is exactly a UTC midnight, else raises ValueError."""
    if value is None:
        return None
    utc = value.astimezone(UTC)
    if utc.time() != time(0):
        raise ValueError("not a midnight")
    return utc.date()


async def agent_detail(
    conn: Connection, agent: str, start: datetime | None, end: datetime | None
) -> AgentDetail | None:
    """An agent's totals and UTC-day series over [start, end), in wire form; None when the
    agent has no usage at all.

    Ranges on UTC midnights come from the agent×day rollup; any other range is summed
    from the ledger, so a partial day is never counted whole. Days without events are left
    out, of the series and of the totals.
    """
    try:
        params = (_midnight(start), _midnight(end))
        sql = queries.SELECT_AGENT_DETAIL
    except ValueError:
        params, sql = (start, end), queries.SELECT_AGENT_DETAIL_FROM_LEDGER
    totals, *days = await conn.fetch(sql, agent, *params)
    if not totals["known"]:
        return None
    return AgentDetail(
        agent=agent,
        totals=wire_rows([totals], skip=("known", "sort_day", "day"))[0],
        days=wire_rows(days, skip=("known", "sort_day")),
    )


# The usage query groups ledger entries; keys map to SQL expressions from this fixed set.
USAGE_GROUPS = {
    "agent": "agent",
    "model": "model",
    "provider": "provider",
    "tier": "tier",
    "day": "billing_day",
    "job_id": "job_id",
    "catalog_version": "catalog_version",
    "customer": "customer_id",
}


@dataclass(frozen=True, slots=True)
class _UsageRollup:
    """A rollup that answers a usage query exactly when the query asks only for its keys,
    filters only on them, and bounds time on the boundaries of its periods (UTC midnights
    for a per-day rollup, the first of a month for a per-month one)."""

    table: str
    keys: dict[str, str]
    """usage key → the rollup's column"""
    period: str | None
    """The column of its time period (``day``, ``month``), or None: it holds no time."""


# Tried in order; a query none of them can answer exactly is summed from the ledger.
_USAGE_ROLLUPS = (
    _UsageRollup("rollup_agent_days", {"agent": "agent", "day": "day"}, period="day"),
    _UsageRollup("rollup_model_days", {"model": "model", "day": "day"}, period="day"),
    _UsageRollup(
        "rollup_usage",
        {"agent": "agent", "model": "model", "provider": "provider", "tier": "tier"},
        period=None,
    ),
    # ``customer`` is the key a query groups by, ``customer_id`` the one it filters on.
    _UsageRollup(
        "rollup_customer_months",
        {"customer": "customer_id", "customer_id": "customer_id"},
        period="month",
    ),
)


def _bound(rollup: _UsageRollup, value: datetime | None) -> date | None:
    """``value`` as the rollup's period column holds it, or ValueError when it falls
    inside a period (a UTC midnight for days; the first of a month for months)."""
    day = _midnight(value)
    if day is not None and rollup.period == "month" and day.day != 1:
        raise ValueError("not the first of a month")
    return day


def usage_rollup_plan(
    keys: Sequence[str],
    start: datetime | None,
    end: datetime | None,
    filters: dict[str, str | None],
) -> tuple[str, str, list[object]] | None:
    """(table, WHERE clause, parameters) of the first rollup that answers exactly, or None.

    A per-day rollup is exact on [start, end) when both bounds are UTC midnights (or open),
    since an entry's billing_day is the UTC date of its occurred_at; a per-month one when
    both are the first of a UTC month; ``rollup_usage`` holds no time, so it answers only
    unbounded queries.
    """
    wanted = {k for k, v in filters.items() if v is not None} | set(keys)
    for rollup in _USAGE_ROLLUPS:
        if not wanted <= rollup.keys.keys():
            continue
        conditions: list[str] = []
        params: list[object] = []
        if rollup.period is not None:
            try:
                first_day, end_day = _bound(rollup, start), _bound(rollup, end)
            except ValueError:
                continue
            for op, day in ((">=", first_day), ("<", end_day)):
                if day is not None:
                    params.append(day)
                    conditions.append(f"{rollup.period} {op} ${len(params)}")
        elif start is not None or end is not None:
            continue
        for key, value in filters.items():
            if value is not None:
                params.append(value)
                conditions.append(f"{rollup.keys[key]} = ${len(params)}::text")
        return rollup.table, " AND ".join(conditions) or "true", params
    return None


async def usage(
    conn: Connection,
    *,
    group_by: Sequence[str],
    start: datetime | None,
    end: datetime | None,
    agent: str | None,
    model: str | None,
    job_id: str | None,
    provider: str | None,
    customer_id: str | None = None,
    use_rollups: bool = True,
) -> list[WireRow]:
    """Totals over the ledger, grouped by any of ``USAGE_GROUPS``, within [start, end), in
    wire form: each row its keys (a day as ``YYYY-MM-DD``), then its totals.

    Served from a rollup when one answers exactly (``usage_rollup_plan``), so the common
    queries never scan the ledger; otherwise summed from the ledger. Both give the same
    rows, to the last digit; ``use_rollups=False`` forces the ledger (tests compare them).
    """
    unknown = [g for g in group_by if g not in USAGE_GROUPS]
    if unknown:
        # 400, as every other bad query parameter (and reconciliation's group_by) is.
        raise InvalidRequestError(
            f"group_by: unknown key {unknown[0]!r}; choose from {', '.join(USAGE_GROUPS)}",
            status_code=400,
        )
    keys = list(dict.fromkeys(group_by))
    filters = {
        "agent": agent,
        "model": model,
        "job_id": job_id,
        "provider": provider,
        "customer_id": customer_id,
    }
    groups, params = usage_groups(keys, start, end, filters, use_rollups=use_rollups)
    # A group whose entries cancel out entirely (fully re-rated away) is no row; nor is the
    # total of no entries at all.
    keep = "NOT (g.events = 0 AND g.cost_usd = 0)" if keys else "g.first_event_at IS NOT NULL"
    key_columns = "".join(
        f"{day_text_sql('g.day') if k == 'day' else f'g.{k}'} AS {k}, " for k in keys
    )
    # g.day, qualified: the date, not the text of the same name.
    order = f"ORDER BY {', '.join(f'g.{k}' for k in keys)}" if keys else ""
    sql = f"""
        SELECT {key_columns}{queries.wire_totals("g")}
        FROM ({groups}) AS g
        WHERE {keep}
        {order}
    """
    return wire_rows(await conn.fetch(sql, *params))


def usage_groups(
    keys: Sequence[str],
    start: datetime | None,
    end: datetime | None,
    filters: dict[str, str | None],
    *,
    use_rollups: bool = True,
) -> tuple[str, list[object]]:
    """(SQL, parameters) of the usage query's groups, unordered: a column per key, named
    after it, and one per measure; from the first rollup that answers exactly, else summed
    from the ledger entries themselves (any keys, any range)."""
    plan = usage_rollup_plan(keys, start, end, filters) if use_rollups else None
    # Only whitelisted identifiers are interpolated; every value is a parameter.
    if plan is not None:
        table, where, params = plan
        columns = [next(r for r in _USAGE_ROLLUPS if r.table == table).keys[k] for k in keys]
        # Grouped by the rollup's whole key, each group is one row: read as it is.
        whole_key = frozenset(columns) == queries.rollup_key(table)
        measures = queries.measures_of_rollup_row() if whole_key else queries.measures_over_rollup()
        sql = f"""
            SELECT {"".join(f"{c} AS {k}, " for c, k in zip(columns, keys, strict=True))}
                   {measures}
            FROM {table}
            WHERE {where}
            {f"GROUP BY {', '.join(columns)}" if keys and not whole_key else ""}
        """
        return sql, params
    select_keys = "".join(f"{USAGE_GROUPS[k]} AS {k}, " for k in keys)
    group = f"GROUP BY {', '.join(USAGE_GROUPS[k] for k in keys)}" if keys else ""
    sql = f"""
        SELECT {select_keys}{queries.measures_from_ledger()}
        FROM ledger_entries
        WHERE ($1::timestamptz IS NULL OR occurred_at >= $1)
          AND ($2::timestamptz IS NULL OR occurred_at < $2)
          AND ($3::text IS NULL OR agent = $3)
          AND ($4::text IS NULL OR model = $4)
          AND ($5::text IS NULL OR job_id = $5)
          AND ($6::text IS NULL OR provider = $6)
          AND ($7::text IS NULL OR customer_id = $7)
        {group}
    """
    return sql, [
        start,
        end,
        filters["agent"],
        filters["model"],
        filters["job_id"],
        filters["provider"],
        filters["customer_id"],
    ]

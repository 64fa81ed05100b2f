"""For a gateway running outside LUC: what it plugs into the gateway's ports.

``emitter.Emitter`` (a ``UsageSink``: usage delivered to ``POST /v1/events/batch`` exactly
once, through a local spool), ``spool.Spool`` (that durable SQLite queue, which LUC's own
in-process sink uses too), ``budgets.RemoteBudgets`` (a ``BudgetGate`` over
``POST /v1/budgets/reservations``). It depends on the ingest models and the gateway's
ports only: no database code.
"""

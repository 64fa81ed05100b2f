"""Stages 1–5 in one transaction: the single write path.

Every usage event is stored here, whoever sent it, and every correction too::

    POST /v1/events/batch ──────────────────────────┐
    POST /v1/events ───── group_commit.GroupWriter ──┤
    a proxied call ────── sink.RecordingSink ────────┴─▶ recorder.Recorder.record_events
        ─▶ service.record_apart (an event PostgreSQL refuses is rejected alone)
        ─▶ service.record_batch, one transaction: the re-pricing lock, shared
           (service.locks) → the catalog and plans in force (catalog, customers) → the
           jobs' rows held with their customers (jobs) → each event's cost and its
           customer's price (pricing) → the new ids stored (ingest), their charges
           appended (ledger) and rolled up (rollups) in one statement (queries) → a job
           given its first customer re-priced (repricing) → budget spend, alerts and
           outbox (budgets)

    a new catalog version, ``rerate_since`` ─▶ rerating (the re-pricing lock, exclusive)
        ─▶ bookings.plan_rerating (reversal + new booking) ─▶ rerating.record_adjustments
    start-up on a ledger seeded before the completed AIMS catalog ─▶ catalog_upgrade
        (the same lock, plan and append, once)

    PATCH /v1/jobs/{id} customer_id ─▶ repricing.change_job_customer (the lock, shared;
        the job's row) ─▶ repricing.plan_repricing (the job's events moved to the customer)
    POST /v1/plans/{id}/reprice, ``luc plans reprice`` ─▶ repricing.reprice_plan (the lock,
        exclusive) ─▶ repricing.plan_repricing (a change of price, or reversal + new booking)
        ─▶ rerating.record_adjustments

``models`` holds the outcomes (accepted, duplicate, conflict, rejected); ``adapters`` the
gateway's other in-process ports (budget gate, price lookup). Only ``app.py`` builds these
objects; controllers and the command line call them; nothing here imports ``api``.
"""

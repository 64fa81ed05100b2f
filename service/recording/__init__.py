"""Stages 1–5 in one transaction: the single write path.

Every usage event is stored here, whoever sent it, and every correction too::

    POST /v1/events/batch ──────────────────────────┐
    POST /v1/events ───── group_commit.GroupWriter ──┤
    a proxied call ────── sink.RecordingSink ────────┴─▶ recorder.Recorder.record_events
        ─▶ service.record_apart (an event PostgreSQL refuses is rejected alone)
        ─▶ service.record_batch, one transaction: the re-pricing lock, shared
           (service.locks) → the catalog in force (catalog) → each event priced (pricing)
           → the new ids stored (ingest), their charges appended (ledger) and rolled up
           (rollups) in one statement (queries) → budget spend, alerts and outbox (budgets)

    a new catalog version, ``rerate_since`` ─▶ rerating (the re-pricing lock, exclusive)
        ─▶ bookings.plan_rerating (reversal + new booking) ─▶ rerating.record_adjustments
    start-up on a ledger seeded before the completed AIMS catalog ─▶ catalog_upgrade
        (the same lock, plan and append, once)

``models`` holds the outcomes (accepted, duplicate, conflict, rejected); ``adapters`` the
gateway's other in-process ports (budget gate, price lookup). Only ``app.py`` builds these
objects; controllers and the command line call them; nothing here imports ``api``.
"""

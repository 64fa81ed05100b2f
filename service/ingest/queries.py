"""SQL owned by ingest: table ``event_keys`` (the idempotency key), and how an event is kept
on its charge.

An event is stored as its key row and its charge, the ledger entry that first books it
(migration 0028). The charge holds every content field of the event: those it shares with
any entry (instant, job, agent, provider, token counts, reported cost) and the event's own
(``CHARGE_EVENT_COLUMNS``), each NULL when it would say nothing the charge does not. Both
rows are written by the ledger's ``append_staged_charges`` (with ``charge_event_values``);
``event_fields`` reads the event back.
"""

from service.tokens import TOKEN_FIELDS

CHARGE_EVENT_COLUMNS = ("sent_model", "status", "attributes", "reservation_id", "event_customer_id")
"""The ledger columns that hold an event's own fields on its charge (NULL on adjustments)."""


def charge_event_values(staged: str) -> str:
    """``CHARGE_EVENT_COLUMNS``' values from a staged row ``staged`` (its event's fields,
    ``sent_model`` the model as sent, ``model`` the one priced): the model as sent only
    when it differs from the one the charge names (an alias), the status only when not
    ``ok``; attributes exactly as sent (an absent object is NULL, an empty one ``{}``: a
    replay is compared with them)."""
    s = staged
    return (
        f"NULLIF({s}.sent_model, {s}.model), NULLIF({s}.status, 'ok'), {s}.attributes::jsonb, "
        f"{s}.reservation_id, {s}.customer_id"
    )


def event_fields(charge: str) -> str:
    """The columns of a stored event (``UsageEvent``'s fields, its id as ``event_id``) read
    off its charge, the ledger entry aliased ``charge``."""
    c = charge
    tokens = ", ".join(f"{c}.{name}" for name in TOKEN_FIELDS)
    return (
        f"{c}.event_id, {c}.occurred_at, {c}.job_id, {c}.agent, {c}.provider, "
        f"COALESCE({c}.sent_model, {c}.model) AS model, {tokens}, {c}.provider_cost_usd, "
        f"COALESCE({c}.status, 'ok') AS status, {c}.attributes, {c}.reservation_id, "
        f"{c}.event_customer_id AS customer_id"
    )


# The key's instant is the charge's: the join probes one month partition of the ledger.
SELECT_EVENTS_BY_ID = f"""
SELECT {event_fields("c")}
FROM event_keys AS k
JOIN ledger_entries AS c
  ON c.event_id = k.event_id AND c.occurred_at = k.occurred_at AND c.kind = 'charge'
WHERE k.event_id = ANY($1::text[])
"""

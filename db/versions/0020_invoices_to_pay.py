"""Invoices a customer can pay: credit notes with their own numbers, who issued and who is
billed, the due date, each line's catalog cost apart from its amount, the issuer's logo.

Revision ID: 0020_invoices_to_pay
Revises: 0015_price_on_ledger
Create Date: 2026-12-01

A follow-up whose total is negative is a credit note, numbered ``LUC-CN-YYYY-NNNNNN`` from
its own gap-free sequence: the yearly counters gain a series. The issuer, the customer
billed and the due date live in the issued document (the digest covers them); ``kind``,
``corrects``, ``customer_id`` and ``due_date`` are copies beside it for querying, as the
other columns are. Invoices issued before keep NULL in the new columns but ``kind``
(they were all invoices, a negative follow-up too: their numbers say so), and their lines
keep a NULL ``cost_usd``: they billed the catalog cost, so their amount is their cost.
"""

from __future__ import annotations

from service.db.migrations import run_sql

revision = "0020_invoices_to_pay"
down_revision = "0015_price_on_ledger"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql(
        """
-- One gap-free counter per series and year. The row lock of the upsert still queues the
-- issues of one series; invoices and credit notes do not wait for each other.
ALTER TABLE invoice_counters
    ADD COLUMN series text NOT NULL DEFAULT 'invoice'
        CHECK (series IN ('invoice', 'credit_note'));
ALTER TABLE invoice_counters DROP CONSTRAINT invoice_counters_pkey;
ALTER TABLE invoice_counters ADD PRIMARY KEY (series, year);

ALTER TABLE invoices
    ADD COLUMN kind text NOT NULL DEFAULT 'invoice' CHECK (kind IN ('invoice', 'credit_note')),
    -- The invoice a credit note corrects: the latest one that billed what it credits.
    ADD COLUMN corrects text REFERENCES invoices (number),
    -- The customer billed, as the job named it at issue (the document holds the snapshot).
    ADD COLUMN customer_id text,
    ADD COLUMN due_date date;
ALTER TABLE invoices DROP CONSTRAINT invoices_year_seq_key;
ALTER TABLE invoices ADD CONSTRAINT invoices_kind_year_seq_key UNIQUE (kind, year, seq);
-- From now on a negative total is a credit note and a credit note is negative. NOT VALID:
-- negative follow-ups issued as invoices before credit notes existed stay what they are.
ALTER TABLE invoices ADD CONSTRAINT invoices_credit_note_is_negative
    CHECK ((kind = 'credit_note') = (total_usd < 0)) NOT VALID;
ALTER TABLE invoices ADD CONSTRAINT invoices_corrects_only_credit_notes
    CHECK (corrects IS NULL OR kind = 'credit_note');
CREATE INDEX invoices_in_issue_order ON invoices (issued_at, number);
CREATE INDEX invoices_by_customer ON invoices (customer_id) WHERE customer_id IS NOT NULL;

-- The catalog cost of a line, for the internal view: its amount is what the customer is
-- billed, which need not be the cost.
ALTER TABLE invoice_lines ADD COLUMN cost_usd numeric;

-- The issuer's logo as issued: an invoice names it by SHA-256 in its document, so its page
-- shows the image it was issued with, whatever file LUC_ISSUER_LOGO names later. One row
-- per distinct image, never changed.
CREATE TABLE invoice_logos (
    sha256      text PRIMARY KEY CHECK (sha256 = encode(sha256(data), 'hex')),
    media_type  text NOT NULL,
    data        bytea NOT NULL
);
CREATE TRIGGER invoice_logos_append_only BEFORE UPDATE OR DELETE ON invoice_logos
    FOR EACH ROW EXECUTE FUNCTION luc_refuse_change();
CREATE TRIGGER invoice_logos_no_truncate BEFORE TRUNCATE ON invoice_logos
    FOR EACH STATEMENT EXECUTE FUNCTION luc_refuse_change();
"""
    )


def downgrade() -> None:
    # Credit notes cannot be kept by the older schema (their numbers would collide with
    # invoices') nor removed (issued documents are append-only): refuse while there are any.
    run_sql(
        """
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM invoices WHERE kind = 'credit_note') THEN
        RAISE EXCEPTION 'credit notes have been issued: this schema cannot be downgraded';
    END IF;
END $$;
DROP TABLE invoice_logos;
ALTER TABLE invoice_lines DROP COLUMN cost_usd;
DROP INDEX invoices_by_customer;
DROP INDEX invoices_in_issue_order;
ALTER TABLE invoices DROP CONSTRAINT invoices_corrects_only_credit_notes;
ALTER TABLE invoices DROP CONSTRAINT invoices_credit_note_is_negative;
ALTER TABLE invoices DROP CONSTRAINT invoices_kind_year_seq_key;
ALTER TABLE invoices ADD CONSTRAINT invoices_year_seq_key UNIQUE (year, seq);
ALTER TABLE invoices DROP COLUMN due_date, DROP COLUMN customer_id, DROP COLUMN corrects,
    DROP COLUMN kind;
ALTER TABLE invoice_counters DROP CONSTRAINT invoice_counters_pkey;
ALTER TABLE invoice_counters ADD PRIMARY KEY (year);
ALTER TABLE invoice_counters DROP COLUMN series;
"""
    )

"""Token sums as NUMERIC: no sequence of valid events can overflow a rollup or an invoice line.

Revision ID: 0007_exact_sums
Revises: 0006_partition_ledger_by_month
Create Date: 2026-11-29

An event carries at most 10^12 tokens per class (SPEC §2), and ledger entries keep their
own counts in bigint, which one entry can never overflow. Sums of them could: 9,224 events
at the old per-event cap filled rollup_model_days.input_tokens up to bigint's maximum, and
every later event of that model and day failed. NUMERIC holds any sum exactly; the read
side still answers integers. The conversion rewrites the rollup and invoice line tables
under an exclusive lock (quick: rollups are small beside the ledger).
"""

from __future__ import annotations

from service.db.migrations import run_sql

revision = "0007_exact_sums"
down_revision = "0006_partition_ledger_by_month"
branch_labels = None
depends_on = None

_SUMMED = (
    "rollup_jobs",
    "rollup_job_lines",
    "rollup_usage",
    "rollup_agent_days",
    "rollup_model_days",
    "invoice_lines",
)
_TOKENS = (
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
)


def _alter(kind: str) -> str:
    return "".join(
        f"ALTER TABLE {table} "
        + ", ".join(f"ALTER COLUMN {column} TYPE {kind}" for column in _TOKENS)
        + ";\n"
        for table in _SUMMED
    )


def upgrade() -> None:
    run_sql(_alter("numeric"))


def downgrade() -> None:
    # Fails ("bigint out of range") while any sum exceeds bigint: such a sum cannot go back.
    run_sql(_alter("bigint"))

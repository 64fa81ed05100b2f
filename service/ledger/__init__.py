"""Stage 3: the append-only ledger: one charge per event, adjustments for re-rating."""

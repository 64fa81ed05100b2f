"""Stage 4: projections of the ledger per job, job line, agent×day and model×day."""

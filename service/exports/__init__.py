"""6. Exports: the ledger in formats other tools read (FOCUS, the FinOps cost and usage
format), streamed from PostgreSQL so a year of data never sits in memory."""

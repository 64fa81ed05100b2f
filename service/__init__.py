"""LUC: the LLM usage cost ledger."""

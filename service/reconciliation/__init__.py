"""Reconciliation: catalog-priced against provider-reported cost (SPEC §5)."""

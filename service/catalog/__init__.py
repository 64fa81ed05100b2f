"""Catalog storage: versions and their prices in PostgreSQL (pricing itself does no I/O)."""

"""Thin HTTP controllers and wire schemas; no SQL here."""

"""Where things are in the checkout, for tests and bench/ alike."""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
AIMS_CATALOG_FILE = PROJECT_ROOT / "service" / "pricing" / "aims-v1.json"
"""The bundled AIMS catalog: the prices every test database is seeded with."""

"""A catalog of made-up models for stories that must not depend on the AIMS prices
(``test_three_costs``, ``test_focus_export``): effective 2026-06-01, USD per 1M tokens,
vendor/alpha (standard) 2 in / 10 out and vendor/beta (fast) 0.50 / 1.50; vendor/gamma is
unknown to it.

``CORRECTION``, created later with the same ``effective_from`` (so it wins the tie),
raises alpha's input to 3 and adds gamma (economy) at 1 / 2: creating it prices the gamma
events, and re-rating since ``EFFECTIVE`` moves the alpha ones.
"""

from __future__ import annotations

from typing import Any

ALPHA, BETA, GAMMA = "vendor/alpha", "vendor/beta", "vendor/gamma"
EFFECTIVE = "2026-06-01T00:00:00Z"
CATALOG: dict[str, Any] = {
    "effective_from": EFFECTIVE,
    "label": "alpha and beta",
    "models": [
        {"id": ALPHA, "name": "Alpha", "tier": "standard", "input": "2", "output": "10"},
        {"id": BETA, "name": "Beta", "tier": "fast", "input": "0.50", "output": "1.50"},
    ],
}
CORRECTION: dict[str, Any] = {
    "effective_from": EFFECTIVE,
    "label": "alpha corrected, gamma added",
    "models": [
        {"id": ALPHA, "name": "Alpha", "tier": "standard", "input": "3", "output": "10"},
        {"id": BETA, "name": "Beta", "tier": "fast", "input": "0.50", "output": "1.50"},
        {"id": GAMMA, "name": "Gamma", "tier": "economy", "input": "1", "output": "2"},
    ],
}

"""Catalog versions the stories create.

A catalog of made-up models for stories that must not depend on the AIMS prices
(``test_three_costs``, ``test_focus_export``): effective 2026-06-01, USD per 1M tokens,
vendor/alpha (standard) 2 in / 10 out and vendor/beta (fast) 0.50 / 1.50; vendor/gamma is
unknown to it. ``CORRECTION``, created later with the same ``effective_from`` (so it wins
the tie), raises alpha's input to 3 and adds gamma (economy) at 1 / 2: creating it prices
the gamma events, and re-rating since ``EFFECTIVE`` moves the alpha ones.

Mistral Large 3, which the AIMS catalog (version 1) lacks: events sent for it, or for the
alias ``mistral-large``, stay unpriced until ``mistral_arrives`` brings it, 0.50 in / 1.50
out per 1M (re-rating stories, and those that need adjustments on the ledger).
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

MISTRAL: dict[str, Any] = {
    "id": "mistralai/mistral-large-2512",
    "name": "Mistral Large 3",
    "tier": "standard",
    "input": "0.50",
    "output": "1.50",
}


async def mistral_arrives(
    client: Any,
    *,
    effective_from: str = "2026-09-01T00:00:00Z",
    model: dict[str, Any] = MISTRAL,
) -> dict[str, Any]:
    """A version on top of version 1 that brings ``model`` (``MISTRAL``) and the alias
    ``mistral-large`` from ``effective_from``, created through the API; its answer, which
    says how many unpriced events it priced (``repriced_events``)."""
    response = await client.post(
        "/v1/catalog/versions",
        json={
            "effective_from": effective_from,
            "label": "mistral arrives",
            "parent": 1,
            "models": [model],
            "aliases": {"mistral-large": model["id"]},
        },
    )
    assert response.status_code == 201, response.text
    return dict(response.json())

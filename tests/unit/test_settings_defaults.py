"""Each setting's default is declared once, on its dataclass field, and is what LUC runs with
when the environment leaves the variable unset."""

from __future__ import annotations

from service.settings import (
    AuthSettings,
    BillingSettings,
    BudgetSettings,
    DatabaseSettings,
    GatewaySettings,
    IngestSettings,
    IssuerSettings,
    OpenRouterSettings,
    ReconciliationSettings,
    ServerSettings,
    load_settings,
)


def test_an_empty_environment_gives_each_setting_its_declared_default() -> None:
    # Each default is declared once, on its dataclass field; the environment reader takes it
    # from there. An empty environment must therefore give exactly the dataclasses' defaults
    # (the data folder aside: it is the user's, computed per machine, and equal here too).
    settings = load_settings({})
    assert settings.database == DatabaseSettings()
    assert settings.server == ServerSettings()
    assert settings.ingest == IngestSettings()
    assert settings.openrouter == OpenRouterSettings()
    assert settings.gateway == GatewaySettings()
    assert settings.budgets == BudgetSettings()
    assert settings.auth == AuthSettings()
    assert settings.reconciliation == ReconciliationSettings()
    assert settings.issuer == IssuerSettings()
    assert settings.billing == BillingSettings()

"""The service's settings as a test's in-process app runs with them."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from dataclasses import replace
from functools import cache

from service.settings import Settings, load_settings
from tests.support.fake_openrouter import FakeOpenRouter


@cache
def _data_dir() -> str:
    """One throw-away ``LUC_DATA_DIR`` for the test process: every proxied call's usage
    passes through the gateway's spool, which lives there (a file per database)."""
    folder = tempfile.mkdtemp(prefix="luc-test-data-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def settings_for(database_url: str, **env: str) -> Settings:
    """Settings as the service would read them, pointed at ``database_url``.

    Authentication is off unless a test passes ``LUC_AUTH="on"``: tests of other features
    call routes without keys; tests/integration/test_auth.py covers every route with keys.
    """
    base = load_settings(
        {"LUC_DATABASE_URL": database_url, "LUC_AUTH": "off", "LUC_DATA_DIR": _data_dir(), **env}
    )
    return replace(base, database=replace(base.database, pool_min_size=1, pool_max_size=5))


def proxy_settings(database_url: str, fake_openrouter: FakeOpenRouter) -> Settings:
    """A LUC whose proxy calls the fake OpenRouter alone, keys on."""
    return settings_for(
        database_url,
        LUC_AUTH="on",
        OPENROUTER_API_KEY=fake_openrouter.api_key,
        LUC_OPENROUTER_BASE_URL=fake_openrouter.base_url,
        LUC_GATEWAY_CHAIN="openrouter",
    )

"""An option value the command cannot take is a usage mistake: click's "Invalid value for
…" and exit status 2, before any database is reached (README: "2 for a usage mistake").
Each of these was a traceback or a failure of the work (exit 1)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from service.cli import main
from service.settings import get_settings

# Nothing listens there: a command that got as far as connecting would fail otherwise.
NOWHERE = {"LUC_DATABASE_URL": "postgresql://luc@127.0.0.1:9/luc"}


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (
            ["keys", "revoke", "9223372036854775808"],
            "Invalid value for 'KEY_ID': '9223372036854775808' is no key id: give the number "
            "`luc keys list` shows first on the key's line (not its name or its prefix)",
        ),
        (
            ["demo", "--until", "0001-01-01T00:00:00Z", "--jobs", "1"],
            "Invalid value for --until: must leave 3 days of traffic after 0001-01-01",
        ),
        (
            ["invoice", "issue", "--customer", "acme", "--month", "2026-13"],
            "Invalid value for --month: '2026-13' is out of range: its month 13 is not 01 to 12",
        ),
        (
            ["customers", "credits", "grant", "acme", "--amount-usd", "1", "--expires-at", "nope"],
            "Invalid value for --expires-at: 'nope' is not an RFC 3339 timestamp",
        ),
        (
            ["customers", "credits", "grant", "acme", "--amount-usd", "-1"],
            "Invalid value for --amount-usd: '-1' has a sign; the amount cannot be negative",
        ),
        # Refused as over REST: PostgreSQL's binary protocol reads them as infinities.
        (
            ["catalog", "rerate", "--since", "0001-01-01T00:00:00Z", "--dry-run"],
            "Invalid value for --since: 0001-01-01T00:00:00Z is the first or last instant",
        ),
        (
            ["plans", "reprice", "gold", "--since", "9999-12-31T23:59:59.999999Z"],
            "Invalid value for --since: 9999-12-31T23:59:59.999999Z is the first or last",
        ),
        (
            ["export", "focus", "--from", "2026-12-01T00:00:00Z", "--to", "2026-11-01T00:00:00Z"],
            "Invalid value for --from / --to: to (2026-11-01T00:00:00Z) must be after from "
            "(2026-12-01T00:00:00Z)",
        ),
    ],
)
def test_an_option_value_the_command_cannot_take_is_a_usage_error(
    args: list[str], said: str
) -> None:
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(main, args, env=NOWHERE)
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 2, result.output
    assert said in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("url", "said"),
    [
        (
            "postgresql://u:pw@localhost:99999/luc",
            "Error: LUC_DATABASE_URL: the port '99999' is not a TCP port (1-65535)",
        ),
        ("postgresql://x@[::1/luc", "Error: LUC_DATABASE_URL is not a URL: Invalid IPv6 URL"),
    ],
)
def test_a_database_url_no_driver_can_use_is_one_line_naming_the_variable(
    url: str, said: str
) -> None:
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(main, ["keys", "list"], env={"LUC_DATABASE_URL": url})
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1, result.output
    assert result.stderr.strip() == said

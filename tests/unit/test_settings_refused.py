"""A ``LUC_*`` value the server cannot honour stops it at start, naming the variable."""

from __future__ import annotations

import base64

import pytest

from service.errors import SettingsError
from service.settings import load_settings


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        # float() reads these: NaN passed every range check, infinity waited for ever.
        ("LUC_DB_STARTUP_TIMEOUT_SECONDS", "nan", "must be a number of seconds, got 'nan'"),
        ("LUC_GATEWAY_TIMEOUT_SECONDS", "NaN", "must be a number of seconds, got 'NaN'"),
        ("LUC_WEBHOOK_POLL_SECONDS", "inf", "must be a number of seconds, got 'inf'"),
        ("LUC_PARTITION_CHECK_SECONDS", "-inf", "must be a number of seconds, got '-inf'"),
        ("LUC_WEBHOOK_BACKOFF_BASE_SECONDS", "0", "must be positive, got '0'"),
        # Past 100 years a duration added to now leaves what Python or PostgreSQL holds:
        # every event was a 500, a reservation or a retry window "timestamp out of range".
        (
            "LUC_MAX_FUTURE_SKEW_SECONDS",
            "99999999999999999",
            "must be at most 3153600000, got 99999999999999999",
        ),
        (
            "LUC_BUDGET_RESERVATION_SECONDS",
            "3153600001",
            "must be at most 3153600000, got 3153600001",
        ),
        ("LUC_BUDGET_RESERVATION_RETENTION_SECONDS", "-1", "must be at least 0, got -1"),
        (
            "LUC_WEBHOOK_RETRY_WINDOW_SECONDS",
            "1" + "0" * 17,
            "must be at most 3153600000, got 100000000000000000",
        ),
        (
            "LUC_WEBHOOK_POLL_SECONDS",
            "1e300",
            "must be at most 3153600000 seconds (100 years), got '1e300'",
        ),
        # PostgreSQL refused it at connect, naming its own parameter, not LUC's variable.
        (
            "LUC_DB_STATEMENT_TIMEOUT_MS",
            "99999999999",
            "must be at most 2147483647, got 99999999999",
        ),
        # No bound: a sync waited for ever; a million retries put a reservation's expiry
        # past the year 9999 and every call under a hard budget was a 500.
        (
            "LUC_OPENROUTER_TIMEOUT_SECONDS",
            "1" + "0" * 20,
            "must be at most 3153600000, got 100000000000000000000",
        ),
        ("LUC_GATEWAY_MAX_RETRIES", "1000000", "must be at most 100, got 1000000"),
        # uvicorn bound 70000 modulo 65536 (port 4464) without a word.
        ("LUC_PORT", "70000", "must be at most 65535, got 70000"),
        ("LUC_PORT", "-1", "must be at least 0, got -1"),
    ],
)
def test_a_value_out_of_its_range_is_refused_naming_the_variable(
    name: str, value: str, message: str
) -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings({name: value})
    assert raised.value.message == f"{name} {message}"


def test_the_ports_at_either_end_of_the_range_are_taken() -> None:
    assert load_settings({"LUC_PORT": "0"}).server.port == 0  # any free port
    assert load_settings({"LUC_PORT": "65535"}).server.port == 65535
    assert load_settings({}).server.port == 8000


@pytest.mark.parametrize("secret", ["whsec_", "whsec_!!!not-base64", "whsec_abcde", "c2VjcmV0"])
def test_a_webhook_secret_that_cannot_sign_is_refused_at_start(secret: str) -> None:
    # The prefix alone was checked: signing then failed on every alert, long after the start.
    with pytest.raises(SettingsError) as raised:
        load_settings({"LUC_WEBHOOK_SECRET": secret})
    assert raised.value.message == (
        "LUC_WEBHOOK_SECRET must be a Standard Webhooks secret: whsec_<base64>"
    )


@pytest.mark.parametrize(
    ("secret", "holds"),
    [
        ("whsec_YQ==", 1),
        ("whsec_" + "eHh4" * 7 + "eHg=", 23),
        ("whsec_" + "eHh4" * 21 + "eHg=", 65),
    ],
)
def test_a_webhook_secret_shorter_or_longer_than_the_standard_allows_is_refused(
    secret: str, holds: int
) -> None:
    # Standard Webhooks: a signing secret is 24 to 64 random bytes.
    with pytest.raises(SettingsError) as raised:
        load_settings({"LUC_WEBHOOK_SECRET": secret})
    assert raised.value.message == (
        "LUC_WEBHOOK_SECRET must be a Standard Webhooks secret: whsec_<base64> of 24 to 64 "
        f"random bytes (this one holds {holds})"
    )


def test_a_webhook_secret_of_64_bytes_and_one_without_padding_are_taken() -> None:
    longest = "whsec_" + base64.b64encode(b"x" * 64).decode()
    unpadded = "whsec_" + base64.b64encode(bytes(range(32))).decode().rstrip("=")
    for secret in (longest, unpadded):
        assert load_settings({"LUC_WEBHOOK_SECRET": secret}).budgets.webhook_secret == secret


def test_a_well_formed_webhook_secret_is_taken() -> None:
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    assert load_settings({"LUC_WEBHOOK_SECRET": secret}).budgets.webhook_secret == secret


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("localhost/luc", "with its scheme"),
        ("/var/run/postgresql", "with its scheme"),
        ("mysql://luc:s3cret@db/luc", "not mysql://"),
    ],
)
def test_a_database_url_without_the_postgresql_scheme_is_refused_naming_the_variable(
    url: str, said: str
) -> None:
    # It was retried as an outage for LUC_DB_STARTUP_TIMEOUT_SECONDS, then a traceback.
    with pytest.raises(SettingsError) as raised:
        load_settings({"LUC_DATABASE_URL": url})
    assert raised.value.message == (
        "LUC_DATABASE_URL must be a PostgreSQL URL, postgresql://user:password@host:port/"
        f"database, {said}"
    )


@pytest.mark.parametrize(
    ("url", "message"),
    [
        # The driver wrapped 99999 to 34463 and connected there (another server, maybe).
        (
            "postgresql://u:pw@localhost:99999/luc",
            "LUC_DATABASE_URL: the port '99999' is not a TCP port (1-65535)",
        ),
        (
            "postgresql://u@a:5432,b:0/luc",
            "LUC_DATABASE_URL: the port '0' is not a TCP port (1-65535)",
        ),
        (
            "postgresql://u@h:54x2/luc",
            "LUC_DATABASE_URL: the port '54x2' is not a TCP port (1-65535)",
        ),
        # urlsplit's ValueError was a traceback from every command.
        ("postgresql://x@[::1/luc", "LUC_DATABASE_URL is not a URL: Invalid IPv6 URL"),
    ],
)
def test_a_database_url_with_a_port_no_socket_has_is_refused_naming_the_variable(
    url: str, message: str
) -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings({"LUC_DATABASE_URL": url})
    assert raised.value.message == message


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u@h/luc",
        "postgres://u@h/luc",
        "postgresql+asyncpg://u@h/luc",
        "postgresql://u:p@[::1]:5432/luc",
        "postgresql://u@h1:5432,h2:65535/luc",  # libpq's list of hosts, asyncpg takes it
    ],
)
def test_the_postgresql_schemes_are_taken(url: str) -> None:
    assert load_settings({"LUC_DATABASE_URL": url}).database.url == url


def test_an_allowed_hosts_list_with_no_host_allows_none() -> None:
    # README: "a list with no host, such as `,`, allows none"; it allowed every public host.
    assert load_settings({"LUC_WEBHOOK_ALLOWED_HOSTS": ","}).budgets.allowed_hosts == ()
    assert load_settings({"LUC_WEBHOOK_ALLOWED_HOSTS": " , "}).budgets.allowed_hosts == ()
    assert load_settings({"LUC_WEBHOOK_ALLOWED_HOSTS": ""}).budgets.allowed_hosts == ("*",)
    assert load_settings({}).budgets.allowed_hosts == ("*",)


@pytest.mark.parametrize("name", ["LUC_OPENROUTER_BASE_URL", "LUC_VERTEX_BASE_URL"])
@pytest.mark.parametrize("url", ["https://", "http:///api/v1", "openrouter.ai/api/v1", "https://["])
def test_a_provider_url_without_a_host_is_refused_at_start(name: str, url: str) -> None:
    # The scheme alone was checked: "https://" was taken, then every call failed.
    with pytest.raises(SettingsError) as raised:
        load_settings({name: url})
    assert raised.value.message == f"{name} must be an http(s) URL, got {url!r}"


def test_the_longest_durations_are_taken() -> None:
    settings = load_settings(
        {
            "LUC_MAX_FUTURE_SKEW_SECONDS": "3153600000",
            "LUC_WEBHOOK_POLL_SECONDS": "3153600000",
            "LUC_DB_STATEMENT_TIMEOUT_MS": "2147483647",
        }
    )
    assert settings.ingest.max_future_skew_seconds == 3_153_600_000
    assert settings.budgets.poll_seconds == 3_153_600_000.0
    assert settings.database.statement_timeout_ms == 2_147_483_647


def test_the_wait_for_postgresql_follows_the_statement_timeout_and_must_outlast_it() -> None:
    # A server that answers nothing is waited for 5 s past the statement timeout, so that a
    # slow statement is still PostgreSQL's to cancel (with its own error).
    assert load_settings({}).database.command_timeout_seconds == 35.0
    derived = load_settings({"LUC_DB_STATEMENT_TIMEOUT_MS": "60000"}).database
    assert derived.command_timeout_seconds == 65.0
    given = {"LUC_DB_STATEMENT_TIMEOUT_MS": "1000", "LUC_DB_COMMAND_TIMEOUT_SECONDS": "1.5"}
    assert load_settings(given).database.command_timeout_seconds == 1.5
    with pytest.raises(SettingsError) as raised:
        load_settings({"LUC_DB_COMMAND_TIMEOUT_SECONDS": "30"})
    assert raised.value.message == (
        "LUC_DB_COMMAND_TIMEOUT_SECONDS (30) must be longer than LUC_DB_STATEMENT_TIMEOUT_MS "
        "(30000 ms): PostgreSQL cancels a slow statement itself; LUC's own wait is for a "
        "server that answers nothing"
    )


def test_gateway_settings_that_let_a_call_run_past_100_years_are_refused_together() -> None:
    # Each within its own bound; together a reservation's hold would leave PostgreSQL's
    # instants: the default chain's two providers, each (100 + 1) × 3e9 s of timeouts and
    # 100 × 60 s of Retry-After, then one more timeout: 2 × 303,000,006,000 + 3e9 s.
    with pytest.raises(SettingsError) as raised:
        load_settings({"LUC_GATEWAY_MAX_RETRIES": "100", "LUC_GATEWAY_TIMEOUT_SECONDS": "3e9"})
    assert raised.value.message == (
        "LUC_GATEWAY_MAX_RETRIES, LUC_GATEWAY_TIMEOUT_SECONDS and "
        "LUC_GATEWAY_MAX_RETRY_AFTER_SECONDS let a call run longer than 100 years "
        "(609000012000 s): lower them"
    )


def test_a_provider_key_read_from_a_file_loses_its_newline_and_blank_is_none() -> None:
    # httpx refused "Bearer sk-…\n" as a header and quoted it in its error, which reached
    # the proxy's caller and the log: the key left the server.
    settings = load_settings(
        {"OPENROUTER_API_KEY": "sk-or-v1-abc\n", "LUC_VERTEX_ACCESS_TOKEN": " ya29.tok\r\n"}
    )
    assert settings.gateway.openrouter_api_key == "sk-or-v1-abc"
    assert settings.gateway.vertex_access_token == "ya29.tok"
    assert load_settings({"OPENROUTER_API_KEY": " \n"}).gateway.openrouter_api_key is None


@pytest.mark.parametrize("name", ["OPENROUTER_API_KEY", "LUC_VERTEX_ACCESS_TOKEN"])
def test_a_provider_key_with_whitespace_inside_is_refused_without_showing_it(name: str) -> None:
    with pytest.raises(SettingsError, match=f"^{name} holds a space") as refused:
        load_settings({name: "sk-or-v1-se cret"})
    assert "cret" not in str(refused.value)
    with pytest.raises(SettingsError, match=f"^{name} holds a space"):
        load_settings({name: "sk-or-v1-SECRETéKEY12345"})


@pytest.mark.parametrize("value", ["https://hooks.example.com", "hooks.example.com/alerts"])
def test_a_webhook_host_given_as_a_url_is_refused(value: str) -> None:
    with pytest.raises(SettingsError, match=r"^LUC_WEBHOOK_ALLOWED_HOSTS: .* is not a host name"):
        load_settings({"LUC_WEBHOOK_ALLOWED_HOSTS": f"ok.example.com, {value}"})


@pytest.mark.parametrize("proxies", ["10.0.0.1/8", "proxy.internal", "10.0.0.300", "*, 10.0.0.5"])
def test_a_forwarded_allow_ips_entry_no_peer_can_have_is_refused_naming_the_variable(
    proxies: str,
) -> None:
    # uvicorn keeps such an entry as a name no peer has: the proxy's clients would all be
    # counted as the proxy's one address, without a word.
    with pytest.raises(SettingsError) as raised:
        load_settings({"LUC_FORWARDED_ALLOW_IPS": proxies})
    assert raised.value.message.startswith("LUC_FORWARDED_ALLOW_IPS: ")
    assert "is not an address or a network" in raised.value.message


def test_forwarded_allow_ips_takes_addresses_networks_or_any_peer_alone() -> None:
    given = " 10.0.0.5, 10.1.0.0/16 ,::1,"
    read = load_settings({"LUC_FORWARDED_ALLOW_IPS": given}).server.forwarded_allow_ips
    assert read == ("10.0.0.5", "10.1.0.0/16", "::1")
    assert load_settings({"LUC_FORWARDED_ALLOW_IPS": "*"}).server.forwarded_allow_ips == ("*",)
    assert load_settings({}).server.forwarded_allow_ips == ()

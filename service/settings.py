"""Settings, read once from ``LUC_*`` environment variables and validated at start-up.

Each concern has a frozen dataclass; a bad value raises ``SettingsError`` naming the
variable, so a typo stops the service at start instead of misbehaving later.
"""

from __future__ import annotations

import base64
import ipaddress
import math
import os
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

import platformdirs

from service.errors import SettingsError
from service.wire import WireValueError, parse_money

COMMAND_TIMEOUT_GRACE_SECONDS = 5.0
"""How much longer than the statement timeout LUC waits for PostgreSQL's answer by default."""


def default_command_timeout(statement_timeout_ms: int) -> float:
    """``LUC_DB_COMMAND_TIMEOUT_SECONDS`` when unset: the grace past the statement timeout."""
    return statement_timeout_ms / 1000 + COMMAND_TIMEOUT_GRACE_SECONDS


@dataclass(frozen=True)
class DatabaseSettings:
    url: str | None = None
    """``LUC_DATABASE_URL``: PostgreSQL to use; unset means an embedded server in ``data_dir``."""
    data_dir: Path = field(default_factory=lambda: Path(platformdirs.user_data_dir("luc")))
    """``LUC_DATA_DIR``: where the embedded PostgreSQL keeps its files."""
    pool_min_size: int = 2
    """``LUC_DB_POOL_MIN``: connections kept open."""
    pool_max_size: int = 10
    """``LUC_DB_POOL_MAX``: most connections a process opens."""
    statement_timeout_ms: int = 30_000
    """``LUC_DB_STATEMENT_TIMEOUT_MS``: PostgreSQL aborts a statement that runs longer.
    Behind a transaction pooler it cannot be sent per connection: set it on the role."""
    command_timeout_seconds: float = default_command_timeout(statement_timeout_ms)
    """``LUC_DB_COMMAND_TIMEOUT_SECONDS``: the longest LUC waits for PostgreSQL's answer to
    one statement, or for a new connection, before it gives the connection up (a request
    then answers 503). It bounds the wait on a server that answers nothing at all (stopped,
    hung on its disk, across a network partition), which ``statement_timeout``, the
    server's own, cannot end. Unset: ``COMMAND_TIMEOUT_GRACE_SECONDS`` past the statement
    timeout; set, it must be longer than that, so that PostgreSQL cancels a slow statement
    first (with its own error, not a 503)."""
    pooler: str = "none"
    """``LUC_DB_POOLER``: ``none``, or ``transaction`` when ``LUC_DATABASE_URL`` points at
    PgBouncer (or another pooler) in transaction mode: no prepared-statement cache, no
    session settings, and ``luc serve`` does not migrate (migrations hold a session lock:
    run ``luc migrate`` on a direct connection)."""
    startup_timeout_seconds: float = 60.0
    """``LUC_DB_STARTUP_TIMEOUT_SECONDS``: how long ``luc serve`` waits for PostgreSQL at
    start-up (retrying with backoff, ``/readyz`` answering 503) before it exits."""
    partition_check_seconds: float = 3600.0
    """``LUC_PARTITION_CHECK_SECONDS``: how often a running ``luc serve`` makes sure the
    ledger's month partitions exist for this month and the next two."""
    embedded_port: int | None = None
    """``LUC_EMBEDDED_PG_PORT``: the embedded PostgreSQL listens on 127.0.0.1 at this port
    too (for Grafana, psql, other tools); unset, on its Unix socket only."""


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    """``LUC_HOST``: address the HTTP server binds."""
    port: int = 8000
    """``LUC_PORT``: port the HTTP server binds."""
    log_level: str = "info"
    """``LUC_LOG_LEVEL``: debug, info, warning or error."""
    log_format: str | None = None
    """``LUC_LOG_FORMAT``: ``json`` (one object per line) or ``console`` (aligned, for
    people); unset, ``console`` when stderr is a terminal and ``json`` otherwise."""
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    """``LUC_WORKERS``: processes of ``luc serve`` behind its one port, each with its own
    pool and writers (default: the number of CPUs)."""
    body_timeout_seconds: float = 120.0
    """``LUC_BODY_TIMEOUT_SECONDS``: how long a request body may take to arrive once its
    head has (the largest body, ``LUC_MAX_BODY_BYTES``, at 256 KB/s)."""
    forwarded_allow_ips: tuple[str, ...] = ()
    """``LUC_FORWARDED_ALLOW_IPS``: comma-separated addresses or networks of the reverse
    proxies whose ``X-Forwarded-For`` and ``X-Forwarded-Proto`` name the client (``*``
    alone: any peer); unset, none: a request's address is its connection's."""


@dataclass(frozen=True)
class IngestSettings:
    max_batch_events: int = 5000
    """``LUC_MAX_BATCH_EVENTS``: most events one ``POST /v1/events/batch`` may carry."""
    max_body_bytes: int = 5000 * (4096 + 4096)
    """``LUC_MAX_BODY_BYTES``: largest request body accepted; by default room for a batch
    of ``max_batch_events`` events each at every field's limit (``default_max_body_bytes``)."""
    max_future_skew_seconds: int = 300
    """``LUC_MAX_FUTURE_SKEW_SECONDS``: how far ``occurred_at`` may lie in the future."""
    max_attributes_bytes: int = 4096
    """``LUC_MAX_ATTRIBUTES_BYTES``: largest ``attributes`` object, as compact JSON."""
    writers: int | None = None
    """``LUC_INGEST_WRITERS``: group-commit writers per process for single events: while one
    group waits for its commit, the next is written on another connection, but only while
    groups take the long way (prepaid credit accounts exist); a group in one round trip
    goes alone. Unset: two in a lone process, one in each of several workers
    (``recording.group_commit``)."""
    persist: bool = True
    """``LUC_INGEST_PERSIST``: ``1`` (default) stores every event. ``0`` is a benchmarking
    switch (issue 9's B2 reference): ingest validates, prices against the catalog loaded
    once and answers, but stores nothing. Never set it in production."""


@dataclass(frozen=True)
class OpenRouterSettings:
    base_url: str = "https://openrouter.ai/api/v1"
    """``LUC_OPENROUTER_BASE_URL``: OpenRouter's API root (model list, chat completions)."""
    timeout_seconds: float = 30.0
    """``LUC_OPENROUTER_TIMEOUT_SECONDS``: timeout of one request to OpenRouter."""


GATEWAY_PROVIDERS = ("vertex", "openrouter", "stub")


@dataclass(frozen=True)
class GatewaySettings:
    openrouter_api_key: str | None = None
    """``OPENROUTER_API_KEY`` (no ``LUC_`` prefix, as OpenRouter's own tools name it);
    unset leaves OpenRouter out of the chain."""
    chain: tuple[str, ...] = GATEWAY_PROVIDERS
    """``LUC_GATEWAY_CHAIN``: providers tried in order, comma-separated (vertex, openrouter,
    stub); one without credentials is skipped, and with none left the stub answers."""
    default_model: str = "google/gemini-3.0-flash"
    """``LUC_GATEWAY_DEFAULT_MODEL``: the model of a call that names none."""
    timeout_seconds: float = 120.0
    """``LUC_GATEWAY_TIMEOUT_SECONDS``: longest wait for a provider's next bytes."""
    stream_deadline_seconds: float = 600.0
    """``LUC_GATEWAY_STREAM_DEADLINE_SECONDS``: longest an answer may take from the
    provider's first byte to its end (a stream, or the body of one that is not streamed).
    The timeout above bounds each wait only, so a stream of keep-alives (or one token a
    minute) would hold its task and its budget reservation for ever; past this it is cut,
    billed as an ``error`` with the usage known, and the client gets a 504 (an SSE error
    event coded 504 for a stream). 10 minutes: above what a real answer takes (32k output
    tokens at a slow 60 tokens/s is about 9), and short enough that a stuck stream frees
    its task and headroom within minutes rather than never."""
    max_answer_bytes: int = 64 * 1024 * 1024
    """``LUC_GATEWAY_MAX_ANSWER_BYTES``: the most a provider's answer (a body, or one event
    of a stream) may hold, decoded; past it the call is cut and answered 502 (a stream: an
    error event), and metered, since it reached the provider. 64 MiB: far above any chat
    answer, room for images inline; a provider that never ends cannot grow a worker."""
    max_retries: int = 2
    """``LUC_GATEWAY_MAX_RETRIES``: retries per provider of a 429, 5xx, timeout or
    connection error before the chain moves on."""
    backoff_base_seconds: float = 0.5
    """``LUC_GATEWAY_BACKOFF_BASE_SECONDS``: first delay without ``Retry-After``; it
    doubles per retry, with jitter."""
    max_retry_after_seconds: float = 60.0
    """``LUC_GATEWAY_MAX_RETRY_AFTER_SECONDS``: a longer ``Retry-After`` is not waited for;
    the provider counts as rate-limited and the chain moves on."""
    default_max_tokens: int = 4096
    """``LUC_GATEWAY_DEFAULT_MAX_TOKENS``: under a hard budget, the output bound of a call
    that sets no ``max_tokens``: its estimate is reserved with this many output tokens,
    and it is sent upstream as the call's ``max_tokens`` so that the estimate is a cap."""
    record_timeout_seconds: float = 5.0
    """``LUC_GATEWAY_RECORD_TIMEOUT_SECONDS``: longest one attempt to record a proxied
    call's usage may take (it is in the local spool already, off the answer's path); past
    it the usage stays spooled and is replayed, so a held lock never holds up the writer."""
    http_referer: str | None = None
    """``LUC_GATEWAY_HTTP_REFERER``: ``HTTP-Referer`` sent to OpenRouter (app attribution)."""
    app_title: str = "LUC"
    """``LUC_GATEWAY_TITLE``: ``X-Title`` sent to OpenRouter (app attribution)."""
    vertex_project: str | None = None
    """``LUC_VERTEX_PROJECT``: Google Cloud project of the Vertex AI endpoint."""
    vertex_location: str = "global"
    """``LUC_VERTEX_LOCATION``: Vertex AI region, or ``global``."""
    vertex_base_url: str | None = None
    """``LUC_VERTEX_BASE_URL``: the OpenAI-compatible root (up to ``/endpoints/openapi``);
    default derived from project and location."""
    vertex_access_token: str | None = None
    """``LUC_VERTEX_ACCESS_TOKEN``: an OAuth2 access token (they last about an hour)."""
    vertex_token_command: str | None = None
    """``LUC_VERTEX_TOKEN_COMMAND``: prints a fresh token, e.g. ``gcloud auth
    print-access-token``; run at first use and again when Vertex answers 401."""
    vertex_models: tuple[str, ...] = ("google/",)
    """``LUC_VERTEX_MODELS``: comma-separated model id prefixes Vertex serves."""

    @property
    def longest_wait_seconds(self) -> float:
        """The longest a call may go without its usage event and still be running: every
        provider of the chain tried with all its retries, each attempt waiting up to the
        timeout, each retry after the longest ``Retry-After`` taken (the stub never waits).
        Then a stream is read for at most ``stream_deadline_seconds``."""
        providers = sum(1 for name in self.chain if name != "stub")
        per_provider = (self.max_retries + 1) * self.timeout_seconds + (
            self.max_retries * self.max_retry_after_seconds
        )
        return providers * per_provider + max(self.timeout_seconds, self.stream_deadline_seconds)

    @property
    def vertex_url(self) -> str | None:
        """Vertex's OpenAI-compatible root, or ``None`` when not configured."""
        if self.vertex_base_url:
            return self.vertex_base_url.rstrip("/")
        if not self.vertex_project:
            return None
        loc = self.vertex_location
        host = (
            "aiplatform.googleapis.com" if loc == "global" else f"{loc}-aiplatform.googleapis.com"
        )
        return f"https://{host}/v1/projects/{self.vertex_project}/locations/{loc}/endpoints/openapi"

    @property
    def vertex_configured(self) -> bool:
        return self.vertex_url is not None and bool(
            self.vertex_access_token or self.vertex_token_command
        )


@dataclass(frozen=True)
class BudgetSettings:
    webhook_secret: str | None = None
    """``LUC_WEBHOOK_SECRET``: Standard Webhooks secret (``whsec_<base64>``, 24 to 64 bytes)
    signing alerts."""
    allowed_hosts: tuple[str, ...] = ("*",)
    """``LUC_WEBHOOK_ALLOWED_HOSTS``: comma-separated hosts (``*.x.com`` works); ``*`` = any
    public host. Private and loopback addresses must be listed by name or address."""
    retry_window_seconds: int = 72 * 3600
    """``LUC_WEBHOOK_RETRY_WINDOW_SECONDS``: how long a failing delivery is retried."""
    backoff_base_seconds: float = 5.0
    """``LUC_WEBHOOK_BACKOFF_BASE_SECONDS``: first retry delay; it doubles, with jitter."""
    backoff_max_seconds: float = 3600.0
    """``LUC_WEBHOOK_BACKOFF_MAX_SECONDS``: longest delay between two attempts."""
    timeout_seconds: float = 10.0
    """``LUC_WEBHOOK_TIMEOUT_SECONDS``: timeout of one delivery attempt."""
    poll_seconds: float = 1.0
    """``LUC_WEBHOOK_POLL_SECONDS``: how often the dispatcher looks for due deliveries."""
    reservation_seconds: int = 300
    """``LUC_BUDGET_RESERVATION_SECONDS``: how long a pre-call reservation holds."""
    reservation_retention_seconds: int = 86_400
    """``LUC_BUDGET_RESERVATION_RETENTION_SECONDS``: how long a reservation is kept once it
    stopped holding (settled, expired or released) before ``luc serve`` deletes it."""


@dataclass(frozen=True)
class AuthSettings:
    enabled: bool = True
    """``LUC_AUTH``: ``on`` (default) requires an API key on every route but the probes;
    ``off`` is for local experiments only and is logged loudly."""
    metrics_public: bool = False
    """``LUC_METRICS_PUBLIC``: ``1`` lets Prometheus scrape /metrics without a key."""
    rate_limit_per_second: int = 1000
    """``LUC_RATE_LIMIT_PER_SECOND``: requests per second per key (or address), counted
    across every process on the database; 0 = off."""


@dataclass(frozen=True)
class ReconciliationSettings:
    tolerance: Decimal = Decimal("0.01")
    """``LUC_RECONCILIATION_TOLERANCE``: a group drifts when provider-reported cost differs
    from the catalog's by more than this share of it (0.01 = 1 %), as a decimal string."""


@dataclass(frozen=True)
class BillingSettings:
    default_plan: str | None = None
    """``LUC_DEFAULT_PLAN``: the rate plan that prices jobs without a customer and
    customers without a plan; unset, their price is the catalog cost. Checked at start-up:
    a plan that does not exist stops the service."""


LOGO_MAX_BYTES = 512 * 1024
"""The largest logo an invoice carries: it is stored with every issued invoice that shows it."""

# An image is known by its first bytes, not by its file name: the media type an invoice page
# declares for its logo is the one its bytes have.
_IMAGE_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


@dataclass(frozen=True)
class Logo:
    """An issuer's logo as read once at start-up: what an invoice issued later snapshots."""

    path: Path
    media_type: str
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class IssuerSettings:
    """Who issues the invoices. Each issued invoice keeps a copy of these as they were when
    it was issued: changing them changes the next invoices, never an issued one."""

    name: str | None = None
    """``LUC_ISSUER_NAME``: the company that bills (unset: invoices say the issuer is not
    configured)."""
    address: str | None = None
    """``LUC_ISSUER_ADDRESS``: its postal address; a newline (or ``\\n``) starts a line."""
    tax_id: str | None = None
    """``LUC_ISSUER_TAX_ID``: its VAT or tax number."""
    payment_terms_days: int = 30
    """``LUC_ISSUER_PAYMENT_TERMS_DAYS``: an invoice is due this many days after its issue
    date (0: on receipt)."""
    logo: Logo | None = None
    """``LUC_ISSUER_LOGO``: path to a PNG, JPEG, GIF, WebP or SVG image shown on the invoice
    page; read and checked at start-up."""
    footer: str | None = None
    """``LUC_ISSUER_FOOTER``: a line at the foot of every invoice (bank details, legal
    mentions); a newline (or ``\\n``) starts a line."""


@dataclass(frozen=True)
class Settings:
    database: DatabaseSettings
    server: ServerSettings
    ingest: IngestSettings
    openrouter: OpenRouterSettings = field(default_factory=OpenRouterSettings)
    budgets: BudgetSettings = field(default_factory=BudgetSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    gateway: GatewaySettings = field(default_factory=GatewaySettings)
    reconciliation: ReconciliationSettings = field(default_factory=ReconciliationSettings)
    billing: BillingSettings = field(default_factory=BillingSettings)
    issuer: IssuerSettings = field(default_factory=IssuerSettings)

    @property
    def gateway_reservation_seconds(self) -> int:
        """How long the in-process gateway's reservations hold: at least
        ``LUC_BUDGET_RESERVATION_SECONDS``, and never less than a call may take before its
        usage arrives (``GatewaySettings.longest_wait_seconds``), so that a slow call's
        hold cannot lapse while it still runs and let other calls spend its headroom."""
        return max(self.budgets.reservation_seconds, math.ceil(self.gateway.longest_wait_seconds))


EVENT_BYTES_BESIDE_ATTRIBUTES = 4096
"""Room for an event's other fields as compact JSON: about 4,000 bytes with every string at
its longest in 4-byte UTF-8 characters (limits count characters: 128 emoji are a valid id
of 512 bytes), every count at 10^12 and a 40-digit cost. At 2,048, 5,000 valid events of
non-ASCII text were refused whole (413). Characters sent as JSON escapes (backslash u) take 6 to 12
bytes each: such batches may need a higher ``LUC_MAX_BODY_BYTES``, or fewer events."""


def default_max_body_bytes(max_batch_events: int, max_attributes_bytes: int) -> int:
    """The body limit when ``LUC_MAX_BODY_BYTES`` is unset: a batch the batch and field
    limits allow must not be refused for its size (5,000 events at every limit are 40 MB
    of compact UTF-8 JSON: the old fixed 16 MiB refused them whole), and never under
    16 MiB."""
    per_event = max_attributes_bytes + EVENT_BYTES_BESIDE_ATTRIBUTES
    return max(16 * 1024 * 1024, max_batch_events * per_event)


def _int(
    env: dict[str, str], name: str, default: int, minimum: int = 1, maximum: int | None = None
) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise SettingsError(f"{name} must be at most {maximum}, got {value}")
    return value


LONGEST_DURATION_SECONDS = 100 * 365 * 86_400
"""The longest duration a setting may give: 100 years. Past it, a duration added to now
leaves the instants Python or PostgreSQL can hold (an event's future skew made every
event a 500; a reservation or a webhook's retry window, 'timestamp out of range')."""

MAX_RETRIES = 100
"""The most retries per provider ``LUC_GATEWAY_MAX_RETRIES`` may give: a caller waits
through every one of them."""

POSTGRES_INT_MAX = 2_147_483_647
"""The largest value of PostgreSQL's integer settings, ``statement_timeout`` among them."""


def _float(env: dict[str, str], name: str, default: float) -> float:
    """A duration in seconds (not money)."""
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number of seconds, got {raw!r}") from None
    # float() reads 'nan' and 'inf' too: NaN passes every comparison (a NaN timeout crashed
    # the gateway at start, a NaN start-up wait never ended), infinity waits for ever.
    if not math.isfinite(value):
        raise SettingsError(f"{name} must be a number of seconds, got {raw!r}")
    if value <= 0:
        raise SettingsError(f"{name} must be positive, got {raw!r}")
    if value > LONGEST_DURATION_SECONDS:
        raise SettingsError(
            f"{name} must be at most {LONGEST_DURATION_SECONDS} seconds (100 years), got {raw!r}"
        )
    return value


def _database_port_problem(netloc: str) -> str | None:
    """What is wrong with the ports of a PostgreSQL URL's hosts (libpq's form may list
    several, ``h1:5432,h2:5433``), if anything: the driver wrapped 99999 to 34463 and
    connected there, or failed with a traceback."""
    for host in netloc.rpartition("@")[2].split(","):
        port = host.rpartition("]")[2] if host.startswith("[") else host
        _, colon, digits = port.rpartition(":")
        if not colon or not digits:
            continue
        if not digits.isascii() or not digits.isdigit() or not 1 <= int(digits) <= 65535:
            return f"the port {digits!r} is not a TCP port (1-65535)"
    return None


def _port(env: dict[str, str], name: str) -> int | None:
    if not env.get(name):
        return None
    port = _int(env, name, 0)
    if port > 65535:
        raise SettingsError(f"{name} must be a TCP port (1-65535), got {port}")
    return port


def _forwarded_allow_ips(env: dict[str, str]) -> tuple[str, ...]:
    """The proxies of ``LUC_FORWARDED_ALLOW_IPS``, each as uvicorn reads it: an entry that
    is no address or network (``10.0.0.1/8``, host bits set) would be kept as a name no
    peer has, and its proxy's clients all counted as the proxy's one address."""
    name = "LUC_FORWARDED_ALLOW_IPS"
    proxies = tuple(p.strip() for p in (env.get(name) or "").split(",") if p.strip())
    if proxies == ("*",):
        return proxies
    for proxy in proxies:
        try:
            ipaddress.ip_network(proxy)
        except ValueError:
            raise SettingsError(
                f"{name}: {proxy!r} is not an address or a network (10.0.0.5, 10.0.0.0/8; "
                "* alone for any peer)"
            ) from None
    return proxies


WEBHOOK_SECRET_BYTES = (24, 64)
"""Standard Webhooks: a symmetric signing secret is random, at least 24 bytes, at most 64."""


def webhook_secret_problem(secret: str) -> str | None:
    """What a Standard Webhooks secret (``whsec_`` and the base64 of the key) must be, when
    ``secret`` is not one; ``None`` when it is.

    The prefix alone let ``whsec_`` with nothing or no base64 after it through, and then
    every alert's signing failed, long after the start. The base64 is read strictly (the
    signing library skips characters outside the alphabet, so ``whsec_!!!!`` signed with an
    empty key), and the key must be as long as the standard asks: a key of a byte or two
    signs nothing anyone could not forge.
    """
    form = "whsec_<base64>"
    if not secret.startswith("whsec_"):
        return form
    encoded = secret.removeprefix("whsec_")
    try:
        # Padding may be left out, as the signing library allows.
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except ValueError:  # binascii.Error
        return form
    low, high = WEBHOOK_SECRET_BYTES
    if not key:
        return form
    if not low <= len(key) <= high:
        return f"{form} of {low} to {high} random bytes (this one holds {len(key)})"
    return None


def _is_http_url(url: str) -> bool:
    """``http(s)://`` and a host: the scheme alone (``https://``) was taken, and every call
    to the provider then failed, long after the start."""
    try:
        parts = urlsplit(url)
        return parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:  # an unclosed IPv6 bracket, a port that is not a number
        return False


def _choice(env: dict[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env.get(name) or default
    if value not in choices:
        raise SettingsError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def load_settings(env: dict[str, str] | None = None) -> Settings:
    """Build settings from ``env`` (default: the process environment), validating each."""
    env = dict(os.environ if env is None else env)
    data_dir = env.get("LUC_DATA_DIR")
    url = env.get("LUC_DATABASE_URL") or None
    # Without its scheme the URL was taken, then every connection failed as if PostgreSQL
    # were down: retried for LUC_DB_STARTUP_TIMEOUT_SECONDS, where no wait could help.
    # The URL itself is not repeated: it may hold a password.
    try:
        parts = urlsplit(url) if url is not None else None
    except ValueError as exc:  # an unclosed IPv6 bracket
        raise SettingsError(f"LUC_DATABASE_URL is not a URL: {exc}") from None
    scheme = parts.scheme if parts is not None else "postgresql"
    if scheme.split("+")[0] not in ("postgresql", "postgres"):
        raise SettingsError(
            "LUC_DATABASE_URL must be a PostgreSQL URL, "
            "postgresql://user:password@host:port/database, "
            + (f"not {scheme}://" if scheme else "with its scheme")
        )
    if parts is not None and (problem := _database_port_problem(parts.netloc)):
        raise SettingsError(f"LUC_DATABASE_URL: {problem}")
    statement_timeout_ms = _int(
        env,
        "LUC_DB_STATEMENT_TIMEOUT_MS",
        DatabaseSettings.statement_timeout_ms,
        maximum=POSTGRES_INT_MAX,
    )
    database = DatabaseSettings(
        url=url,
        data_dir=Path(data_dir).expanduser() if data_dir else DatabaseSettings().data_dir,
        pool_min_size=_int(env, "LUC_DB_POOL_MIN", DatabaseSettings.pool_min_size),
        pool_max_size=_int(env, "LUC_DB_POOL_MAX", DatabaseSettings.pool_max_size),
        statement_timeout_ms=statement_timeout_ms,
        command_timeout_seconds=_float(
            env,
            "LUC_DB_COMMAND_TIMEOUT_SECONDS",
            default_command_timeout(statement_timeout_ms),
        ),
        pooler=_choice(env, "LUC_DB_POOLER", DatabaseSettings.pooler, ("none", "transaction")),
        startup_timeout_seconds=_float(
            env, "LUC_DB_STARTUP_TIMEOUT_SECONDS", DatabaseSettings.startup_timeout_seconds
        ),
        partition_check_seconds=_float(
            env, "LUC_PARTITION_CHECK_SECONDS", DatabaseSettings.partition_check_seconds
        ),
        embedded_port=_port(env, "LUC_EMBEDDED_PG_PORT"),
    )
    if database.pool_min_size > database.pool_max_size:
        raise SettingsError("LUC_DB_POOL_MIN must not exceed LUC_DB_POOL_MAX")
    if database.command_timeout_seconds * 1000 <= statement_timeout_ms:
        raise SettingsError(
            f"LUC_DB_COMMAND_TIMEOUT_SECONDS ({database.command_timeout_seconds:g}) must be "
            f"longer than LUC_DB_STATEMENT_TIMEOUT_MS ({statement_timeout_ms} ms): PostgreSQL "
            "cancels a slow statement itself; LUC's own wait is for a server that answers "
            "nothing"
        )
    server = ServerSettings(
        host=env.get("LUC_HOST") or ServerSettings.host,
        # Above 65535 uvicorn bound the number modulo 65536 (70000: port 4464), without a word.
        port=_int(env, "LUC_PORT", ServerSettings.port, minimum=0, maximum=65535),
        log_level=_choice(
            env, "LUC_LOG_LEVEL", ServerSettings.log_level, ("debug", "info", "warning", "error")
        ),
        log_format=(
            _choice(env, "LUC_LOG_FORMAT", "json", ("json", "console"))
            if env.get("LUC_LOG_FORMAT")
            else None
        ),
        workers=_int(env, "LUC_WORKERS", ServerSettings().workers),
        body_timeout_seconds=_float(
            env, "LUC_BODY_TIMEOUT_SECONDS", ServerSettings.body_timeout_seconds
        ),
        forwarded_allow_ips=_forwarded_allow_ips(env),
    )
    max_batch_events = _int(env, "LUC_MAX_BATCH_EVENTS", IngestSettings.max_batch_events)
    max_attributes_bytes = _int(
        env, "LUC_MAX_ATTRIBUTES_BYTES", IngestSettings.max_attributes_bytes
    )
    ingest = IngestSettings(
        max_batch_events=max_batch_events,
        max_body_bytes=_int(
            env,
            "LUC_MAX_BODY_BYTES",
            default_max_body_bytes(max_batch_events, max_attributes_bytes),
        ),
        max_future_skew_seconds=_int(
            env,
            "LUC_MAX_FUTURE_SKEW_SECONDS",
            IngestSettings.max_future_skew_seconds,
            minimum=0,
            maximum=LONGEST_DURATION_SECONDS,
        ),
        max_attributes_bytes=max_attributes_bytes,
        writers=_int(env, "LUC_INGEST_WRITERS", 1) if env.get("LUC_INGEST_WRITERS") else None,
        persist=_choice(env, "LUC_INGEST_PERSIST", "1", ("0", "1")) == "1",
    )
    base_url = env.get("LUC_OPENROUTER_BASE_URL") or OpenRouterSettings.base_url
    if not _is_http_url(base_url):
        raise SettingsError(f"LUC_OPENROUTER_BASE_URL must be an http(s) URL, got {base_url!r}")
    openrouter = OpenRouterSettings(
        base_url=base_url,
        timeout_seconds=float(
            _int(
                env,
                "LUC_OPENROUTER_TIMEOUT_SECONDS",
                int(OpenRouterSettings.timeout_seconds),
                maximum=LONGEST_DURATION_SECONDS,
            )
        ),
    )
    secret = env.get("LUC_WEBHOOK_SECRET") or None
    if secret is not None and (problem := webhook_secret_problem(secret)) is not None:
        raise SettingsError(f"LUC_WEBHOOK_SECRET must be a Standard Webhooks secret: {problem}")
    hosts = tuple(
        h.strip() for h in (env.get("LUC_WEBHOOK_ALLOWED_HOSTS") or "*").split(",") if h.strip()
    )
    for host in hosts:
        if "/" in host:
            # A URL matched no webhook's host: every delivery was refused, silently.
            raise SettingsError(
                f"LUC_WEBHOOK_ALLOWED_HOSTS: {host!r} is not a host name (give "
                "hooks.example.com, not https://hooks.example.com/path)"
            )
    budgets = BudgetSettings(
        webhook_secret=secret,
        # Set to a list with no host (``,``): none allowed, as README says; unset: any.
        allowed_hosts=hosts,
        retry_window_seconds=_int(
            env,
            "LUC_WEBHOOK_RETRY_WINDOW_SECONDS",
            BudgetSettings.retry_window_seconds,
            maximum=LONGEST_DURATION_SECONDS,
        ),
        backoff_base_seconds=_float(
            env, "LUC_WEBHOOK_BACKOFF_BASE_SECONDS", BudgetSettings.backoff_base_seconds
        ),
        backoff_max_seconds=_float(
            env, "LUC_WEBHOOK_BACKOFF_MAX_SECONDS", BudgetSettings.backoff_max_seconds
        ),
        timeout_seconds=_float(env, "LUC_WEBHOOK_TIMEOUT_SECONDS", BudgetSettings.timeout_seconds),
        poll_seconds=_float(env, "LUC_WEBHOOK_POLL_SECONDS", BudgetSettings.poll_seconds),
        reservation_seconds=_int(
            env,
            "LUC_BUDGET_RESERVATION_SECONDS",
            BudgetSettings.reservation_seconds,
            maximum=LONGEST_DURATION_SECONDS,
        ),
        reservation_retention_seconds=_int(
            env,
            "LUC_BUDGET_RESERVATION_RETENTION_SECONDS",
            BudgetSettings.reservation_retention_seconds,
            minimum=0,
            maximum=LONGEST_DURATION_SECONDS,
        ),
    )
    auth = AuthSettings(
        enabled=_choice(env, "LUC_AUTH", "on", ("on", "off")) == "on",
        metrics_public=_choice(env, "LUC_METRICS_PUBLIC", "0", ("0", "1")) == "1",
        rate_limit_per_second=_int(
            env, "LUC_RATE_LIMIT_PER_SECOND", AuthSettings.rate_limit_per_second, minimum=0
        ),
    )
    gateway = _gateway(env)
    reconciliation = ReconciliationSettings(
        tolerance=_tolerance(env, "LUC_RECONCILIATION_TOLERANCE", ReconciliationSettings.tolerance)
    )
    default_plan = env.get("LUC_DEFAULT_PLAN") or None
    if default_plan is not None and len(default_plan) > 128:
        raise SettingsError("LUC_DEFAULT_PLAN must be a plan id (at most 128 characters)")
    return Settings(
        gateway=gateway,
        database=database,
        server=server,
        ingest=ingest,
        openrouter=openrouter,
        budgets=budgets,
        auth=auth,
        reconciliation=reconciliation,
        billing=BillingSettings(default_plan=default_plan),
        issuer=_issuer(env),
    )


def _tolerance(env: dict[str, str], name: str, default: Decimal) -> Decimal:
    """A share as a plain decimal string (``0.01``), exact: never a float."""
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return parse_money(name, raw)
    except WireValueError:
        raise SettingsError(
            f"{name} must be a decimal share such as 0.01 (1 %), got {raw!r}"
        ) from None


MAX_ISSUER_TEXT_CHARS = 1000
MAX_PAYMENT_TERMS_DAYS = 365


def _secret(env: dict[str, str], name: str) -> str | None:
    """A provider credential: without the whitespace around it (a key read from a file
    ends in a newline, which no header may hold: httpx refused it and its error, which
    quotes the header, reached the caller and the log); blank is none. One that still holds
    whitespace or a control character is refused, without echoing it."""
    value = (env.get(name) or "").strip()
    if not value.isascii() or any(c.isspace() or not c.isprintable() for c in value):
        # An HTTP header holds ASCII: a key with "é" made every proxied call a 500.
        raise SettingsError(
            f"{name} holds a space, a control character or a character outside ASCII: not "
            "a credential (its value is not shown)"
        )
    return value or None


def _text(env: dict[str, str], name: str) -> str | None:
    """Free text printed on invoices: ``\\n`` (as a shell or a ``.env`` file writes it)
    starts a line, as a newline does; surrounding blanks are dropped."""
    raw = (env.get(name) or "").replace("\\n", "\n").strip()
    if not raw:
        return None
    if len(raw) > MAX_ISSUER_TEXT_CHARS:
        raise SettingsError(f"{name} must be at most {MAX_ISSUER_TEXT_CHARS} characters")
    if "\x00" in raw:
        raise SettingsError(f"{name} must not contain the NUL character")
    return raw


def _media_type(data: bytes) -> str | None:
    for signature, media_type in _IMAGE_SIGNATURES:
        if data.startswith(signature):
            return media_type
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    # SVG is text: an XML declaration, a doctype or a comment may come before <svg.
    head = data[:1024].lstrip(b"\xef\xbb\xbf").lstrip()
    if head.startswith(b"<") and b"<svg" in data[:4096]:
        return "image/svg+xml"
    return None


def _logo(env: dict[str, str], name: str) -> Logo | None:
    """The logo file, read once: a missing, unreadable, oversized or non-image file stops
    the service at start rather than leave every invoice without its logo."""
    raw = env.get(name)
    if not raw:
        return None
    path = Path(raw).expanduser()
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SettingsError(f"{name}: cannot read {raw!r}: {exc.strerror or exc}") from None
    if len(data) > LOGO_MAX_BYTES:
        raise SettingsError(
            f"{name}: {raw!r} is {len(data):,} bytes; a logo may be at most "
            f"{LOGO_MAX_BYTES:,} bytes"
        )
    media_type = _media_type(data)
    if media_type is None:
        raise SettingsError(f"{name}: {raw!r} is not a PNG, JPEG, GIF, WebP or SVG image")
    return Logo(path=path, media_type=media_type, data=data)


def _issuer(env: dict[str, str]) -> IssuerSettings:
    terms = _int(env, "LUC_ISSUER_PAYMENT_TERMS_DAYS", IssuerSettings.payment_terms_days, minimum=0)
    if terms > MAX_PAYMENT_TERMS_DAYS:
        raise SettingsError(
            f"LUC_ISSUER_PAYMENT_TERMS_DAYS must be at most {MAX_PAYMENT_TERMS_DAYS}, got {terms}"
        )
    return IssuerSettings(
        name=_text(env, "LUC_ISSUER_NAME"),
        address=_text(env, "LUC_ISSUER_ADDRESS"),
        tax_id=_text(env, "LUC_ISSUER_TAX_ID"),
        payment_terms_days=terms,
        logo=_logo(env, "LUC_ISSUER_LOGO"),
        footer=_text(env, "LUC_ISSUER_FOOTER"),
    )


_G = GatewaySettings
"""Each gateway setting's default, read where the environment leaves it unset."""


def _gateway(env: dict[str, str]) -> GatewaySettings:
    chain = tuple(p.strip() for p in (env.get("LUC_GATEWAY_CHAIN") or "").split(",") if p.strip())
    chain = chain or _G.chain
    for name in chain:
        if name not in GATEWAY_PROVIDERS:
            raise SettingsError(
                f"LUC_GATEWAY_CHAIN: {name!r} is not one of {', '.join(GATEWAY_PROVIDERS)}"
            )
    if len(set(chain)) != len(chain):
        raise SettingsError("LUC_GATEWAY_CHAIN names a provider twice")
    vertex_base_url = env.get("LUC_VERTEX_BASE_URL") or None
    if vertex_base_url and not _is_http_url(vertex_base_url):
        raise SettingsError(f"LUC_VERTEX_BASE_URL must be an http(s) URL, got {vertex_base_url!r}")
    prefixes = tuple(
        p.strip()
        for p in (env.get("LUC_VERTEX_MODELS") or ",".join(_G.vertex_models)).split(",")
        if p.strip()
    )
    gateway = GatewaySettings(
        openrouter_api_key=_secret(env, "OPENROUTER_API_KEY"),
        chain=chain,
        default_model=env.get("LUC_GATEWAY_DEFAULT_MODEL") or _G.default_model,
        timeout_seconds=_float(env, "LUC_GATEWAY_TIMEOUT_SECONDS", _G.timeout_seconds),
        stream_deadline_seconds=_float(
            env, "LUC_GATEWAY_STREAM_DEADLINE_SECONDS", _G.stream_deadline_seconds
        ),
        max_answer_bytes=_int(env, "LUC_GATEWAY_MAX_ANSWER_BYTES", _G.max_answer_bytes),
        max_retries=_int(
            env, "LUC_GATEWAY_MAX_RETRIES", _G.max_retries, minimum=0, maximum=MAX_RETRIES
        ),
        backoff_base_seconds=_float(
            env, "LUC_GATEWAY_BACKOFF_BASE_SECONDS", _G.backoff_base_seconds
        ),
        max_retry_after_seconds=_float(
            env, "LUC_GATEWAY_MAX_RETRY_AFTER_SECONDS", _G.max_retry_after_seconds
        ),
        record_timeout_seconds=_float(
            env, "LUC_GATEWAY_RECORD_TIMEOUT_SECONDS", _G.record_timeout_seconds
        ),
        default_max_tokens=_int(env, "LUC_GATEWAY_DEFAULT_MAX_TOKENS", _G.default_max_tokens),
        http_referer=env.get("LUC_GATEWAY_HTTP_REFERER") or None,
        app_title=env.get("LUC_GATEWAY_TITLE") or _G.app_title,
        vertex_project=env.get("LUC_VERTEX_PROJECT") or None,
        vertex_location=env.get("LUC_VERTEX_LOCATION") or _G.vertex_location,
        vertex_base_url=vertex_base_url,
        vertex_access_token=_secret(env, "LUC_VERTEX_ACCESS_TOKEN"),
        vertex_token_command=env.get("LUC_VERTEX_TOKEN_COMMAND") or None,
        vertex_models=prefixes or _G.vertex_models,
    )
    # A reservation is held for the longest a call may run; past 100 years its expiry
    # leaves the instants PostgreSQL holds, and every call under a hard budget failed.
    if gateway.longest_wait_seconds > LONGEST_DURATION_SECONDS:
        raise SettingsError(
            "LUC_GATEWAY_MAX_RETRIES, LUC_GATEWAY_TIMEOUT_SECONDS and "
            "LUC_GATEWAY_MAX_RETRY_AFTER_SECONDS let a call run longer than 100 years "
            f"({gateway.longest_wait_seconds:.0f} s): lower them"
        )
    return gateway


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read on first use."""
    return load_settings()

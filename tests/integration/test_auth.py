"""Nobody reads or writes where they do not belong: a scope matrix over the whole API.

Every operation of the OpenAPI document is called with no key, a wrong key, a revoked key
and a key of each scope; each answer is what the route's scope says. The expected scopes
are written out below, by hand: a route added without an entry here fails the test, so no
route is left unguarded by accident. Then keys themselves: stored hashed, shown once,
printed alone by ``luc keys create``, revocable from the CLI and over REST.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import math
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from litestar.testing import AsyncTestClient

from service.app import create_app
from service.auth.keys import create_key, revoke_key
from tests.support.commands import luc_on
from tests.support.keys import bearer
from tests.support.settings import settings_for

PUBLIC = "public"
INGEST = "ingest"
READ = "read"
ADMIN = "admin"
INGEST_OR_READ = "ingest or read"

# operationId → who may call it. Admin may call everything that is not public.
EXPECTED_SCOPES: dict[str, str] = {
    # probes
    "healthz": PUBLIC,
    "readyz": PUBLIC,
    # the gateway writes
    "ingestEvent": INGEST,
    "ingestEventBatch": INGEST,
    "checkBudgets": INGEST_OR_READ,  # only looks
    "createBudgetReservation": INGEST,  # holds budget: a read key must not block the gateway
    "releaseBudgetReservation": INGEST,  # frees what its reservation holds
    "createChatCompletion": INGEST,  # the metering proxy: OpenAI SDKs pass an ingest key
    "listModels": INGEST_OR_READ,  # OpenAI SDKs list models with that same ingest key
    "retrieveModel": INGEST_OR_READ,
    # finance reads
    "listJobs": READ,
    "getJob": READ,
    "listJobLedgerEntries": READ,
    "previewJobInvoice": READ,
    "previewMonthInvoice": READ,
    "listInvoices": READ,
    "getInvoice": READ,
    "listAgents": READ,
    "getAgent": READ,
    "queryUsage": READ,
    "reconcileCosts": READ,
    "exportFocus": READ,
    "listUnpricedEvents": READ,
    "getCurrentCatalog": READ,
    "listCatalogVersions": READ,
    "getCatalogVersion": READ,
    "diffCatalogVersions": READ,
    "getModelPriceHistory": READ,
    "listBudgets": READ,
    "getBudget": READ,
    "listAlerts": READ,
    "getAlert": READ,
    "metrics": READ,
    "listParkedUsage": READ,
    "listCustomers": READ,
    "getCustomer": READ,
    "getCredits": READ,
    "listPlans": READ,
    "getPlan": READ,
    # operators
    "updateJob": ADMIN,
    "grantCredits": ADMIN,  # money given to a customer
    "issueJobInvoice": ADMIN,
    "issueMonthInvoice": ADMIN,
    "createCatalogVersion": ADMIN,
    "rerateSince": ADMIN,
    "createBudget": ADMIN,
    "updateBudget": ADMIN,
    "deleteBudget": ADMIN,
    "redeliverAlert": ADMIN,
    "replayParkedUsage": ADMIN,
    "discardParkedUsage": ADMIN,
    "listKeys": ADMIN,
    "createKey": ADMIN,
    "revokeKey": ADMIN,
    "createCustomer": ADMIN,
    "updateCustomer": ADMIN,
    "createPlan": ADMIN,
    "createPlanVersion": ADMIN,
    "repricePlan": ADMIN,
}

ALLOWED: dict[str, set[str]] = {
    PUBLIC: {"none", "wrong", "revoked", INGEST, READ, ADMIN},
    INGEST: {INGEST, ADMIN},
    READ: {READ, ADMIN},
    INGEST_OR_READ: {INGEST, READ, ADMIN},
    ADMIN: {ADMIN},
}

# A well-formed key that was never issued: 32 random bytes, like a real one.
WRONG_KEY = "luc_" + base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")


@pytest.fixture
async def api(database_url: str) -> AsyncIterator[AsyncTestClient[Any]]:
    """The app with authentication on and no default key: each request brings its own."""
    app = create_app(settings_for(database_url, LUC_AUTH="on", LUC_RATE_LIMIT_PER_SECOND="0"))
    async with AsyncTestClient(app=app) as client:
        yield client


async def _keys(db: asyncpg.Connection, admin_key: str) -> dict[str, str | None]:
    """One credential per column of the matrix; the revoked key is revoked before any use."""
    keys: dict[str, str | None] = {"none": None, "wrong": WRONG_KEY, ADMIN: admin_key}
    for scope in (INGEST, READ):
        _, keys[scope] = await create_key(db, f"matrix-{scope}", scope)
    revoked, keys["revoked"] = await create_key(db, "matrix-revoked", "admin")
    await revoke_key(db, revoked.id)
    return keys


def _calls(document: dict[str, Any]) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(operationId, method, concrete path, request kwargs) for every operation."""
    calls = []
    for template, item in document["paths"].items():
        for method, operation in item.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            path = template
            for parameter in operation.get("parameters", []):
                if parameter["in"] != "path":
                    continue
                schema = parameter.get("schema", {})
                # Plausible values; a success here may well be a 404.
                value = "999999" if schema.get("type") == "integer" else "probe-1"
                path = path.replace("{" + parameter["name"] + "}", value)
            kwargs: dict[str, Any] = {}
            if "requestBody" in operation:
                kwargs["json"] = {}
            calls.append((operation["operationId"], method, path, kwargs))
    return calls


def _headers(key: str | None) -> dict[str, str]:
    return {} if key is None else {"Authorization": f"Bearer {key}"}


async def test_every_route_answers_each_key_as_its_scope_says(
    api: AsyncTestClient[Any], db: asyncpg.Connection, admin_key: str
) -> None:
    schema = await api.get("/schema/openapi.json")  # the document itself needs no key
    assert schema.status_code == 200
    document = schema.json()
    calls = _calls(document)

    # No route left unguarded: the document and the table name the same operations.
    assert {operation_id for operation_id, *_ in calls} == set(EXPECTED_SCOPES)

    keys = await _keys(db, admin_key)
    wrong: list[str] = []
    for operation_id, method, path, kwargs in calls:
        scope = EXPECTED_SCOPES[operation_id]
        for credential, key in keys.items():
            response = await api.request(method.upper(), path, headers=_headers(key), **kwargs)
            status = response.status_code
            label = f"{method.upper()} {path} ({operation_id}) with {credential}: {status}"
            if credential in ALLOWED[scope]:
                if status in (401, 403):
                    wrong.append(f"{label}, expected access; {response.text}")
            elif credential in ("none", "wrong", "revoked"):
                if status != 401:
                    wrong.append(f"{label}, expected 401")
                elif response.headers.get("www-authenticate") != 'Bearer realm="luc"':
                    wrong.append(f"{label} without a WWW-Authenticate challenge")
            elif status != 403:
                wrong.append(f"{label}, expected 403")
            elif "needs a key of scope" not in response.text:
                wrong.append(f"{label} without saying which scope it needs")
    assert not wrong, "\n".join(wrong)


async def test_the_openapi_document_declares_the_key_on_exactly_the_guarded_routes(
    api: AsyncTestClient[Any],
) -> None:
    document = (await api.get("/schema/openapi.json")).json()
    assert document["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
    for item in document["paths"].values():
        for method, operation in item.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            public = EXPECTED_SCOPES[operation["operationId"]] == PUBLIC
            assert ("security" in operation) is not public, operation["operationId"]
            assert ("401" in operation["responses"]) is not public, operation["operationId"]


async def test_a_key_is_stored_only_as_its_hash_and_appears_nowhere_in_the_database(
    api: AsyncTestClient[Any], db: asyncpg.Connection, admin_key: str
) -> None:
    response = await api.post(
        "/v1/keys", json={"name": "finance", "scope": "read"}, headers=_headers(admin_key)
    )
    assert response.status_code == 201, response.text
    created = response.json()
    secret = created["key"]
    # At least 128 random bits: "luc_" and 32 bytes of URL-safe base64.
    assert secret.startswith("luc_")
    assert len(base64.urlsafe_b64decode(secret[4:] + "=")) == 32
    assert created["prefix"] == secret[:12]

    row = await db.fetchrow("SELECT * FROM api_keys WHERE id = $1", created["id"])
    assert row is not None
    assert bytes(row["key_hash"]) == hashlib.sha256(secret.encode()).digest()
    for column, value in row.items():
        assert secret not in str(value), column
        if isinstance(value, bytes):
            assert secret.encode() not in value, column

    # Nor anywhere else: every row of every table, as text.
    tables = await db.fetch(
        "SELECT quote_ident(table_name) AS t FROM information_schema.tables "
        "WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
    )
    for table in tables:
        hits = await db.fetchval(
            f"SELECT count(*) FROM {table['t']} AS r WHERE r::text LIKE '%' || $1 || '%'",
            secret[12:],  # the part that is not the shown prefix
        )
        assert hits == 0, table["t"]

    # The key is shown once: listings carry the prefix only.
    listed = await api.get("/v1/keys", headers=_headers(admin_key))
    assert secret not in listed.text
    assert created["prefix"] in listed.text
    # And it works with its scope.
    assert (await api.get("/v1/jobs", headers=_headers(secret))).status_code == 200
    assert (await api.get("/v1/keys", headers=_headers(secret))).status_code == 403


async def _becomes_unauthorized(api: AsyncTestClient[Any], key: str, within: float) -> float:
    """Seconds until ``key`` gets 401 (the guard caches keys for about 2 s)."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        if (await api.get("/v1/jobs", headers=_headers(key))).status_code == 401:
            return time.monotonic() - started
        await asyncio.sleep(0.1)
    raise AssertionError(f"key still accepted {within} s after revocation")


async def test_luc_keys_create_prints_the_key_alone_and_revoke_stops_it(
    api: AsyncTestClient[Any], database_url: str
) -> None:
    created = await luc_on(
        database_url, "keys", "create", "--scope", "ingest", "--name", "gateway-prod", check=True
    )
    lines = created.stdout.splitlines()
    key = lines[-1]
    assert key.startswith("luc_") and " " not in key and len(key) >= 4 + 43, created.stdout
    assert len(base64.urlsafe_b64decode(key[4:] + "=")) == 32

    # The new key ingests, and reads nothing.
    assert (await api.get("/v1/jobs", headers=_headers(key))).status_code == 403
    batch = await api.post("/v1/events/batch", json={"events": []}, headers=_headers(key))
    assert batch.status_code == 422  # past the guard: refused for being empty

    listed = await luc_on(database_url, "keys", "list", check=True)
    assert key not in listed.stdout
    (line,) = [row for row in listed.stdout.splitlines() if "gateway-prod" in row]
    key_id, scope, *_ = line.split("\t")
    assert scope == "ingest" and "active" in line

    await luc_on(database_url, "keys", "revoke", key_id, check=True)
    # The same key used a moment ago is cached; revocation still lands within seconds.
    assert await _becomes_unauthorized(api, key, within=4.0) < 3.5
    listed = await luc_on(database_url, "keys", "list", check=True)
    assert "revoked" in next(row for row in listed.stdout.splitlines() if "gateway-prod" in row)


@pytest.mark.parametrize("name", ["ops\tteam", "ops\nteam", "ops\x00team", "ops\x1bteam"])
async def test_a_key_name_with_a_control_character_is_refused_and_the_list_stays_parseable(
    api: AsyncTestClient[Any], database_url: str, admin_key: str, name: str
) -> None:
    # A tab or a newline in a name split `luc keys list`'s tab-separated rows for a script
    # reading them; a NUL reached PostgreSQL, which refuses it in text.
    reason = "name: give a name of 1 to 200 characters, without control characters"
    response = await api.post(
        "/v1/keys", json={"name": name, "scope": "read"}, headers=_headers(admin_key)
    )
    assert response.status_code == 422, response.text
    # A NUL is refused where any body is read, as on every route.
    nul = "name: must not contain the NUL character (U+0000)"
    assert response.json()["detail"] == (nul if "\x00" in name else reason)
    if "\x00" not in name:  # no command line argument holds a NUL
        created = await luc_on(database_url, "keys", "create", "--scope", "read", "--name", name)
        assert created.returncode == 1, created.stderr
        assert created.stderr.splitlines()[-1] == f"Error: {reason}"
    listed = await luc_on(database_url, "keys", "list", check=True)
    assert all(len(row.split("\t")) == 6 for row in listed.stdout.splitlines()), listed.stdout


async def test_revoking_over_rest_stops_the_key_within_seconds(
    api: AsyncTestClient[Any], admin_key: str
) -> None:
    created = (
        await api.post(
            "/v1/keys", json={"name": "finance", "scope": "read"}, headers=_headers(admin_key)
        )
    ).json()
    key = created["key"]
    assert (await api.get("/v1/jobs", headers=_headers(key))).status_code == 200

    revoked = await api.delete(f"/v1/keys/{created['id']}", headers=_headers(admin_key))
    assert revoked.status_code == 204
    assert await _becomes_unauthorized(api, key, within=4.0) < 3.5
    again = await api.delete(f"/v1/keys/{created['id']}", headers=_headers(admin_key))
    assert again.status_code == 404
    listed = (await api.get("/v1/keys", headers=_headers(admin_key))).json()["items"]
    assert next(k for k in listed if k["id"] == created["id"])["revoked_at"] is not None


async def test_a_key_revoked_over_rest_is_refused_at_once_by_the_process_that_revoked_it(
    api: AsyncTestClient[Any], admin_key: str
) -> None:
    """The key was used a moment ago, so the guard holds it in its cache: the revocation
    drops it there, and the very next request with it is refused (other processes of
    ``luc serve`` hold their copy at most ``KEY_CACHE_SECONDS``)."""
    created = (
        await api.post(
            "/v1/keys", json={"name": "leaked", "scope": "read"}, headers=_headers(admin_key)
        )
    ).json()
    key = created["key"]
    assert (await api.get("/v1/jobs", headers=_headers(key))).status_code == 200

    revoked = await api.delete(f"/v1/keys/{created['id']}", headers=_headers(admin_key))
    assert revoked.status_code == 204
    refused = await api.get("/v1/jobs", headers=_headers(key))
    assert refused.status_code == 401, refused.text
    assert refused.json()["detail"] == "this API key was revoked"


async def test_a_revoked_admin_key_is_refused_at_once_by_another_process_on_admin_routes(
    database_url: str, admin_key: str
) -> None:
    """Two processes (two workers of ``luc serve``) on one database: the key is revoked on
    one while the other holds it in its cache. Routes only an admin may use read the key
    afresh, so the other process refuses it at once: before, for up to KEY_CACHE_SECONDS a
    leaked admin key could mint its successor there, which outlived the revocation."""
    settings = settings_for(database_url, LUC_AUTH="on")
    async with (
        AsyncTestClient(app=create_app(settings)) as one,
        AsyncTestClient(app=create_app(settings)) as other,
    ):
        made = await one.post(
            "/v1/keys", json={"name": "leaked", "scope": "admin"}, headers=_headers(admin_key)
        )
        leaked = made.json()
        assert (await other.get("/v1/keys", headers=_headers(leaked["key"]))).status_code == 200

        revoked = await one.delete(f"/v1/keys/{leaked['id']}", headers=_headers(admin_key))
        assert revoked.status_code == 204
        successor = await other.post(
            "/v1/keys",
            json={"name": "successor", "scope": "admin"},
            headers=_headers(leaked["key"]),
        )
        assert successor.status_code == 401, successor.text
        assert successor.json()["detail"] == "this API key was revoked"
        listed = (await one.get("/v1/keys", headers=_headers(admin_key))).json()["items"]
        assert "successor" not in {k["name"] for k in listed}


async def test_a_non_admin_key_cannot_create_or_revoke_keys(
    api: AsyncTestClient[Any], db: asyncpg.Connection, admin_key: str
) -> None:
    _, read_key = await create_key(db, "finance", "read")
    admin_row = await db.fetchval("SELECT id FROM api_keys WHERE scope = 'admin' LIMIT 1")
    for key in (read_key, WRONG_KEY):
        made = await api.post(
            "/v1/keys", json={"name": "escalate", "scope": "admin"}, headers=_headers(key)
        )
        assert made.status_code in (401, 403)
        gone = await api.delete(f"/v1/keys/{admin_row}", headers=_headers(key))
        assert gone.status_code in (401, 403)
    assert await db.fetchval("SELECT count(*) FROM api_keys WHERE name = 'escalate'") == 0
    assert (await api.get("/v1/keys", headers=_headers(admin_key))).status_code == 200


async def test_two_authorization_headers_are_refused_whichever_comes_first(
    server_factory: Any, db: asyncpg.Connection, admin_key: str
) -> None:
    """The first of two keys acted, silently: admin then read listed the keys, read then
    admin did not. Which key acts is not LUC's to pick. (A real server: the test client
    joins repeated headers into one.)"""
    server = server_factory(LUC_AUTH="on")
    _, read_key = await create_key(db, "twice", "read")
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        for first, second in ((admin_key, read_key), (read_key, admin_key)):
            answer = await http.get(
                "/v1/keys",
                headers=[
                    ("Authorization", f"Bearer {first}"),
                    ("Authorization", f"Bearer {second}"),
                ],
            )
            assert answer.status_code == 401, answer.text
            assert answer.json()["detail"] == "Authorization sent more than once: send one key"
        assert (await http.get("/v1/keys", headers=_headers(admin_key))).status_code == 200


async def test_healthz_is_open_and_metrics_needs_a_read_key(
    api: AsyncTestClient[Any], db: asyncpg.Connection
) -> None:
    assert (await api.get("/healthz")).status_code == 200
    assert (await api.get("/readyz")).status_code == 200
    assert (await api.get("/metrics")).status_code == 401
    _, ingest_key = await create_key(db, "gateway", "ingest")
    _, read_key = await create_key(db, "prometheus", "read")
    assert (await api.get("/metrics", headers=_headers(ingest_key))).status_code == 403
    scraped = await api.get("/metrics", headers=_headers(read_key))
    assert scraped.status_code == 200
    assert "luc_database_up 1.0" in scraped.text


async def test_metrics_is_open_with_luc_metrics_public_and_nothing_else_is(
    database_url: str,
) -> None:
    app = create_app(settings_for(database_url, LUC_AUTH="on", LUC_METRICS_PUBLIC="1"))
    async with AsyncTestClient(app=app) as client:
        scraped = await client.get("/metrics")
        assert scraped.status_code == 200
        assert scraped.headers["content-type"].startswith("text/plain")
        assert (await client.get("/v1/jobs")).status_code == 401
        assert (await client.post("/v1/events/batch", json={"events": []})).status_code == 401


async def test_made_up_keys_share_their_address_allowance_and_a_real_key_keeps_its_own(
    database_url: str, admin_key: str
) -> None:
    # Each made-up token was counted as an identity of its own: a client sending a new
    # one with every request was never limited (nor its flood of key lookups).
    limit = 5
    app = create_app(
        settings_for(database_url, LUC_AUTH="on", LUC_RATE_LIMIT_PER_SECOND=str(limit))
    )
    async with AsyncTestClient(app=app) as client:
        statuses = []
        started = time.monotonic()
        refusals = set()
        for _ in range(40):
            made_up = "luc_" + base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
            response = await client.get("/v1/alerts", headers=bearer(made_up))
            statuses.append(response.status_code)
            if response.status_code == 429:
                refusals.add(response.json()["detail"])
        elapsed = time.monotonic() - started
        # A real key is counted on its own, whatever its address has done.
        real = await client.get("/v1/alerts", headers=bearer(admin_key))
        assert real.status_code == 200, real.text
    assert set(statuses) <= {401, 429}
    # The count opens with each wall-clock second: the requests spanned at most
    # ceil(elapsed) + 1 windows of ``limit`` each.
    assert statuses.count(401) <= limit * (math.ceil(elapsed) + 1), (elapsed, statuses)
    assert 429 in statuses
    # Said as what was counted: this address, not "this API key" (a made-up one is none).
    assert refusals == {
        "request rate over the limit of this address (requests without a valid key count "
        "per address); retry after the Retry-After delay"
    }


async def test_a_path_naming_a_probe_is_rate_limited_as_any_other_only_the_probes_are_not(
    database_url: str, admin_key: str
) -> None:
    """The probes' exclusion was searched anywhere in the path: /v1/jobs/healthz (a job of
    that id) and /v1/agents/readyz went unlimited, 40 answers of 40."""
    limit = 5
    app = create_app(
        settings_for(database_url, LUC_AUTH="on", LUC_RATE_LIMIT_PER_SECOND=str(limit))
    )
    async with AsyncTestClient(app=app) as client:
        for path in ("/v1/jobs/healthz", "/v1/agents/readyz", "/v1/jobs/x-healthz/entries"):
            started = time.monotonic()
            statuses = [
                (await client.get(path, headers=bearer(admin_key))).status_code for _ in range(40)
            ]
            elapsed = time.monotonic() - started
            assert 429 in statuses, path
            assert len(statuses) - statuses.count(429) <= limit * (math.ceil(elapsed) + 1), path
        # The probes themselves stay unlimited.
        probes = [(await client.get("/healthz")).status_code for _ in range(40)]
        assert probes == [200] * 40

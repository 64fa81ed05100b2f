"""``luc customers`` and ``luc plans`` on the server's database, as an operator runs them:
what they print is what REST answers, and a mistake is one clean line. ``LUC_DEFAULT_PLAN``
must name a plan that exists, or LUC does not start."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from service.app import create_app
from tests.integration.test_cli import error_line
from tests.support.clock import clear_of_end
from tests.support.commands import luc_on
from tests.support.settings import settings_for

FLASH = "google/gemini-3.0-flash"


async def test_plans_are_created_versioned_listed_and_shown_as_rest_shows_them(
    database_url: str, client: AsyncTestClient[Any], tmp_path: Path
) -> None:
    models = tmp_path / "models.json"
    models.write_text(json.dumps({"gemini-3.0-flash": {"input": "0.08", "output": "0.32"}}))
    created = await luc_on(
        database_url,
        *("plans", "create", "enterprise", "--name", "Enterprise"),
        *("--effective-from", "2025-01-01T00:00:00Z", "--markup", "0.25"),
        *("--per-request-usd", "0.001", "--models", str(models)),
        check=True,
    )
    printed = json.loads(created.stdout)
    assert printed == (await client.get("/v1/plans/enterprise")).json()
    [first] = printed["versions"]
    assert (first["basis"], first["markup"], first["per_request_usd"]) == (
        "catalog",
        "0.25",
        "0.001",
    )
    assert first["models"][FLASH]["cache_read"] == "0.08"  # the catalog's default rule
    added = await luc_on(
        database_url,
        *("plans", "add-version", "enterprise", "--effective-from", "2025-06-01T00:00:00Z"),
        *("--basis", "actual", "--markup", "0.10", "--minimum-monthly-usd", "100"),
        check=True,
    )
    second = json.loads(added.stdout)
    assert (second["basis"], second["markup"], second["minimum_monthly_usd"]) == (
        "actual",
        "0.1",
        "100",
    )
    listed = (await luc_on(database_url, "plans", "list", check=True)).stdout.splitlines()
    # Both versions lie in the past: the June one is in force.
    assert listed == [
        "id\tname\tversions\tin force\tbasis\tmarkup",
        f"enterprise\tEnterprise\t2\t{second['id']}\tactual\t0.1",
    ]
    shown = json.loads((await luc_on(database_url, "plans", "show", "enterprise")).stdout)
    assert shown == (await client.get("/v1/plans/enterprise")).json()


async def test_customers_are_created_listed_shown_and_updated_as_rest_shows_them(
    database_url: str, client: AsyncTestClient[Any]
) -> None:
    # Both answers carry the month to date: the same month, over six `luc` processes.
    await clear_of_end("month", margin=timedelta(minutes=2))
    await luc_on(database_url, "plans", "create", "std", "--name", "Std", "--markup", "0")
    created = await luc_on(
        database_url,
        *("customers", "create", "acme", "--name", "Acme Corp", "--plan", "std"),
        *("--email", "billing@acme.example", "--invoicing", "monthly"),
        *("--low-balance-usd", "25", "--credit-stop"),
        check=True,
    )
    printed = json.loads(created.stdout)
    assert printed == (await client.get("/v1/customers/acme")).json()
    assert (printed["plan_id"], printed["invoicing"], printed["low_balance_usd"]) == (
        "std",
        "monthly",
        "25",
    )
    assert printed["credit_stop"] is True
    await luc_on(database_url, "customers", "create", "globex", "--name", "Globex", check=True)
    updated = await luc_on(
        database_url,
        *("customers", "update", "acme", "--name", "Acme Inc", "--no-credit-stop"),
        *("--clear", "plan_id", "--clear", "email"),
        check=True,
    )
    changed = json.loads(updated.stdout)
    assert (changed["name"], changed["credit_stop"], changed["plan_id"], changed["email"]) == (
        "Acme Inc",
        False,
        None,
        None,
    )
    assert changed["invoicing"] == "monthly"  # not named: unchanged
    listed = (await luc_on(database_url, "customers", "list", check=True)).stdout.splitlines()
    assert listed == [
        "id\tname\tplan\tinvoicing\temail",
        "acme\tAcme Inc\t-\tmonthly\t-",
        "globex\tGlobex\t-\tper_job\t-",
    ]
    shown = json.loads((await luc_on(database_url, "customers", "show", "acme")).stdout)
    assert shown == (await client.get("/v1/customers/acme")).json()


async def test_credits_are_granted_and_shown_as_rest_shows_them(
    database_url: str, client: AsyncTestClient[Any]
) -> None:
    await luc_on(database_url, "customers", "create", "acme", "--name", "Acme", check=True)
    granted = await luc_on(
        database_url,
        *("customers", "credits", "grant", "acme", "--amount-usd", "250.00"),
        *("--expires-at", "2099-01-01T00:00:00Z", "--reference", "PO-7"),
        check=True,
    )
    grant = json.loads(granted.stdout)
    assert (grant["amount_usd"], grant["remaining_usd"], grant["expires_at"]) == (
        "250",
        "250",
        "2099-01-01T00:00:00Z",
    )
    assert grant["reference"] == "PO-7"
    shown = json.loads((await luc_on(database_url, "customers", "credits", "show", "acme")).stdout)
    assert shown == (await client.get("/v1/customers/acme/credits")).json()
    assert shown["balance_usd"] == "250"
    customer = json.loads((await luc_on(database_url, "customers", "show", "acme")).stdout)
    assert customer["credit_balance_usd"] == "250"
    refused = await luc_on(
        database_url, "customers", "credits", "grant", "acme", "--amount-usd", "0"
    )
    assert refused.returncode == 1
    assert error_line(refused) == "amount_usd: must be more than zero, got 0"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("customers", "create", "acme", "--name", "A", "--plan", "gold"),
            "plan_id: plan 'gold' does not exist (create it with POST /v1/plans, or "
            "`luc plans create`)",
        ),
        (("customers", "show", "nobody"), "customer 'nobody' does not exist"),
        (
            ("plans", "create", "p", "--name", "P", "--markup", "-1"),
            "markup: '-1' is negative; a markup is 0 or more (0.25 adds 25 %), and a discount "
            "is the plan's own price for a model (models)",
        ),
        (("plans", "add-version", "gold", "--markup", "0"), "plan 'gold' does not exist"),
    ],
)
async def test_a_mistake_is_one_clean_line_and_exit_status_1(
    database_url: str, args: tuple[str, ...], message: str
) -> None:
    result = await luc_on(database_url, *args)
    assert result.returncode == 1
    assert error_line(result) == message


async def test_models_that_are_no_price_list_are_refused(database_url: str, tmp_path: Path) -> None:
    models = tmp_path / "models.json"
    models.write_text(json.dumps({FLASH: {"input": 0.08, "output": "0.32"}}))
    result = await luc_on(
        database_url,
        "plans",
        "create",
        "p",
        "--name",
        "P",
        "--markup",
        "0",
        "--models",
        str(models),
    )
    assert result.returncode == 1
    assert error_line(result).startswith("--models: Expected `str`, got `float`")


async def test_luc_does_not_start_with_a_default_plan_that_does_not_exist(
    database_url: str, tmp_path: Path
) -> None:
    refused = await luc_on(
        database_url,
        "serve",
        LUC_DEFAULT_PLAN="gold",
        LUC_PORT="0",
        LUC_DATA_DIR=str(tmp_path / "luc"),
    )
    assert refused.returncode == 3, refused.stderr[-2000:]
    assert (
        "LUC_DEFAULT_PLAN: plan 'gold' does not exist; create it first (luc plans create) or "
        "unset LUC_DEFAULT_PLAN"
    ) in refused.stdout + refused.stderr
    # Once the plan exists, it starts.
    await luc_on(database_url, "plans", "create", "gold", "--name", "Gold", "--markup", "0.2")
    app = create_app(settings_for(database_url, LUC_DEFAULT_PLAN="gold"))
    async with AsyncTestClient(app=app) as client:
        assert (await client.get("/readyz")).status_code == 200


async def test_plans_reprice_reports_the_change_per_customer_and_job_and_appends_once(
    database_url: str, client: AsyncTestClient[Any]
) -> None:
    plan = {"id": "std", "name": "Std", "effective_from": "2026-10-01T00:00:00Z"}
    made = await client.post("/v1/plans", json={**plan, "basis": "catalog", "markup": "0.25"})
    assert made.status_code == 201, made.text
    assert (
        await client.post("/v1/customers", json={"id": "acme", "name": "Acme"})
    ).status_code == 201
    assert (await client.patch("/v1/customers/acme", json={"plan_id": "std"})).status_code == 200
    # 1,000,000 Flash input tokens and 100,000 output: 0.10 + 0.04 = 0.14, 0.175 at 25 %.
    event = {
        "id": "e1", "occurred_at": "2026-11-10T10:00:00Z", "job_id": "job-1", "agent": "ORACLE",
        "provider": "openrouter", "model": FLASH, "input_tokens": 1_000_000,
        "output_tokens": 100_000, "customer_id": "acme",
    }  # fmt: skip
    assert (await client.post("/v1/events/batch", json={"events": [event]})).json()["accepted"] == 1
    version = {"effective_from": "2026-11-01T00:00:00Z", "basis": "catalog", "markup": "0.5"}
    assert (await client.post("/v1/plans/std/versions", json=version)).status_code == 201
    since = ("--since", "2026-11-01T00:00:00Z")
    dry = await luc_on(database_url, "plans", "reprice", "std", *since, "--dry-run", check=True)
    # 0.14 × 1.5 = 0.21: 0.035 more.
    assert (
        "1 events of plan std since 2026-11-01T00:00:00Z; would change 1, price delta "
        in dry.stdout
    )
    assert "0.035 USD; 0 entries appended" in dry.stdout
    assert "acme" in dry.stdout and "job-1" in dry.stdout
    done = await luc_on(database_url, "plans", "reprice", "std", *since, check=True)
    assert "changed 1, price delta 0.035 USD; 1 entries appended" in done.stdout
    again = await luc_on(database_url, "plans", "reprice", "std", *since, check=True)
    assert "changed 0, price delta 0 USD; 0 entries appended" in again.stdout
    assert (await client.get("/v1/jobs/job-1")).json()["price_usd"] == "0.21"
    missing = await luc_on(database_url, "plans", "reprice", "ghost", *since)
    assert error_line(missing) == "plan 'ghost' does not exist"


async def test_a_command_that_prices_uses_the_server_s_default_plan_not_the_shell_s(
    database_url: str,
) -> None:
    # luc serve runs with LUC_DEFAULT_PLAN=house; an operator's shell rarely has it. Run
    # without it, the re-pricing priced every job without a customer at its catalog cost.
    await luc_on(
        database_url, "plans", "create", "house", "--name", "House", "--markup", "0.1",
        "--effective-from", "2026-01-01T00:00:00Z", check=True,
    )  # fmt: skip
    app = create_app(settings_for(database_url, LUC_DEFAULT_PLAN="house"))
    async with AsyncTestClient(app=app) as client:
        # 1,000,000 Flash input tokens and 100,000 output: 0.14; + 10 % = 0.154.
        event = {
            "id": "h1", "occurred_at": "2026-11-10T10:00:00Z", "job_id": "job-h",
            "agent": "ORACLE", "provider": "openrouter", "model": FLASH,
            "input_tokens": 1_000_000, "output_tokens": 100_000,
        }  # fmt: skip
        batch = await client.post("/v1/events/batch", json={"events": [event]})
        assert batch.json()["accepted"] == 1
        assert (await client.get("/v1/jobs/job-h")).json()["price_usd"] == "0.154"
    await luc_on(
        database_url, "plans", "add-version", "house", "--markup", "0.5",
        "--effective-from", "2026-11-01T00:00:00Z", check=True,
    )  # fmt: skip
    since = ("--since", "2026-11-01T00:00:00Z")
    # Another default plan named in the shell: refused, nothing priced.
    other = await luc_on(database_url, "plans", "reprice", "house", *since, LUC_DEFAULT_PLAN="x")
    assert other.returncode == 1
    assert error_line(other).startswith(
        "LUC_DEFAULT_PLAN: luc serve prices with default plan 'house' (since it started at "
    )
    # None named: the server's. 0.14 × 1.5 = 0.21, 0.056 more.
    done = await luc_on(database_url, "plans", "reprice", "house", *since, check=True)
    assert "changed 1, price delta 0.056 USD; 1 entries appended" in done.stdout
    async with AsyncTestClient(app=create_app(settings_for(database_url))) as client:
        assert (await client.get("/v1/jobs/job-h")).json()["price_usd"] == "0.21"


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_a_refused_start_is_one_json_line_naming_the_setting_not_a_traceback(
    database_url: str, tmp_path: Path, workers: str
) -> None:
    refused = await luc_on(
        database_url,
        "serve",
        LUC_DEFAULT_PLAN="gold",
        LUC_PORT="0",
        LUC_WORKERS=workers,
        LUC_LOG_FORMAT="json",
        LUC_DATA_DIR=str(tmp_path / "luc"),
    )
    assert refused.returncode == 3, refused.stderr[-2000:]
    # A lone process printed Litestar's whole exception group as uvicorn's log message.
    assert "Traceback" not in refused.stderr, refused.stderr[-2000:]
    lines = [json.loads(line) for line in refused.stderr.splitlines()]
    [failed] = [line for line in lines if line["event"] == "startup_failed"]
    assert (failed["level"], failed["error"], failed["detail"]) == (
        "error",
        "SettingsError",
        "LUC_DEFAULT_PLAN: plan 'gold' does not exist; create it first (luc plans create) "
        "or unset LUC_DEFAULT_PLAN",
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--clear", "plan_id", "--plan", "gold"), "--clear plan_id and --plan"),
        (("--email", "b@x.com", "--clear", "email"), "--clear email and --email"),
        (
            ("--clear", "low_balance_usd", "--low-balance-usd", "5"),
            "--clear low_balance_usd and --low-balance-usd",
        ),
    ],
)
async def test_update_refuses_to_clear_a_field_it_is_also_given(
    database_url: str, args: tuple[str, ...], message: str
) -> None:
    await luc_on(
        database_url, "customers", "create", "acme", "--name", "Acme", "--email", "a@x.com",
        check=True,
    )  # fmt: skip
    refused = await luc_on(database_url, "customers", "update", "acme", *args)
    # The clear won and the value given beside it was dropped without a word.
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.splitlines()[-1] == f"Error: {message} contradict each other: give one"
    shown = json.loads((await luc_on(database_url, "customers", "show", "acme", check=True)).stdout)
    assert (shown["email"], shown["plan_id"]) == ("a@x.com", None)  # nothing changed


async def test_a_name_holding_a_tab_or_a_newline_stays_one_field_of_one_row_in_the_lists(
    database_url: str,
) -> None:
    # The lists are tab-separated for scripts: such a name split its row into more fields
    # and lines. Escaped as PostgreSQL's COPY text format writes them.
    name = "Acme\tInc.\nC:\\billing\x07"
    await luc_on(database_url, "customers", "create", "acme", "--name", name, check=True)
    customers = (await luc_on(database_url, "customers", "list", check=True)).stdout
    assert customers.splitlines() == [
        "id\tname\tplan\tinvoicing\temail",
        "acme\tAcme\\tInc.\\nC:\\\\billing\\x07\t-\tper_job\t-",
    ]
    await luc_on(database_url, "plans", "create", "std", "--name", "Std\tplan", "--markup", "0.1")
    plans = (await luc_on(database_url, "plans", "list", check=True)).stdout.splitlines()
    assert plans[1].split("\t")[:3] == ["std", "Std\\tplan", "1"]


async def test_migrate_takes_its_own_default_plan_and_refuses_one_that_does_not_exist(
    database_url: str,
) -> None:
    # A deploy migrates before it restarts the servers: a default plan new to this deploy
    # is not the running servers' yet, and was refused after the schema had moved.
    await luc_on(database_url, "plans", "create", "gold", "--name", "Gold", "--markup", "0.2")
    async with AsyncTestClient(app=create_app(settings_for(database_url))) as client:
        assert (await client.get("/readyz")).status_code == 200  # recorded: no default plan
    done = await luc_on(database_url, "migrate", LUC_DEFAULT_PLAN="gold")
    assert done.returncode == 0, done.stderr[-2000:]
    missing = await luc_on(database_url, "migrate", LUC_DEFAULT_PLAN="ghost")
    assert missing.returncode == 1
    assert error_line(missing).startswith("LUC_DEFAULT_PLAN: plan 'ghost' does not exist")

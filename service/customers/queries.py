"""SQL owned by customers and rate plans (tables ``customers``, ``plans``, ``plan_versions``)."""

_CUSTOMER_COLUMNS = """
id, name, email, address, tax_id, plan_id, invoicing, low_balance_usd, credit_stop,
webhook_url, created_at, updated_at
"""

# A taken id is told apart by the unique violation, not by a look first: two concurrent
# creations of one id cannot both pass.
INSERT_CUSTOMER = f"""
INSERT INTO customers (id, name, email, address, tax_id, plan_id, invoicing,
                       low_balance_usd, credit_stop, webhook_url)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
RETURNING {_CUSTOMER_COLUMNS}
"""

SELECT_CUSTOMER = f"SELECT {_CUSTOMER_COLUMNS} FROM customers WHERE id = $1"
LOCK_CUSTOMER = f"{SELECT_CUSTOMER} FOR UPDATE"

# Keyset pagination on id, like the jobs list.
SELECT_CUSTOMERS = f"""
SELECT {_CUSTOMER_COLUMNS} FROM customers WHERE id > $1 ORDER BY id LIMIT $2
"""

UPDATE_CUSTOMER = f"""
UPDATE customers SET
    name = $2, email = $3, address = $4, tax_id = $5, plan_id = $6, invoicing = $7,
    low_balance_usd = $8, credit_stop = $9, webhook_url = $10, updated_at = now()
WHERE id = $1
RETURNING {_CUSTOMER_COLUMNS}
"""

CUSTOMER_EXISTS = "SELECT EXISTS (SELECT 1 FROM customers WHERE id = $1)"

INSERT_PLAN = "INSERT INTO plans (id, name) VALUES ($1, $2) RETURNING id, name, created_at"

PLAN_EXISTS = "SELECT EXISTS (SELECT 1 FROM plans WHERE id = $1)"

# The default plan ``luc serve`` started with (one row; NULL plan: none), for the commands
# that price entries outside the server (``customers.plans.servers_default_plan``).
RECORD_SERVERS_DEFAULT_PLAN = """
INSERT INTO servers_default_plan (one, plan_id, recorded_at) VALUES (true, $1, now())
ON CONFLICT (one) DO UPDATE SET plan_id = EXCLUDED.plan_id, recorded_at = EXCLUDED.recorded_at
"""
SELECT_SERVERS_DEFAULT_PLAN = "SELECT plan_id, recorded_at FROM servers_default_plan"

INSERT_PLAN_VERSION = """
INSERT INTO plan_versions (plan_id, effective_from, basis, markup, per_request_usd,
                           minimum_monthly_usd, models)
VALUES ($1, $2, $3, $4, $5, $6, $7)
RETURNING id
"""

_PLANS = "SELECT id, name, created_at FROM plans"
SELECT_PLANS = f"{_PLANS} ORDER BY id"
SELECT_PLAN = f"{_PLANS} WHERE id = $1"

_PLAN_VERSIONS = """
SELECT id, plan_id, effective_from, created_at, basis, markup, per_request_usd,
       minimum_monthly_usd, models
FROM plan_versions
"""
SELECT_PLAN_VERSIONS = f"{_PLAN_VERSIONS} ORDER BY plan_id, id"
SELECT_VERSIONS_OF_PLAN = f"{_PLAN_VERSIONS} WHERE plan_id = $1 ORDER BY id"

# What tells a process's copy of the plans that it is stale: versions are immutable and a
# plan is created with its first version, so only more versions change what prices events.
PLAN_STAMP = "SELECT count(*) AS plan_versions, max(id) AS newest_plan_version FROM plan_versions"

"""SQL owned by auth (table ``api_keys``)."""

INSERT_KEY = """
INSERT INTO api_keys (name, scope, prefix, key_hash) VALUES ($1, $2, $3, $4)
RETURNING id, name, scope, prefix, created_at, revoked_at, last_used_at
"""

SELECT_KEY_BY_HASH = """
SELECT id, name, scope, prefix, created_at, revoked_at, last_used_at
FROM api_keys WHERE key_hash = $1
"""

SELECT_KEYS = """
SELECT id, name, scope, prefix, created_at, revoked_at, last_used_at
FROM api_keys ORDER BY id
"""

REVOKE_KEY = """
UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL
RETURNING id
"""

COUNT_ACTIVE_ADMIN_KEYS = (
    "SELECT count(*) FROM api_keys WHERE scope = 'admin' AND revoked_at IS NULL"
)

# One batch of requests, ``$2`` of them per identity ``$1``, counted in the current second of
# PostgreSQL's clock (one clock for every LUC process); each identity's count so far in that
# second comes back.
HIT_RATE_WINDOWS = """
INSERT INTO rate_limit_windows AS w (identity, window_start, requests)
SELECT h.identity, floor(extract(epoch FROM clock_timestamp()))::bigint, h.hits
FROM unnest($1::text[], $2::int[]) AS h(identity, hits)
ON CONFLICT (identity, window_start) DO UPDATE SET requests = w.requests + excluded.requests
RETURNING identity, requests
"""

# Seconds long gone: a few rows per key and second would pile up otherwise.
FORGET_RATE_WINDOWS = """
DELETE FROM rate_limit_windows
WHERE window_start < floor(extract(epoch FROM clock_timestamp()))::bigint - 10
"""

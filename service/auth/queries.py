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

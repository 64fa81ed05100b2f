"""SQL owned by the catalog store (tables ``catalog_versions``, ``catalog_prices``,
``catalog_long_context``)."""

CATALOG_STAMP = """
SELECT count(*) AS versions, max(id) AS newest FROM catalog_versions
"""

SELECT_VERSIONS = """
SELECT id, label, effective_from, created_at, default_model, aliases, parent_id
FROM catalog_versions
ORDER BY id
"""

SELECT_PRICES = """
SELECT version_id, model_id, name, tier, context_tokens,
       input, output, cache_read, cache_write, reasoning, per_request
FROM catalog_prices
ORDER BY version_id, model_id
"""

INSERT_VERSION = """
INSERT INTO catalog_versions (label, effective_from, default_model, aliases, parent_id)
VALUES ($1, $2, $3, $4, $5)
RETURNING id, created_at
"""

INSERT_PRICES = """
INSERT INTO catalog_prices (version_id, model_id, name, tier, context_tokens,
                            input, output, cache_read, cache_write, reasoning, per_request)
SELECT $1, m.*
FROM unnest($2::text[], $3::text[], $4::text[], $5::int[],
            $6::numeric[], $7::numeric[], $8::numeric[], $9::numeric[], $10::numeric[],
            $11::numeric[]) AS m
"""

SELECT_LONG_CONTEXT = """
SELECT version_id, model_id, min_input_tokens, input, output, cache_read, cache_write, reasoning
FROM catalog_long_context
ORDER BY version_id, model_id, min_input_tokens
"""

INSERT_LONG_CONTEXT = """
INSERT INTO catalog_long_context (version_id, model_id, min_input_tokens,
                                  input, output, cache_read, cache_write, reasoning)
SELECT $1, m.*
FROM unnest($2::text[], $3::bigint[], $4::numeric[], $5::numeric[], $6::numeric[],
            $7::numeric[], $8::numeric[]) AS m
"""

COUNT_VERSIONS = "SELECT count(*) FROM catalog_versions"

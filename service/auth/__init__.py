"""API keys and scopes: ``ingest`` (the gateway), ``read`` (finance), ``admin`` (all)."""

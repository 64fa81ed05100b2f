"""Stage 1: wire event → validated ``UsageEvent``; dedupe by id in the database."""

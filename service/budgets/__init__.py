"""Stage 5: budgets, threshold crossings, the alert outbox and webhook delivery."""

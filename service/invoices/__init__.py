"""6. Invoices: a job's live preview, issued immutable invoices, and their renderings."""

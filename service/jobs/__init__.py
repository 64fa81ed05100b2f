"""Jobs' status and invoice metadata (table ``jobs``): what invoices print about a job."""

-- The read-only role Grafana's PostgreSQL datasource logs in with: SELECT on the five
-- rollups the dashboards read and on the customers' id, name and plan (never their
-- contact details), nothing else. Idempotent; run it after LUC has migrated the
-- database (the rollups are LUC's tables):
--
--   psql "$LUC_DATABASE_URL" -v grafana_password='…' -f deploy/grafana-role.sql
--   (compose.yaml runs it as the one-shot `grafana-role` service)
\set ON_ERROR_STOP on

SELECT format('CREATE ROLE luc_grafana LOGIN PASSWORD %L', :'grafana_password')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'luc_grafana') \gexec

-- The password given now, also when the role existed already.
SELECT format('ALTER ROLE luc_grafana PASSWORD %L', :'grafana_password') \gexec

GRANT SELECT ON rollup_jobs, rollup_agent_days, rollup_model_days, rollup_customer_months,
    rollup_reconciliation_days TO luc_grafana;
GRANT SELECT (id, name, plan_id) ON customers TO luc_grafana;

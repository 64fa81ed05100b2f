"""Grafana dashboards for LUC, generated as code by ``grafana.build``."""

"""Customers and rate plans (tables ``customers``, ``plans``, ``plan_versions``)."""

"""Helpers that tests (and bench/) share: waiting on conditions, ports, servers."""

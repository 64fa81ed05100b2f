"""Prometheus: the service's own registry, process instruments, and ledger collectors."""

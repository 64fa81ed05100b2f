"""Benchmarks: each prints figures beside a reference measured in the same run.

``python -m bench.ingest`` (``make bench``) measures batch ingest over HTTP against a raw
``COPY`` of the same rows. ``bench.harness`` holds what every benchmark needs: a scratch
PostgreSQL, a real ``luc serve`` process, CPU meters and the printed table.
"""

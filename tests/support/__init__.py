"""Helpers that tests and bench/ share (tests/conftest.py holds only fixtures):

- ``events``: the one usage event builder (wire form, decoded, validated)
- ``servers``: ``luc serve`` in a child process; ``loopback``: an ASGI app on loopback in
  a thread, for the fakes; ``fake_openrouter``, ``fake_vertex``: the fake upstreams
- ``commands``: the ``luc`` command in a child process
- ``ports``: a free port, a port that refuses connections
- ``databases``: scratch databases, a connection for a block, a database made ready
- ``keys``: an API key made in the database, its ``Authorization`` header
- ``settings``: the settings of a test's in-process app; ``paths``: where things are
- ``ledger_truth``: what the ledger and rollups must hold, worked out by the tests
- ``budgets``: events of a hand-priced cost, a webhook receiver
- ``waiting``: waiting on a condition with a deadline
"""

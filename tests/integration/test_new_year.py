"""The tests whose expectations follow the clock, run again on the next 1 January.

The suite must pass on any day it is cloned: in a later year, on a month's first day, on
1 January. The tests below read "now" (invoice numbers take the year of issue, budgets the
day and month of a call, customers their month to date); run under libfaketime (the
Debian package ``faketime``), a second pytest and the PostgreSQL it starts (LD_PRELOAD and
FAKETIME are inherited) live in the first seconds of next year.

Without libfaketime the test is skipped, saying so; under CI (``CI`` set, as ``.ci/run``
sets it, which installs the package) it fails instead.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.support.paths import PROJECT_ROOT

LIBRARIES = [
    Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"),
    Path("/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1"),
    Path("/usr/lib/faketime/libfaketime.so.1"),
]

# Small files that depend on the year, month and day they run in.
CLOCK_TESTS = [
    "tests/scenarios/test_invoice_race.py",
    "tests/integration/test_monthly_invoices_migration.py",
    "tests/integration/test_budget_measures.py",
    "tests/integration/test_budget_periods_utc.py",
    "tests/integration/test_unpriced_totals.py",
    "tests/integration/test_customers.py",
    "tests/integration/test_ledger_partitions.py",
    "tests/integration/gateway/test_admission_clock.py",
]


def _libfaketime() -> Path:
    found = next((lib for lib in LIBRARIES if lib.exists()), None)
    if found is None:
        reason = "libfaketime is not installed (Debian package faketime): cannot move the clock"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return found


def test_the_tests_that_follow_the_clock_pass_on_the_next_first_of_january() -> None:
    library = _libfaketime()
    new_year = f"{datetime.now(UTC).year + 1}-01-01 00:00:05"
    env = {**os.environ, "LD_PRELOAD": str(library), "FAKETIME": f"@{new_year}"}
    env.pop("LUC_TEST_DATABASE_URL", None)  # a server outside would keep today's clock
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *CLOCK_TESTS],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, f"under FAKETIME=@{new_year}:\n{done.stdout[-6000:]}"
    assert " passed" in done.stdout and " skipped" not in done.stdout.splitlines()[-1]

"""The README reads well to someone who never saw the code: every setting LUC reads is in
its configuration table, and it uses no word from the project's own bookkeeping."""

from __future__ import annotations

import re

from tests.support.paths import PROJECT_ROOT

README = (PROJECT_ROOT / "README.md").read_text()
SETTINGS = (PROJECT_ROOT / "service" / "settings.py").read_text()


def test_every_setting_is_in_the_configuration_table() -> None:
    table = README.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"`(LUC_[A-Z0-9_]+)`", table))
    read = set(re.findall(r'"(LUC_[A-Z0-9_]+)"', SETTINGS))
    assert read - documented == set()


def test_no_internal_words() -> None:
    # Issue numbers, the contract's section marks, the names of who worked on what.
    for pattern in (r"\bissue \d+", r"\bSPEC\b", "§", r"\bhelpers?\b", r"\bH\d+[a-z]?\b"):
        assert not re.search(pattern, README, re.IGNORECASE), pattern

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


def test_every_default_in_the_configuration_table_is_the_one_luc_uses() -> None:
    """A row's default, given as the variable's value, changes nothing: the settings LUC
    builds from it equal those it builds with the variable unset."""
    from service.settings import load_settings

    table = README.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    unset = load_settings({})
    checked = []
    for row in re.findall(r"^\| (`[A-Z].*?) \| (.*?) \| .* \|$", table, re.MULTILINE):
        names = re.findall(r"`([A-Z][A-Z0-9_]+)`", row[0])
        # Literal defaults ("`2` / `10`", "`259200` (72 h)", "unset / `LUC`"), not prose.
        cells = re.sub(r" \(.*\)$", "", row[1]).split(" / ")
        if cells == ["unset"] or not all(re.fullmatch(r"`[^`]*`|unset|derived", c) for c in cells):
            continue
        assert len(cells) == len(names), row
        for name, cell in zip(names, cells, strict=True):
            if cell.startswith("`"):
                assert load_settings({name: cell.strip("`")}) == unset, (name, cell)
                checked.append(name)
    assert {"LUC_PORT", "LUC_MAX_BODY_BYTES", "LUC_GATEWAY_CHAIN"} <= set(checked)
    assert len(checked) > 35

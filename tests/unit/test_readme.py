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


def test_every_route_the_readme_names_is_one_luc_serves() -> None:
    """Each ``METHOD /path`` in the prose and each ``curl`` of the examples (its ``-X``
    method, else POST with a body and GET without) is an operation of LUC's OpenAPI."""
    from service.app import create_app
    from service.settings import load_settings

    settings = load_settings({"LUC_DATABASE_URL": "postgresql://luc@localhost/luc"})
    document = create_app(settings).openapi_schema.to_schema()
    served = [
        # A model id holds a "/" (anthropic/claude-opus-4.6): its parameter is a path.
        (method.upper(), re.sub(r"\{\w+\}", "[^/]+", path.replace("{model_id}", ".+")))
        for path, item in document["paths"].items()
        for method in item
    ]
    named = set(re.findall(r"\b(GET|POST|PATCH|DELETE|PUT) (/v1/[\w/{}.%-]*[\w}])", README))
    for command in re.findall(r"^curl [^\n]*(?:\\\n[^\n]*)*", README, re.MULTILINE):
        path = re.search(r"(?:localhost:8000|\$LUC)(/v1/[^\s'\"?]*)", command)
        if path:
            given = re.search(r"-X (\w+)", command)
            method = given.group(1) if given else ("POST" if " -d " in command else "GET")
            named.add((method, path.group(1)))
    assert len(named) > 40
    unknown = [
        f"{method} {path}"
        for method, path in sorted(named)
        if not any(m == method and re.fullmatch(p, path) for m, p in served)
    ]
    assert unknown == []

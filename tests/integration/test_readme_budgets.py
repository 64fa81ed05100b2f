"""The README's budget example works offline: each of its requests, as written, answers
2xx. Creating the budget needs no DNS (a webhook host is resolved when a budget is saved,
and ``hooks.example.com`` resolves nowhere, least of all offline)."""

from __future__ import annotations

import json
import shlex
from urllib.parse import urlsplit

from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.support.paths import PROJECT_ROOT


def budget_requests() -> list[tuple[str, str, dict[str, object] | None]]:
    """(method, path with query, JSON body) of each curl of the README's first budget block."""
    readme = (PROJECT_ROOT / "README.md").read_text()
    section = readme.split("\n## Budgets and alerts\n", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    commands: list[str] = []
    for line in block.splitlines():
        if line.startswith("curl "):
            commands.append(line)
        elif commands:
            commands[-1] += "\n" + line
    requests = []
    for command in commands:
        words = shlex.split(command)
        method = words[words.index("-X") + 1] if "-X" in words else "GET"
        body = json.loads(words[words.index("-d") + 1]) if "-d" in words else None
        url = urlsplit("http://" + next(w for w in words if w.startswith("localhost:8000/")))
        requests.append((method, url.path + (f"?{url.query}" if url.query else ""), body))
    return requests


async def test_the_readme_budget_example_works_without_dns(
    client: AsyncTestClient[Litestar],
) -> None:
    requests = budget_requests()
    assert [(method, path.split("?")[0]) for method, path, _ in requests] == [
        ("POST", "/v1/budgets"),
        ("GET", "/v1/budgets/check"),
        ("GET", "/v1/alerts"),
        ("PATCH", "/v1/budgets/1"),
    ]
    created = requests[0][2]
    assert created is not None and "webhook_url" not in created
    for method, path, body in requests:
        answer = await client.request(method, path, json=body)
        assert answer.status_code in (200, 201), (method, path, answer.text)
    budget = (await client.get("/v1/budgets/1")).json()
    assert (budget["scope_id"], budget["limit_usd"], budget["hard"]) == ("job-42", "3", True)

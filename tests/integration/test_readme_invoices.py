"""The README's invoice example works as written, in the README's order: its example event,
the customer of "Customers and rate plans", then the invoice block, which names who is
billed before it issues, so the first invoice is addressed to the customer."""

from __future__ import annotations

import json
import re
import shlex
from typing import Any
from urllib.parse import urlsplit

from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.support.paths import PROJECT_ROOT

README = (PROJECT_ROOT / "README.md").read_text()


def block(section: str, after: str = "") -> str:
    """The first ``sh`` block of ``section`` (after the text ``after``)."""
    text = README.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    if after:
        text = text.split(after, 1)[1]
    return text.split("```sh\n", 1)[1].split("```", 1)[0]


def curls(sh: str) -> list[tuple[str, str, Any]]:
    """(method, path with query, JSON body) of each curl of ``sh``: a command goes on over
    a trailing backslash, or while a quote is open."""
    commands: list[list[str]] = []
    pending = ""
    for line in sh.splitlines():
        pending += line.removesuffix("\\") + "\n"
        if line.endswith("\\"):
            continue
        try:
            words = shlex.split(pending, comments=True)
        except ValueError:  # a quote still open: the command goes on
            continue
        pending = ""
        if words and words[0] == "curl":
            commands.append(words)
    requests = []
    for words in commands:
        method = (
            words[words.index("-X") + 1] if "-X" in words else "POST" if "-d" in words else "GET"
        )
        body = json.loads(words[words.index("-d") + 1]) if "-d" in words else None
        target = next(w for w in words if w.startswith(("localhost:8000/", "$LUC/")))
        url = urlsplit("http://" + target.replace("$LUC", "localhost:8000"))
        requests.append((method, url.path + (f"?{url.query}" if url.query else ""), body))
    return requests


async def test_the_readme_invoice_is_addressed_to_the_customer_named_before_it_is_issued(
    client: AsyncTestClient[Litestar],
) -> None:
    (send,) = curls(block("Try it", "Send an event:"))
    customers = curls(block("Customers and rate plans"))
    invoices = curls(block("Invoices"))
    assert [(m, p.split("?")[0]) for m, p, _ in invoices] == [
        ("PATCH", "/v1/customers/acme"),
        ("PATCH", "/v1/jobs/job-42"),
        ("GET", "/v1/jobs/job-42/invoice"),
        ("POST", "/v1/jobs/job-42/invoices"),
        ("GET", "/v1/invoices/LUC-2026-000001"),
        ("GET", "/v1/invoices/LUC-2026-000001"),
    ]
    issued: dict[str, Any] = {}
    for method, path, body in [send, *customers, *invoices]:
        if issued:  # the number the README shows is this year's first
            path = path.replace("LUC-2026-000001", issued["number"])
        answer = await client.request(method, path, json=body)
        assert answer.status_code in (200, 201), (method, path, answer.text)
        if path == "/v1/jobs/job-42/invoices":
            issued = answer.json()
    assert re.fullmatch(r"LUC-\d{4}-000001", issued["number"])
    assert issued["customer"] == {
        "id": "acme",
        "name": "Acme Corp",
        "address": "1 Road Runner Way\nPhoenix, AZ 85001",
        "tax_id": "US-99-1234567",
    }
    assert (issued["title"], issued["reference"]) == ("Q4 study", "PO-7731")
    # The example event at acme's price, the enterprise plan's own Sonnet prices:
    # 102 × 2.40 + 2,048 × 0.24 + 4 × 12 = 784.32 per 1M → 0.00078432 → 0.00
    assert (issued["subtotal_usd"], issued["total_usd"], issued["amount_due_usd"]) == (
        "0.00078432",
        "0.00",
        "0.00",
    )
    assert issued["lines"][0]["pricing"]["method"] == "plan_prices"
    assert issued["lines"][0]["unit_prices"]["input"] == "2.4"

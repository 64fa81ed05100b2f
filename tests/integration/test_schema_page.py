"""``/schema`` is the API reference without internet access: a page rendered on the server
from the OpenAPI document, loading nothing from anywhere (the OpenAPI UIs load their
scripts from a CDN and stay blank offline), open without a key like the document."""

from __future__ import annotations

import re

from litestar import Litestar
from litestar.testing import AsyncTestClient

# What Firefox and Chrome send for a page.
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


async def test_schema_is_a_self_contained_page_of_every_operation(
    client: AsyncTestClient[Litestar],
) -> None:
    del client.headers["Authorization"]  # no key needed, as for the document
    page = await client.get("/schema", headers={"Accept": BROWSER_ACCEPT})
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    html = page.text
    # Nothing to fetch: no script, stylesheet, image or frame from elsewhere.
    assert "<script" not in html
    assert not re.search(r"""\b(src|href)=["']?(https?:)?//""", html), re.findall(
        r"""\b(?:src|href)=["']?[^"' >]+""", html
    )
    assert '<a href="/schema/openapi.json">' in html
    assert '<a href="/schema/swagger">' in html

    document = (await client.get("/schema/openapi.json")).json()
    operations = {
        (method.upper(), path): operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in ("get", "post", "put", "patch", "delete")
    }
    assert ("POST", "/v1/events") in operations
    for (method, path), operation in operations.items():
        section = re.search(
            rf'<section id="{re.escape(operation["operationId"])}">(.*?)</section>', html, re.S
        )
        assert section is not None, (method, path)
        assert f'<span class="method">{method}</span>{path}</code>' in section.group(1)
    # Public probes are not marked as needing a key; the rest are.
    assert '<span class="method">GET</span>/healthz</code></h3>' in html
    assert '<span class="method">POST</span>/v1/events</code> <span class="key">key</span>' in html


async def test_schema_is_the_document_itself_for_a_client_that_does_not_ask_for_html(
    client: AsyncTestClient[Litestar],
) -> None:
    """SPEC §5: "OpenAPI served at ``/schema``". A client reading it there (Accept ``*/*``,
    as httpx, curl and the SDK generators send, or JSON) got the HTML page and could not
    parse it; a browser still gets the page."""
    del client.headers["Authorization"]
    document = (await client.get("/schema/openapi.json")).json()
    for accept in ("*/*", "application/json", "application/vnd.oai.openapi+json"):
        answer = await client.get("/schema", headers={"Accept": accept})
        assert answer.status_code == 200, accept
        assert answer.headers["content-type"].startswith("application/vnd.oai.openapi+json")
        assert answer.json() == document
    assert (await client.get("/schema/", headers={"Accept": "*/*"})).json() == document
    # HTML named, but JSON preferred, or HTML refused (q=0): the document.
    for accept in ("application/json, text/html;q=0.1", "text/html;q=0, application/json"):
        answer = await client.get("/schema", headers={"Accept": accept})
        assert answer.json() == document, accept
    page = await client.get("/schema", headers={"Accept": BROWSER_ACCEPT})
    assert page.headers["content-type"].startswith("text/html")
    # One URL, two bodies: a shared cache keeps them apart by Accept.
    assert page.headers["vary"] == answer.headers["vary"] == "accept"
    # What browsers and code generators add to the document's URLs is taken.
    busted = await client.get("/schema/openapi.json?v=1")
    assert busted.status_code == 200 and busted.json() == document


async def test_swagger_stays_for_those_online(client: AsyncTestClient[Litestar]) -> None:
    swagger = await client.get("/schema/swagger")
    assert swagger.status_code == 200
    assert "swagger-ui" in swagger.text

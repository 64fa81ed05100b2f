"""``/schema`` is the API reference without internet access: a page rendered on the server
from the OpenAPI document, loading nothing from anywhere (the OpenAPI UIs load their
scripts from a CDN and stay blank offline), open without a key like the document."""

from __future__ import annotations

import re

from litestar import Litestar
from litestar.testing import AsyncTestClient


async def test_schema_is_a_self_contained_page_of_every_operation(
    client: AsyncTestClient[Litestar],
) -> None:
    del client.headers["Authorization"]  # no key needed, as for the document
    page = await client.get("/schema")
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


async def test_swagger_stays_for_those_online(client: AsyncTestClient[Litestar]) -> None:
    swagger = await client.get("/schema/swagger")
    assert swagger.status_code == 200
    assert "swagger-ui" in swagger.text

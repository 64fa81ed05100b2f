"""``chain.upstream_client``: the client every caller's upstream calls share keeps no
cookie a provider sets (a CDN's, say) for the next call, whoever makes it."""

from __future__ import annotations

import pytest

from service.gateway.chain import upstream_client
from tests.support.scripted_http import ok, scripted_server

pytestmark = pytest.mark.asyncio


async def test_a_cookie_a_provider_sets_is_not_sent_on_the_next_call() -> None:
    async with scripted_server() as upstream:
        upstream.answer(ok(b"{}", b"set-cookie: __cf_bm=abc; Path=/; HttpOnly"))
        upstream.answer(ok(b"{}"))
        http = upstream_client(timeout_seconds=5)
        try:
            first = await http.post(f"{upstream.url}/chat/completions", content=b"{}")
            second = await http.post(f"{upstream.url}/chat/completions", content=b"{}")
        finally:
            await http.aclose()
    assert first.headers["set-cookie"].startswith("__cf_bm=abc")  # the answer keeps it
    assert second.status_code == 200
    assert b"cookie" not in upstream.seen[1].head.lower()
    assert len(http.cookies) == 0

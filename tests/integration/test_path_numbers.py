"""A number in a path is read only as LUC writes one: Python's ``int()``, which Litestar
used, took ``1_1`` as 11, so ``DELETE /v1/keys/1_1`` revoked key 11, and ``+1``, `` 1``,
``001`` or Arabic-Indic digits named other records than the client wrote."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest


@pytest.mark.parametrize("written", ["1_1", "+11", "011", "%2011", "%D9%A1%D9%A1"])
async def test_a_number_written_otherwise_names_no_record_and_revokes_nothing(
    server_factory: Callable[..., Any], written: str
) -> None:
    server = server_factory()
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        for n in range(11):
            made = await http.post("/v1/keys", json={"scope": "read", "name": f"k{n}"})
            assert made.status_code == 201, made.text
        keys = (await http.get("/v1/keys")).json()["items"]
        assert 11 in [k["id"] for k in keys]

        refused = await http.delete(f"/v1/keys/{written}")
        assert refused.status_code == 400, refused.text
        assert refused.json()["detail"].startswith("key_id: ")
        assert "is not a number as LUC writes one" in refused.json()["detail"]
        after = {k["id"]: k for k in (await http.get("/v1/keys")).json()["items"]}
        assert after[11]["revoked_at"] is None

        # The same number written plainly does what it says.
        assert (await http.delete("/v1/keys/11")).status_code == 204
        assert (await http.get("/v1/catalog/versions/1")).status_code == 200
        version = await http.get(f"/v1/catalog/versions/{written.replace('11', '1')}")
        assert version.status_code == 400, version.text

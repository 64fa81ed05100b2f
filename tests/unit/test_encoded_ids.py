"""The path LUC routes on keeps an encoded "/" (and "%") inside its segment; the path
parameter read back is the id the client encoded."""

from __future__ import annotations

from decimal import Decimal
from urllib.parse import quote

import pytest

from service.api.encoded_ids import routed_path, unescape
from service.customers.credits import CreditStop


@pytest.mark.parametrize(
    ("raw", "routed"),
    [
        (b"/v1/jobs/team%2Fa/entries", "/v1/jobs/team%2Fa/entries"),
        (b"/v1/jobs/team%2fa", "/v1/jobs/team%2Fa"),
        (b"/v1/jobs/50%25", "/v1/jobs/50%25"),
        (b"/v1/jobs/a%252Fb", "/v1/jobs/a%252Fb"),
        (b"/v1/jobs/a%20b%2Bc%3F%23", "/v1/jobs/a b+c?#"),
        (b"/v1/jobs/%C3%BC", "/v1/jobs/\u00fc"),
        (b"/v1/jobs/50%", "/v1/jobs/50%25"),  # a stray "%" is the character itself
    ],
)
def test_a_segment_is_decoded_except_its_slashes_and_percent_signs(raw: bytes, routed: str) -> None:
    assert routed_path(raw) == routed


@pytest.mark.parametrize("job_id", ["team/a", "a%2Fb", "50%", "%25/%2F", "a b+c?#", "ünï/cödé"])
def test_the_parameter_read_back_is_the_id_the_client_encoded(job_id: str) -> None:
    routed = routed_path(f"/v1/jobs/{quote(job_id, safe='')}/entries".encode())
    segments = routed.split("/")
    assert len(segments) == 5
    assert unescape(segments[3]) == job_id


def test_messages_write_ids_into_paths_percent_encoded() -> None:
    # A message that tells the client which route to call writes the id as the route reads it.
    stop = CreditStop(customer_id="team/a b", balance_usd=Decimal(0))
    assert stop.reason.endswith("(POST /v1/customers/team%2Fa%20b/credits)")

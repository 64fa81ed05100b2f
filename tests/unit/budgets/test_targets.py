"""Webhook targets (SPEC §9): an address that is, or carries, a loopback or private one is
refused; every DNS answer is checked; the answers checked are the ones kept to connect to.

Pure: the resolver is a function handed in, so no name here touches real DNS.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import pytest

from service.budgets.targets import (
    Resolver,
    check_target,
    embedded_ipv4,
    is_internal,
    resolve_target,
    system_resolver,
)
from service.errors import InvalidRequestError

ANY_PUBLIC = ("*",)

# (form, address, refused?) — the IPv4 each form carries is worked out by hand.
ADDRESS_FORMS: list[tuple[str, str, bool]] = [
    ("public IPv4", "93.184.216.34", False),
    ("public IPv6", "2606:4700:4700::1111", False),
    ("loopback IPv4", "127.0.0.1", True),
    ("loopback IPv6", "::1", True),
    ("RFC 1918", "10.1.2.3", True),
    ("CGNAT", "100.64.0.1", True),
    ("link-local (cloud metadata)", "169.254.169.254", True),
    ("IPv6 unique local", "fd00::1", True),
    ("IPv6 link-local", "fe80::1", True),
    ("IPv6 site-local (deprecated, still internal)", "fec0::1", True),
    ("unspecified", "0.0.0.0", True),
    # 6to4: 2002:WWXX:YYZZ::/48 carries W.X.Y.Z.
    ("6to4 of 127.0.0.1", "2002:7f00:1::", True),
    ("6to4 of 10.0.0.1", "2002:a00:1::1", True),
    ("6to4 of 169.254.169.254", "2002:a9fe:a9fe::", True),
    ("6to4 of 93.184.216.34", "2002:5db8:d822::1", False),
    # NAT64 well-known prefix: the last 32 bits.
    ("NAT64 of 127.0.0.1", "64:ff9b::7f00:1", True),
    ("NAT64 of 192.168.1.1", "64:ff9b::c0a8:101", True),
    ("NAT64 of 93.184.216.34", "64:ff9b::5db8:d822", False),
    # NAT64 local-use prefix: one operator's own network, whatever it carries.
    ("NAT64 local-use of 93.184.216.34", "64:ff9b:1::5db8:d822", True),
    # IPv4-mapped and IPv4-compatible: the last 32 bits.
    ("IPv4-mapped 127.0.0.1", "::ffff:127.0.0.1", True),
    ("IPv4-mapped 10.0.0.1", "::ffff:a00:1", True),
    ("IPv4-mapped 93.184.216.34", "::ffff:93.184.216.34", False),
    ("IPv4-compatible 127.0.0.1", "::127.0.0.1", True),
    ("IPv4-compatible 10.0.0.1", "::10.0.0.1", True),
    # Teredo: 2001:0:SSSS:SSSS:flags:port:CCCC:CCCC, client = ~CCCC:CCCC.
    # ~7f00:0001 = 80ff:fffe; ~0a00:0001 = f5ff:fffe.
    ("Teredo, client 127.0.0.1", "2001:0:4136:e378:8000:63bf:80ff:fffe", True),
    ("Teredo, client 10.0.0.1", "2001:0:4136:e378:8000:63bf:f5ff:fffe", True),
    ("Teredo, server 127.0.0.1", "2001:0:7f00:1:8000:63bf:a2d8:2bcb", True),
]


@pytest.mark.parametrize(
    ("form", "address", "refused"), ADDRESS_FORMS, ids=[f for f, _, _ in ADDRESS_FORMS]
)
def test_an_address_is_refused_when_it_is_or_carries_an_internal_one(
    form: str, address: str, refused: bool
) -> None:
    assert is_internal(ipaddress.ip_address(address)) is refused


def test_the_carried_ipv4_is_read_from_each_form() -> None:
    def carried(address: str) -> list[str]:
        return [str(a) for a in embedded_ipv4(ipaddress.IPv6Address(address))]

    assert carried("2002:7f00:1::") == ["127.0.0.1"]
    assert carried("64:ff9b::7f00:1") == ["127.0.0.1"]
    assert carried("::ffff:127.0.0.1") == ["127.0.0.1"]
    assert carried("::10.0.0.1") == ["10.0.0.1"]
    # Teredo: the server, then the client (its bits inverted back).
    assert carried("2001:0:4136:e378:8000:63bf:80ff:fffe") == ["65.54.227.120", "127.0.0.1"]
    assert carried("2606:4700:4700::1111") == []


@pytest.mark.parametrize(
    ("form", "address", "refused"), ADDRESS_FORMS, ids=[f for f, _, _ in ADDRESS_FORMS]
)
async def test_a_url_with_the_address_as_its_host_is_refused_the_same(
    form: str, address: str, refused: bool
) -> None:
    host = f"[{address}]" if ":" in address else address
    url = f"https://{host}/hook"

    async def no_dns(host: str, port: int) -> list[str]:
        raise AssertionError("an address literal needs no DNS")

    if refused:
        with pytest.raises(InvalidRequestError, match="webhook_url"):
            await resolve_target(url, ANY_PUBLIC, no_dns)
    else:
        target = await resolve_target(url, ANY_PUBLIC, no_dns)
        assert target.addresses == (ipaddress.ip_address(address),)


def _answers(*addresses: str) -> tuple[list[tuple[str, int]], Resolver]:
    asked: list[tuple[str, int]] = []

    async def resolve(host: str, port: int) -> Sequence[str]:
        asked.append((host, port))
        return list(addresses)

    return asked, resolve


async def test_every_dns_answer_is_checked_not_only_the_first() -> None:
    asked, resolve = _answers("93.184.216.34", "2002:a00:1::1")
    with pytest.raises(InvalidRequestError, match=r"resolves to 2002:a00:1::1"):
        await resolve_target("https://hooks.example.com/x", ANY_PUBLIC, resolve)
    assert asked == [("hooks.example.com", 443)]


async def test_the_checked_answers_are_kept_in_order_to_connect_to() -> None:
    asked, resolve = _answers("93.184.216.34", "2606:4700:4700::1111")
    target = await resolve_target("http://hooks.example.com:8080/x", ANY_PUBLIC, resolve)
    assert asked == [("hooks.example.com", 8080)]
    assert (target.host, target.port) == ("hooks.example.com", 8080)
    assert [str(a) for a in target.addresses] == ["93.184.216.34", "2606:4700:4700::1111"]


async def test_a_host_listed_by_name_may_resolve_to_a_private_address() -> None:
    asked, resolve = _answers("10.0.0.7")
    target = await resolve_target("http://hooks.internal/x", ("hooks.internal",), resolve)
    assert [str(a) for a in target.addresses] == ["10.0.0.7"]
    # Listing one name opens no other: an unlisted one is refused before any DNS.
    with pytest.raises(InvalidRequestError, match="not in LUC_WEBHOOK_ALLOWED_HOSTS"):
        await resolve_target("http://other.internal/x", ("hooks.internal",), resolve)
    assert asked == [("hooks.internal", 80)]


async def test_a_name_with_no_address_is_refused() -> None:
    _, resolve = _answers()
    with pytest.raises(InvalidRequestError, match="resolves to no address"):
        await resolve_target("http://hooks.example.com/x", ANY_PUBLIC, resolve)


# (case, host, the reason named) — names the system resolver refuses with a UnicodeError.
BAD_NAMES: list[tuple[str, str, str]] = [
    ("a label of 64 characters", "a" * 64 + ".com", "a label of 64 characters"),
    ("two dots in a row", "a..b.com", "an empty label"),
    ("a leading dot", ".example.com", "an empty label"),
    ("a name of 255 characters", ".".join(["a" * 62] * 4) + ".com", "255 characters"),
    ("a label that grows past 63 in IDNA", "ü" * 60 + ".de", "internationalised"),
]


@pytest.mark.parametrize(("case", "host", "reason"), BAD_NAMES, ids=[c for c, _, _ in BAD_NAMES])
async def test_a_host_that_is_no_dns_name_is_refused_with_its_reason(
    case: str, host: str, reason: str
) -> None:
    url = f"https://{host}/x"
    with pytest.raises(InvalidRequestError, match=f"webhook_url: host .* {reason}"):
        await check_target(url, ANY_PUBLIC, system_resolver)
    # Listed under a wildcard, the name would be saved unresolved: refused all the same,
    # and at delivery too.
    with pytest.raises(InvalidRequestError, match=reason):
        await check_target(url, ("*.com", "*.de"), system_resolver)
    with pytest.raises(InvalidRequestError, match=reason):
        await resolve_target(url, ("*.com", "*.de"), system_resolver)


async def test_a_fully_qualified_name_with_its_trailing_dot_is_a_good_name() -> None:
    _, resolve = _answers("93.184.216.34")
    target = await resolve_target("https://hooks.example.com./x", ANY_PUBLIC, resolve)
    assert [str(a) for a in target.addresses] == ["93.184.216.34"]


@pytest.mark.parametrize("failure", [UnicodeError("label too long"), ValueError("bad answer")])
async def test_a_resolver_failing_otherwise_than_with_os_error_is_a_refusal(
    failure: Exception,
) -> None:
    async def resolve(host: str, port: int) -> Sequence[str]:
        raise failure

    with pytest.raises(InvalidRequestError, match=r"cannot resolve 'hooks.example.com'"):
        await resolve_target("https://hooks.example.com/x", ANY_PUBLIC, resolve)


async def test_an_answer_that_is_no_address_is_a_refusal() -> None:
    _, resolve = _answers("not-an-address")
    with pytest.raises(InvalidRequestError, match="cannot resolve"):
        await resolve_target("https://hooks.example.com/x", ANY_PUBLIC, resolve)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        (
            "http://hooks.internal:8991/a\r\nX-Injected: 1",
            "holds the control character '\\r' at position 28; percent-encode it",
        ),
        ("http://hooks.internal/a\tb", "holds the control character '\\t' at position 23"),
        ("http://hooks.internal:0/x", "port 0 is no port a server listens on"),
    ],
)
async def test_a_url_no_delivery_could_use_is_refused_when_saved(url: str, reason: str) -> None:
    """Saved with 201 (the host listed, so not resolved), then every alert to it went dead:
    the HTTP client refuses a control character, and nothing listens on port 0."""
    with pytest.raises(InvalidRequestError) as refused:
        await check_target(url, ("hooks.internal",), system_resolver)
    assert refused.value.message.startswith("webhook_url: ")
    assert reason in refused.value.message

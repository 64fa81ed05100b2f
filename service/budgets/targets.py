"""Which webhook URLs LUC may call, and at which address: checked once, connected to as checked.

A budget's webhook could otherwise make LUC reach into its own network (SSRF): cloud
metadata at 169.254.169.254, a database on 10.x, the service itself on 127.0.0.1. The URL
is checked when the budget is saved, and again before every delivery: the host is resolved
once, every answer is checked, and the delivery connects to a checked address (never to a
second DNS answer, which a rebinding name could point anywhere).

An IPv6 address can carry an IPv4 one that a tunnel or translator delivers to: 6to4
(2002::/16), NAT64 (64:ff9b::/96, and the local-use 64:ff9b:1::/48), IPv4-mapped
(::ffff:0:0/96), IPv4-compatible (::/96) and Teredo (2001::/32, the client's IPv4
obfuscated in the last 32 bits). Such an address is judged by the IPv4 it carries too.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from service.customers.service import MAX_URL_CHARS
from service.errors import InvalidRequestError
from service.settings import BudgetSettings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
"""``(host, port)`` → the addresses the name has now, as text. Injected in tests."""

# CGNAT (100.64/10) is not "private" to the ipaddress module but is no public target either.
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
# NAT64 prefixes (RFC 6052, RFC 8215): the last 32 bits are the IPv4 destination. The
# local-use /48 belongs to one operator's network by definition: never a public target.
_NAT64_WELL_KNOWN = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL_USE = ipaddress.ip_network("64:ff9b:1::/48")
# IPv4-compatible (RFC 4291, deprecated): ::a.b.c.d. (:: and ::1 are in it too, and are
# refused on their own account.)
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


def embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries, for each form that delivers to them."""
    carried: list[ipaddress.IPv4Address] = []
    if address.ipv4_mapped is not None:
        carried.append(address.ipv4_mapped)
    if address.sixtofour is not None:
        carried.append(address.sixtofour)
    if address.teredo is not None:
        carried.extend(address.teredo)  # (server, client), the client de-obfuscated
    if address in _NAT64_WELL_KNOWN or address in _IPV4_COMPATIBLE:
        carried.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return carried


def is_internal(address: IPAddress) -> bool:
    """Is ``address`` loopback, private, link-local or otherwise no public target, itself
    or through the IPv4 address it carries?"""
    if isinstance(address, ipaddress.IPv6Address):
        # Site-local fec0::/10: deprecated (RFC 3879) but still routed inside the networks
        # that use it, and the ipaddress module counts it neither private nor reserved.
        if address in _NAT64_LOCAL_USE or address.is_site_local:
            return True
        if any(is_internal(carried) for carried in embedded_ipv4(address)):
            return True
        if address.ipv4_mapped is not None or address in _NAT64_WELL_KNOWN:
            # Pure translations of a public IPv4 address (the ipaddress module calls
            # these prefixes "reserved", which says nothing about the destination).
            return False
    return (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or (isinstance(address, ipaddress.IPv4Address) and address in _CGNAT)
    )


def _listed(host: str, allowed: tuple[str, ...]) -> bool:
    host = host.lower().rstrip(".")
    for entry in allowed:
        entry = entry.lower().rstrip(".")
        if entry == host or (entry.startswith("*.") and host.endswith(entry[1:])):
            return True
    return False


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


MAX_LABEL = 63
MAX_NAME = 253


def host_name_problem(host: str) -> str | None:
    """Why ``host`` (not an IP literal) is no DNS name, or ``None``: checked here because
    the resolver refuses such a name with a ``UnicodeError`` (IDNA), not an ``OSError``."""
    name = host[:-1] if host.endswith(".") else host  # one trailing dot: fully qualified
    if len(name) > MAX_NAME:
        return f"is {len(name)} characters long, beyond DNS's {MAX_NAME}"
    for label in name.split("."):
        if not label:
            return "has an empty label (two dots in a row, or a leading dot)"
        if len(label) > MAX_LABEL:
            return f"has a label of {len(label)} characters, beyond DNS's {MAX_LABEL}"
    try:
        name.encode("idna")
    except UnicodeError as exc:
        return f"is not a valid internationalised name ({exc})"
    return None


def parse_target(url: str, allowed_hosts: tuple[str, ...]) -> tuple[str, int]:
    """Check a webhook URL's form and allow-list; return its host and port."""
    if len(url) > MAX_URL_CHARS:  # as a customer's webhook_url
        raise InvalidRequestError(
            f"webhook_url: must be at most {MAX_URL_CHARS} characters, got {len(url)}"
        )
    # urlsplit keeps them, and the HTTP client refused the URL at every delivery: saved,
    # then dead. (A CR or LF here could never reach a request: the client refuses it.)
    if (control := next((c for c in url if c < " " or c == "\x7f"), None)) is not None:
        raise InvalidRequestError(
            f"webhook_url: holds the control character {control!r} at position "
            f"{url.index(control)}; percent-encode it"
        )
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidRequestError(f"webhook_url: {url!r} is not a valid URL ({exc})") from None
    if port == 0:
        raise InvalidRequestError("webhook_url: port 0 is no port a server listens on")
    if parts.scheme not in ("http", "https"):
        raise InvalidRequestError(
            f"webhook_url: scheme must be http or https, not {parts.scheme!r}"
        )
    host = parts.hostname
    if not host:
        raise InvalidRequestError(f"webhook_url: {url!r} has no host")
    if parts.username or parts.password:
        raise InvalidRequestError("webhook_url: credentials in the URL are not allowed")
    listed = _listed(host, allowed_hosts)
    if "*" not in allowed_hosts and not listed:
        raise InvalidRequestError(f"webhook_url: host {host!r} is not in LUC_WEBHOOK_ALLOWED_HOSTS")
    literal = _literal(host)
    if literal is None and (problem := host_name_problem(host)) is not None:
        raise InvalidRequestError(f"webhook_url: host {host!r} {problem}")
    if literal is not None and is_internal(literal) and not listed:
        raise InvalidRequestError(
            f"webhook_url: {host} is a private, loopback or link-local address (or carries "
            "one); list it in LUC_WEBHOOK_ALLOWED_HOSTS to allow it"
        )
    if host.lower().rstrip(".") in ("localhost", "localhost.localdomain") and not listed:
        raise InvalidRequestError(
            "webhook_url: localhost is refused; list it in LUC_WEBHOOK_ALLOWED_HOSTS to allow it"
        )
    return host, port or (443 if parts.scheme == "https" else 80)


async def system_resolver(host: str, port: int) -> list[str]:
    """The operating system's answer for ``host``, each address once, in its order."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True)
class Target:
    """A webhook URL checked as a whole: the addresses to connect to, and only those."""

    url: str
    host: str
    """As in the URL (lower-cased by ``urlsplit``): the Host header and the TLS name."""
    port: int
    addresses: tuple[IPAddress, ...]
    """Every address the host had when checked, in the resolver's order; all allowed."""


async def resolve_target(
    url: str, allowed_hosts: tuple[str, ...], resolve: Resolver = system_resolver
) -> Target:
    """Check ``url`` and resolve its host once; every answer must be public unless the host
    is listed in the allow-list. Raises ``InvalidRequestError`` naming the problem."""
    host, port = parse_target(url, allowed_hosts)
    literal = _literal(host)
    if literal is not None:
        return Target(url, host, port, (literal,))
    try:
        answers = await resolve(host, port)
        addresses = tuple(ipaddress.ip_address(answer) for answer in answers)
    except (OSError, UnicodeError, ValueError) as exc:
        # OSError: no such name, no DNS; UnicodeError: a name IDNA refuses (parse_target
        # checks labels first); ValueError: an answer that is no address.
        raise InvalidRequestError(f"webhook_url: cannot resolve {host!r} ({exc})") from None
    if not addresses:
        raise InvalidRequestError(f"webhook_url: {host!r} resolves to no address")
    if not _listed(host, allowed_hosts):
        for address in addresses:
            if is_internal(address):
                raise InvalidRequestError(
                    f"webhook_url: {host!r} resolves to {address}, a private or loopback "
                    "address (or one that carries it); list the host in "
                    "LUC_WEBHOOK_ALLOWED_HOSTS to allow it"
                )
    return Target(url, host, port, addresses)


async def check_target(
    url: str, allowed_hosts: tuple[str, ...], resolve: Resolver = system_resolver
) -> None:
    """The check when a webhook is saved: ``resolve_target``, except that a host listed by
    name need not resolve yet (every delivery resolves it again)."""
    host, _ = parse_target(url, allowed_hosts)
    if not _listed(host, allowed_hosts):
        await resolve_target(url, allowed_hosts, resolve)


async def check_credit_alert_target(
    url: str, settings: BudgetSettings, resolve: Resolver = system_resolver
) -> None:
    """The check when a customer's ``webhook_url`` is saved. Its credit alerts have no
    secret of their own (a budget's may: ``webhook_secret``): they are signed with
    ``LUC_WEBHOOK_SECRET`` or not sent at all, so while it is unset every delivery would
    fail until the alert died, unseen by the customer."""
    if settings.webhook_secret is None:
        raise InvalidRequestError(
            "webhook_url: a customer's credit alerts are signed with LUC_WEBHOOK_SECRET, "
            "which is not set, so none could be delivered; set it (and restart LUC) before "
            "giving a customer a webhook_url. Without one its alerts are still listed by "
            "GET /v1/alerts"
        )
    await check_target(url, settings.allowed_hosts, resolve)

"""Which webhook URLs LUC may call: http(s) only, and no private address unless listed.

A budget's webhook could otherwise make LUC reach into its own network (SSRF): cloud
metadata at 169.254.169.254, a database on 10.x, the service itself on 127.0.0.1. The
host is checked when the budget is saved and its addresses again before every delivery,
so a DNS answer that changes later (rebinding) is caught too.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from service.errors import InvalidRequestError

# CGNAT (100.64/10) is not "private" to the ipaddress module but is no public target either.
_CGNAT = ipaddress.ip_network("100.64.0.0/10")


def _is_internal(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return _is_internal(address.ipv4_mapped)
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


def parse_target(url: str, allowed_hosts: tuple[str, ...]) -> tuple[str, int]:
    """Check a webhook URL's form and allow-list; return its host and port."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidRequestError(f"webhook_url: {url!r} is not a valid URL ({exc})") from None
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
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None and _is_internal(literal) and not listed:
        raise InvalidRequestError(
            f"webhook_url: {host} is a private, loopback or link-local address; "
            "list it in LUC_WEBHOOK_ALLOWED_HOSTS to allow it"
        )
    if host.lower() in ("localhost", "localhost.localdomain") and not listed:
        raise InvalidRequestError(
            "webhook_url: localhost is refused; list it in LUC_WEBHOOK_ALLOWED_HOSTS to allow it"
        )
    return host, port or (443 if parts.scheme == "https" else 80)


async def check_target(url: str, allowed_hosts: tuple[str, ...]) -> None:
    """``parse_target`` plus DNS: every address the host resolves to must be public,
    unless the host is listed by name."""
    host, port = parse_target(url, allowed_hosts)
    if _listed(host, allowed_hosts):
        return
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise InvalidRequestError(f"webhook_url: cannot resolve {host!r} ({exc})") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if _is_internal(address):
            raise InvalidRequestError(
                f"webhook_url: {host!r} resolves to {address}, a private or loopback address; "
                "list the host in LUC_WEBHOOK_ALLOWED_HOSTS to allow it"
            )

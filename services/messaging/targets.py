"""Where outbound webhooks may go. A shop names the URL, so without a check a subscription could make
Laoke POST into its own network (SSRF: the cloud metadata address, an admin port on loopback, a
database). In production only public addresses are allowed: checked when the subscription is made (an
address literal) and again before every delivery, on the addresses the host name resolves to then (so a
name that later resolves inward is caught too)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit


class PrivateTarget(ValueError):
    pass


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def check_url(url: str) -> None:
    """Refuse a URL whose host is a non-public address literal (names are checked at delivery)."""
    host = urlsplit(url).hostname
    if host is None:
        raise PrivateTarget("the URL has no host")
    if host == "localhost" or host.endswith(".localhost"):
        raise PrivateTarget(f"{host} is this machine: webhooks go to public addresses only")
    try:
        public = _public(host)
    except ValueError:
        return  # a name: resolved and checked before each delivery
    if not public:
        raise PrivateTarget(f"{host} is not a public address: webhooks go to public addresses only")


async def check_resolved(url: str) -> None:
    """Refuse a delivery whose host resolves, now, to any non-public address."""
    check_url(url)
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        found = await asyncio.get_running_loop().getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise PrivateTarget(f"{parts.hostname} does not resolve: {exc}") from exc
    inward = sorted({str(info[4][0]) for info in found if not _public(str(info[4][0]))})
    if inward:
        raise PrivateTarget(f"{parts.hostname} resolves to {', '.join(inward)}: not a public address")

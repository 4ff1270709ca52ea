"""The client's address, as rate limits and locks count it.

The peer of the connection is the client, unless it is one of the trusted proxies
(``TOPUP_TRUSTED_PROXIES``: addresses or networks, empty by default, so that nobody's
``X-Forwarded-For`` is believed); then the client is the last address of ``X-Forwarded-For``
that is not itself a trusted proxy (each proxy appends the peer it saw, so that entry was
written by a proxy we trust). An IPv6 client is counted by its /64 network: one subscriber's
line usually holds a whole /64, and rotating addresses in it must not escape the limits."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from starlette.requests import Request

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPV6_CLIENT_PREFIX_BITS = 64
FORWARDED_ENTRIES_MAX = 20  # entries of X-Forwarded-For looked at, from the right
ADDRESS_LENGTH_MAX = 64


def _is_trusted(address: str, trusted: Sequence[IpNetwork]) -> bool:
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(parsed in network for network in trusted)


def forwarded_client(peer: str, forwarded_for: Iterable[str], trusted: Sequence[IpNetwork]) -> str:
    """The client's address, given the peer and the ``X-Forwarded-For`` headers (in order)."""
    if not trusted or not _is_trusted(peer, trusted):
        return peer
    entries = [entry.strip() for value in forwarded_for for entry in value.split(",")]
    entries = [entry for entry in entries if entry][-FORWARDED_ENTRIES_MAX:]
    for entry in reversed(entries):
        if not _is_trusted(entry, trusted):
            return entry[:ADDRESS_LENGTH_MAX]
    return entries[0] if entries else peer


def counted_address(address: str) -> str:
    """What limits count: an IPv4 address itself (also when IPv4-mapped), an IPv6 address's /64."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address[:ADDRESS_LENGTH_MAX]
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.ip_network(f"{parsed}/{IPV6_CLIENT_PREFIX_BITS}", strict=False))
    return str(parsed)


def client_address(request: Request) -> str:
    """The client as limits and the sign-in lock count it (see the module's docstring)."""
    peer = request.client.host if request.client is not None else "unknown"
    trusted: Sequence[IpNetwork] = getattr(request.app.state, "trusted_proxies", ())
    forwarded = request.headers.getlist("x-forwarded-for") if trusted else []
    return counted_address(forwarded_client(peer, forwarded, trusted))

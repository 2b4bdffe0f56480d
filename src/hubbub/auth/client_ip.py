"""Which address a request comes from, honouring X-Forwarded-For only from trusted proxies."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedProxies:
    def __init__(self, entries: Iterable[str]) -> None:
        self._networks: tuple[_Network, ...] = tuple(
            ipaddress.ip_network(entry, strict=False) for entry in entries
        )

    def __contains__(self, address: str) -> bool:
        if not self._networks:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self._networks)


def client_ip(remote: str | None, forwarded_for: str | None, trusted: TrustedProxies) -> str:
    """The socket peer, unless it is a trusted proxy: then the nearest untrusted hop it names.

    X-Forwarded-For is appended to by each proxy, so walking it right to left and skipping
    our own proxies finds the first address nobody we trust vouches for.
    """
    peer = remote or "unknown"
    if not forwarded_for or peer not in trusted:
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        if hop not in trusted:
            return hop
    return hops[0] if hops else peer

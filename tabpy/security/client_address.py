"""The address a request came from, believing forwarded headers only from trusted proxies.

Failed-login limits are kept per client address, so the address must be one the client cannot
choose. The TCP peer is such an address. ``X-Forwarded-For`` and ``Forwarded`` are not: any
client can send them. They are read only when the peer is one of ``TABPY_TRUSTED_PROXIES``
(addresses or networks; none by default), and then from the right, where each proxy appends
the address it received the request from: the first hop that is not itself a trusted proxy is
the client. Hops further left were written by that client and are ignored.

``X-Forwarded-For`` is used when present, else ``Forwarded`` (RFC 7239 ``for=``). A proxy that
writes only ``Forwarded`` must therefore remove any ``X-Forwarded-For`` its clients send.

Pure: no I/O; the HTTP adapter passes the peer and the header values in.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from tabpy.security.log_text import printable

__all__ = ["TrustedProxies", "parse_network"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Longest hop kept when it is not an IP address (``unknown``, an obfuscated identifier).
_MAX_HOP = 64


def parse_network(text: str) -> Network:
    """An address (``10.0.0.5``) or network (``10.0.0.0/8``); raises ``ValueError``."""
    return ipaddress.ip_network(text.strip(), strict=False)


class TrustedProxies:
    def __init__(self, networks: Iterable[str | Network] = ()) -> None:
        self.networks = tuple(
            network if not isinstance(network, str) else parse_network(network)
            for network in networks
        )

    def __bool__(self) -> bool:
        return bool(self.networks)

    def trusts(self, address: str) -> bool:
        ip = _ip(address)
        return ip is not None and any(ip in network for network in self.networks)

    def client(
        self, peer: str, forwarded_for: Sequence[str] = (), forwarded: Sequence[str] = ()
    ) -> str:
        """The client's address, given the TCP ``peer`` and every value of each header."""
        if not self.trusts(peer):
            return peer
        hops = _x_forwarded_for(forwarded_for) if forwarded_for else _forwarded(forwarded)
        for hop in reversed(hops):
            if not self.trusts(hop):
                return _normalise(hop)
        # Every hop is a trusted proxy (or there are none): the leftmost is the best we know.
        return _normalise(hops[0]) if hops else peer


def _x_forwarded_for(values: Sequence[str]) -> list[str]:
    return [hop for value in values for hop in (part.strip() for part in value.split(",")) if hop]


def _forwarded(values: Sequence[str]) -> list[str]:
    """The ``for=`` value of every element, in order (elements without one are skipped)."""
    hops = []
    for value in values:
        for element in value.split(","):
            for pair in element.split(";"):
                name, _, text = pair.partition("=")
                if name.strip().lower() == "for" and text.strip():
                    hops.append(text.strip().strip('"'))
    return hops


def _ip(text: str) -> Address | None:
    """``text`` as an IP address, accepting ``[v6]``, ``host:port`` and IPv4-mapped IPv6."""
    text = text.strip()
    if text.startswith("["):  # [2001:db8::1] or [2001:db8::1]:4711
        text = text[1 : text.find("]")] if "]" in text else text[1:]
    elif text.count(":") == 1:  # 192.0.2.1:4711
        text = text.partition(":")[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _normalise(hop: str) -> str:
    ip = _ip(hop)
    return str(ip) if ip is not None else printable(hop, _MAX_HOP)

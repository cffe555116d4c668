"""Destinations the operator vouches for (`CHORUS_WEBHOOK_ALLOWLIST`,
`CHORUS_PEER_URL_ALLOWLIST`): parsed once from settings, consulted by the network guard
(observe/netguard.py) before any connection. Pure: no I/O.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Allowlist:
    """Destinations the operator vouches for: hostnames (exact, case-insensitive, trailing dot
    ignored) and IP networks. Empty admits nothing."""

    hosts: frozenset[str] = frozenset()
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, text: str | None) -> Allowlist:
        """Entries separated by commas and/or whitespace: a hostname, a CIDR network or a bare
        IP (one address). A bad entry raises ValueError naming it."""
        hosts, networks = set(), []
        for entry in (text or "").replace(",", " ").split():
            try:
                networks.append(ipaddress.ip_network(entry))
            except ValueError as exc:
                if not _is_hostname(entry):
                    raise ValueError(f"allowlist entry {entry!r} is not a hostname or IP network ({exc})") from None
                hosts.add(_normal_host(entry))
        return cls(frozenset(hosts), tuple(networks))

    def admits(self, host: str, ip: IPAddress) -> bool:
        """The hostname is listed, or the address (an IPv4-mapped one as IPv4) is in a listed network."""
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        return _normal_host(host) in self.hosts or any(ip in net for net in self.networks)


def _normal_host(host: str) -> str:
    return host.lower().removesuffix(".")


def _is_hostname(entry: str) -> bool:
    """Letters, digits, '-' and '_' in dot-separated labels of 1-63; a numeric last label would be an IP."""
    labels = _normal_host(entry).split(".")
    return (len(entry) <= 253 and not labels[-1].isdigit()
            and all(0 < len(label) <= 63 and label.replace("-", "").replace("_", "").isalnum() and label.isascii()
                    for label in labels))

"""Which callback URLs the service may POST to: a guard against server-side request forgery.

Callback URLs come from callers, so without a policy anyone could make the service POST to
its own loopback, to the private network around it, or to the cloud metadata endpoint
(169.254.169.254, fd00:ec2::254). ``check_callback_url`` refuses those, and returns the
addresses it checked so that the sender connects to exactly those (see
``generation/adapters/callback.py``: a second DNS lookup could answer differently, "DNS
rebinding"). ``check_callback_url_syntax`` is the part that needs no DNS (scheme,
credentials, host allowlist, literal addresses): the HTTP API applies it when a request
arrives, so a bad callback is a 400 then, not a failure when the callback is due. Cloud
metadata and platform addresses are refused even where private networks are allowed.

Pure: no Azure, no I/O except the injected resolver (``socket.getaddrinfo`` by default).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from generation.errors import UnsafeCallbackUrl

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: ``socket.getaddrinfo``'s shape: called as ``resolver(host, port, type=SOCK_STREAM)``.
Resolver = Callable[..., Sequence[tuple[Any, ...]]]

# Ranges the ipaddress flags miss or that deserve their own name in the error.
_NAMED_RANGES: tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str], ...] = (
    (ipaddress.ip_network("169.254.169.254/32"), "cloud metadata"),
    (ipaddress.ip_network("fd00:ec2::254/128"), "cloud metadata"),
    (ipaddress.ip_network("100.64.0.0/10"), "shared address space (CGNAT)"),
)
# Never a callback target, even with CALLBACK_ALLOW_PRIVATE_NETWORKS (local development):
# instance metadata (AWS/Azure/GCP 169.254.169.254, AWS IPv6, Alibaba) and Azure's platform
# address 168.63.129.16.
_ALWAYS_BLOCKED: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = (
    ipaddress.ip_network("169.254.169.254/32"),
    ipaddress.ip_network("fd00:ec2::254/128"),
    ipaddress.ip_network("100.100.100.200/32"),
    ipaddress.ip_network("168.63.129.16/32"),
)
# IPv6 prefixes that carry an IPv4 address in their last 32 bits (NAT64, RFC 6052/8215).
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


@dataclass(frozen=True)
class CallbackPolicy:
    """What a callback URL may be.

    ``allow_http``: plain ``http://`` too (local development); otherwise ``https://`` only.
    ``allow_private_networks``: loopback, private, link-local, ... addresses too (local
    development); otherwise every address the host resolves to must be public.
    ``allowed_hosts``: when not empty, the only host names allowed (exact, case-insensitive,
    no wildcards); empty means any host.
    """

    allow_http: bool = False
    allow_private_networks: bool = False
    allowed_hosts: tuple[str, ...] = ()


def parse_allowed_hosts(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"a.example, B.example."`` (or a sequence) as ``("a.example", "b.example")``."""
    if not value:
        return ()
    items = value.split(",") if isinstance(value, str) else list(value)
    return tuple(h for h in (_normal_host(item) for item in items) if h)


def _normal_host(host: str) -> str:
    return host.strip().lower().rstrip(".")


def blocked_reason(address: IPAddress) -> str | None:
    """Why ``address`` is not a public unicast address (e.g. ``"loopback"``), or None.

    IPv4 addresses embedded in IPv6 (IPv4-mapped ``::ffff:a.b.c.d``, 6to4, NAT64) are
    judged as the IPv4 address they reach.
    """
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and any(address in net for net in _NAT64):
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            reason = blocked_reason(embedded)
            if reason is not None:
                return f"{reason} (IPv4 inside IPv6)"
            if address.ipv4_mapped is not None:
                return None  # the same host as the public IPv4 address
    for network, name in _NAMED_RANGES:
        if address.version == network.version and address in network:
            return name
    checks = (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
        ("site-local", isinstance(address, ipaddress.IPv6Address) and address.is_site_local),
        ("not globally reachable", not address.is_global),
    )
    for name, hit in checks:
        if hit:
            return name
    return None


def is_metadata_address(address: IPAddress) -> bool:
    """Whether ``address`` (or the IPv4 address inside it) is a cloud metadata or platform
    address, refused whatever the policy allows."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and any(address in net for net in _NAT64):
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None and is_metadata_address(embedded):
            return True
    return any(address.version == net.version and address in net for net in _ALWAYS_BLOCKED)


@dataclass(frozen=True)
class CallbackTarget:
    """A callback URL's parts once its syntax passed the policy."""

    scheme: str
    host: str  # lower case, no trailing dot
    port: int


def check_callback_url_syntax(url: str, policy: CallbackPolicy) -> CallbackTarget:
    """The checks of ``check_callback_url`` that need no DNS: scheme, credentials, host
    allowlist, and an IP literal's address. Raises ``UnsafeCallbackUrl``."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise UnsafeCallbackUrl("not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        raise UnsafeCallbackUrl("the scheme must be https")
    if scheme == "http" and not policy.allow_http:
        raise UnsafeCallbackUrl("the scheme must be https (plain http is not allowed)")
    if "@" in parts.netloc:
        raise UnsafeCallbackUrl("credentials in the URL (user:password@) are not allowed")
    host = _normal_host(parts.hostname or "")
    if not host:
        raise UnsafeCallbackUrl("the URL has no host")
    if policy.allowed_hosts and host not in parse_allowed_hosts(policy.allowed_hosts):
        raise UnsafeCallbackUrl(f"host {host!r} is not in CALLBACK_ALLOWED_HOSTS")
    if port is None:
        port = 443 if scheme == "https" else 80
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        _check_address(host, literal, policy)
    return CallbackTarget(scheme, host, port)


def _check_address(host: str, address: IPAddress, policy: CallbackPolicy) -> None:
    if is_metadata_address(address):
        raise UnsafeCallbackUrl(f"host {host!r} resolves to a cloud metadata address")
    if not policy.allow_private_networks:
        reason = blocked_reason(address)
        if reason is not None:
            raise UnsafeCallbackUrl(f"host {host!r} resolves to a {reason} address")


def check_callback_url(
    url: str, policy: CallbackPolicy, resolver: Resolver = socket.getaddrinfo
) -> list[IPAddress]:
    """The addresses ``url``'s host resolves to, once the URL passed ``policy``.

    Raises ``UnsafeCallbackUrl`` when the scheme is not https (or http with
    ``allow_http``), the URL carries ``user:password@``, the host is not in a non-empty
    ``allowed_hosts``, or any resolved address is not public (loopback, private, link-local
    incl. cloud metadata, multicast, reserved, unspecified, CGNAT 100.64.0.0/10, and those
    inside IPv6) unless ``allow_private_networks``. An IP literal is checked without a
    lookup. Raises ``OSError`` (``socket.gaierror``) when the name does not resolve: that
    may be transient, so callers decide. Messages name only the scheme and host, never the
    path, query string or credentials, and not the resolved address (the caller may see
    the message; internal addresses are ours to keep). Cloud metadata and platform
    addresses are refused even with ``allow_private_networks``.
    """
    target = check_callback_url_syntax(url, policy)
    addresses = _resolve(target.host, target.port, resolver)
    if not addresses:
        raise UnsafeCallbackUrl(f"host {target.host!r} resolves to no address")
    for address in addresses:
        _check_address(target.host, address, policy)
    return addresses


def _resolve(host: str, port: int, resolver: Resolver) -> list[IPAddress]:
    """The distinct addresses of ``host`` in the resolver's order (a literal: itself)."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    found: list[IPAddress] = []
    for _family, _type, _proto, _canonname, sockaddr in resolver(
        host, port, type=socket.SOCK_STREAM
    ):
        address = ipaddress.ip_address(sockaddr[0])
        if address not in found:
            found.append(address)
    return found

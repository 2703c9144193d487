"""The callback URL policy, with an injected resolver: no network."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from typing import Any

import pytest

from generation.adapters.url_safety import (
    CallbackPolicy,
    blocked_reason,
    check_callback_url,
    parse_allowed_hosts,
)
from generation.errors import InvalidRequestError, UnsafeCallbackUrl
from generation.request import parse_request

STRICT = CallbackPolicy()
LOCAL = CallbackPolicy(allow_http=True, allow_private_networks=True)
PUBLIC_V4 = "93.184.215.14"
PUBLIC_V6 = "2606:2800:21f:cb07:6820:80da:af6b:8b2c"


class FakeResolver:
    """``socket.getaddrinfo`` over a fixed table; records what it was asked."""

    def __init__(self, table: dict[str, Sequence[str]]) -> None:
        self.table = table
        self.asked: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        self.asked.append((host, port))
        if host not in self.table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        result = []
        for address in self.table[host]:
            if ":" in address:
                result.append((socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, port, 0, 0)))
            else:
                result.append((socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port)))
        return result


def no_lookup(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("an IP literal must not be looked up")


BLOCKED = [
    ("169.254.169.254", "cloud metadata"),
    ("fd00:ec2::254", "cloud metadata"),
    ("169.254.10.1", "link-local"),
    ("fe80::1", "link-local"),
    ("127.0.0.1", "loopback"),
    ("127.8.9.10", "loopback"),
    ("::1", "loopback"),
    ("::ffff:127.0.0.1", "loopback (IPv4 inside IPv6)"),
    ("::ffff:169.254.169.254", "cloud metadata (IPv4 inside IPv6)"),
    ("::ffff:10.1.2.3", "private (IPv4 inside IPv6)"),
    ("2002:7f00:1::", "loopback (IPv4 inside IPv6)"),  # 6to4 of 127.0.0.1
    ("64:ff9b::a9fe:a9fe", "cloud metadata (IPv4 inside IPv6)"),  # NAT64 of the metadata IP
    ("10.0.0.1", "private"),
    ("10.255.255.255", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.254", "private"),
    ("192.168.1.1", "private"),
    ("fc00::1", "private"),
    ("fd12:3456::1", "private"),
    ("100.64.0.1", "shared address space (CGNAT)"),
    ("100.127.255.254", "shared address space (CGNAT)"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("ff02::1", "multicast"),
    ("0.0.0.0", "unspecified"),
    ("::", "unspecified"),
    ("240.0.0.1", "private"),  # reserved (240/4); ipaddress counts it private first
    ("255.255.255.255", "private"),
    ("192.0.2.10", "private"),  # documentation
    ("198.18.0.1", "private"),  # benchmarking
    ("fec0::1", "site-local"),
]


@pytest.mark.parametrize(("address", "reason"), BLOCKED)
def test_non_public_addresses_are_blocked_with_a_reason(address: str, reason: str) -> None:
    assert blocked_reason(ipaddress.ip_address(address)) == reason


@pytest.mark.parametrize(("address", "reason"), BLOCKED)
def test_an_ip_literal_url_in_a_blocked_range_is_refused(address: str, reason: str) -> None:
    host = f"[{address}]" if ":" in address else address
    with pytest.raises(UnsafeCallbackUrl, match=r"unsafe callback URL: host .* resolves to a"):
        check_callback_url(f"https://{host}/hook", STRICT, resolver=no_lookup)


@pytest.mark.parametrize(
    "address", [PUBLIC_V4, PUBLIC_V6, "8.8.8.8", "1.1.1.1", "::ffff:8.8.8.8", "100.128.0.1"]
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert blocked_reason(ipaddress.ip_address(address)) is None
    host = f"[{address}]" if ":" in address else address
    assert check_callback_url(f"https://{host}/hook", STRICT, resolver=no_lookup) == [
        ipaddress.ip_address(address)
    ]


def test_a_public_host_is_allowed_and_its_addresses_returned() -> None:
    resolver = FakeResolver({"hooks.example.com": [PUBLIC_V4, PUBLIC_V6, PUBLIC_V4]})
    addresses = check_callback_url("https://hooks.example.com/cb?token=x", STRICT, resolver)
    assert addresses == [ipaddress.ip_address(PUBLIC_V4), ipaddress.ip_address(PUBLIC_V6)]
    assert resolver.asked == [("hooks.example.com", 443)]


def test_the_port_is_passed_to_the_resolver() -> None:
    resolver = FakeResolver({"hooks.example.com": [PUBLIC_V4]})
    check_callback_url("https://hooks.example.com:8443/cb", STRICT, resolver)
    check_callback_url("http://hooks.example.com/cb", CallbackPolicy(allow_http=True), resolver)
    assert resolver.asked == [("hooks.example.com", 8443), ("hooks.example.com", 80)]


@pytest.mark.parametrize(
    "private", ["10.0.0.7", "127.0.0.1", "169.254.169.254", "::1", "::ffff:127.0.0.1"]
)
def test_a_hostname_resolving_to_a_private_address_is_refused(private: str) -> None:
    resolver = FakeResolver({"rebind.example.com": [private]})
    with pytest.raises(UnsafeCallbackUrl) as raised:
        check_callback_url("https://rebind.example.com/hook", STRICT, resolver)
    # The caller may see the message: it names the host and the kind, not our address.
    assert "rebind.example.com" in str(raised.value)
    assert private not in str(raised.value)


def test_one_private_address_among_public_ones_is_enough_to_refuse() -> None:
    resolver = FakeResolver({"mixed.example.com": [PUBLIC_V4, "10.1.1.1"]})
    with pytest.raises(UnsafeCallbackUrl, match="private"):
        check_callback_url("https://mixed.example.com/hook", STRICT, resolver)


def test_allow_private_networks_allows_them() -> None:
    resolver = FakeResolver({"localhost": ["127.0.0.1", "::1"]})
    policy = CallbackPolicy(allow_private_networks=True)
    addresses = check_callback_url("https://localhost:9000/hook", policy, resolver)
    assert [str(a) for a in addresses] == ["127.0.0.1", "::1"]


def test_http_is_refused_unless_allowed() -> None:
    resolver = FakeResolver({"hooks.example.com": [PUBLIC_V4]})
    with pytest.raises(UnsafeCallbackUrl, match="https"):
        check_callback_url("http://hooks.example.com/hook", STRICT, resolver)
    assert resolver.asked == []  # refused before any lookup
    policy = CallbackPolicy(allow_http=True)
    assert check_callback_url("HTTP://hooks.example.com/hook", policy, resolver)


@pytest.mark.parametrize(
    "url", ["ftp://hooks.example.com/x", "file:///etc/passwd", "gopher://h/", "//h/x", "h/x"]
)
def test_other_schemes_are_refused(url: str) -> None:
    with pytest.raises(UnsafeCallbackUrl, match="scheme"):
        check_callback_url(url, LOCAL, resolver=no_lookup)


@pytest.mark.parametrize(
    "url",
    [
        "https://user:pass@hooks.example.com/hook",
        "https://token@hooks.example.com/hook",
        "https://hooks.example.com\\@127.0.0.1/hook",
    ],
)
def test_credentials_in_the_url_are_refused_and_not_echoed(url: str) -> None:
    with pytest.raises(UnsafeCallbackUrl, match="credentials") as raised:
        check_callback_url(url, LOCAL, resolver=no_lookup)
    assert "s3cr3t" not in str(raised.value) and "t0k3n" not in str(raised.value)


@pytest.mark.parametrize("url", ["https:///hook", "https://[::1/hook", "https://h:99999/x"])
def test_malformed_urls_are_refused(url: str) -> None:
    with pytest.raises(UnsafeCallbackUrl):
        check_callback_url(url, LOCAL, resolver=no_lookup)


def test_the_allowlist_is_exact_and_case_insensitive() -> None:
    resolver = FakeResolver(
        {name: [PUBLIC_V4] for name in ("hooks.example.com", "evil.example.com")}
        | {"hooks.example.com.evil.net": [PUBLIC_V4], "sub.hooks.example.com": [PUBLIC_V4]}
    )
    policy = CallbackPolicy(allowed_hosts=("Hooks.Example.com",))
    assert check_callback_url("https://HOOKS.example.com./cb", policy, resolver)
    for host in ("evil.example.com", "hooks.example.com.evil.net", "sub.hooks.example.com"):
        with pytest.raises(UnsafeCallbackUrl, match="CALLBACK_ALLOWED_HOSTS"):
            check_callback_url(f"https://{host}/cb", policy, resolver)


def test_an_allowlisted_host_must_still_resolve_to_public_addresses() -> None:
    resolver = FakeResolver({"hooks.example.com": ["10.0.0.3"]})
    policy = CallbackPolicy(allowed_hosts=("hooks.example.com",))
    with pytest.raises(UnsafeCallbackUrl, match="private"):
        check_callback_url("https://hooks.example.com/cb", policy, resolver)


def test_an_unresolvable_name_raises_oserror_not_unsafe() -> None:
    # Could be transient: the sender retries it, unlike a refused URL.
    with pytest.raises(OSError):
        check_callback_url("https://nowhere.example.com/cb", STRICT, FakeResolver({}))


def test_parse_allowed_hosts() -> None:
    assert parse_allowed_hosts("") == ()
    assert parse_allowed_hosts(None) == ()
    assert parse_allowed_hosts(" A.example.com , b.example.com.,, ") == (
        "a.example.com",
        "b.example.com",
    )
    assert parse_allowed_hosts(["X.example"]) == ("x.example",)


def test_unsafe_callback_url_is_an_invalid_request_naming_the_field() -> None:
    error = UnsafeCallbackUrl("the scheme must be https")
    assert isinstance(error, InvalidRequestError) and isinstance(error, ValueError)
    assert str(error) == "unsafe callback URL: the scheme must be https"
    assert error.errors[0]["field"] == "callback_url"


def test_the_request_model_refuses_credentials_in_the_callback_url_early() -> None:
    base = {"generation_request_id": "r1", "target_stems": ["bass"]}
    with pytest.raises(InvalidRequestError, match="credentials"):
        parse_request({**base, "callback_url": "https://u:p@hooks.example.com/x"})
    # an @ in the query string is not userinfo
    ok = parse_request({**base, "callback_url": "https://hooks.example.com/x?who=a@b.c"})
    assert ok.callback_url == "https://hooks.example.com/x?who=a@b.c"

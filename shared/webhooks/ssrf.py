"""Where a webhook may point: https to a public address (SSRF).

A target URL is refused (422 `unsafe_url`) unless it is https with a host that resolves only to
public unicast addresses: no loopback, private (RFC 1918, ULA), link-local (which holds the cloud
metadata endpoint 169.254.169.254), carrier-grade NAT, multicast, reserved or unspecified ranges,
nor IPv4 hidden in IPv6 (mapped, 6to4, NAT64 of a refused address). `BB_WEBHOOKS_ALLOW_LOOPBACK`
(local stack and tests only) lets loopback through, over http too.

The check runs when a webhook is saved (422) and again before every attempt, on the addresses the
attempt then connects to (`resolve_target`), so a name re-pointed at a private address later
(DNS rebinding) is refused too: the request goes to the checked IP, with the name as Host and SNI.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from shared.core.errors import Unprocessable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]
MAX_URL = 2048
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_METADATA_V6 = ipaddress.ip_address("fd00:ec2::254")


class UnsafeUrl(Unprocessable):
    """A webhook URL that is not https to a public address (422 `unsafe_url`)."""

    def __init__(self, detail: str, *, unresolved: bool = False) -> None:
        super().__init__(detail, reason="unsafe_url")
        self.unresolved = unresolved  # the name did not resolve (maybe for now: DNS may recover)


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


def address_allowed(address: IPAddress, *, allow_loopback: bool) -> bool:
    """Whether a webhook may connect to `address`."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in ipaddress.ip_network("64:ff9b::/96"):
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return address_allowed(embedded, allow_loopback=allow_loopback)
        if address == _METADATA_V6:
            return False
    if address.is_loopback:
        return allow_loopback
    if isinstance(address, ipaddress.IPv4Address) and address in _CGNAT:
        return False
    return not (
        address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or not address.is_global
    )


@dataclass(frozen=True)
class Target:
    """A checked URL: its host, port, and the addresses an attempt may connect to."""

    url: str
    scheme: str
    host: str
    port: int
    addresses: tuple[str, ...]


def check_url(url: str, *, allow_loopback: bool, resolve: Resolver = system_resolver) -> Target:
    """The checked target of `url`, or UnsafeUrl saying why not."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL:
        raise UnsafeUrl(f"url must be an https URL of at most {MAX_URL} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeUrl("url is not a valid URL") from exc
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("https", "http") or not host:
        raise UnsafeUrl("url must be an https URL")
    if parts.username or parts.password:
        raise UnsafeUrl("url must not carry credentials")
    if parts.fragment:
        raise UnsafeUrl("url must not have a fragment")
    port = port or (443 if parts.scheme == "https" else 80)
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            addresses = [ipaddress.ip_address(a.split("%")[0]) for a in resolve(host, port)]
        except (OSError, UnicodeError, ValueError) as exc:
            raise UnsafeUrl(f"url's host {host} does not resolve", unresolved=True) from exc
    if not addresses:
        raise UnsafeUrl(f"url's host {host} does not resolve", unresolved=True)
    refused = [a for a in addresses if not address_allowed(a, allow_loopback=allow_loopback)]
    if refused:
        raise UnsafeUrl(
            f"url's host {host} resolves to a loopback, private, link-local or otherwise "
            f"non-public address ({refused[0]}); webhooks only reach public addresses"
        )
    if parts.scheme == "http" and not all(a.is_loopback for a in addresses):
        raise UnsafeUrl("url must be https (http only to loopback on the local stack)")
    return Target(url, parts.scheme, host, port, tuple(str(a) for a in addresses))

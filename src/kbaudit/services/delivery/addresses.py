"""Where kbaudit agrees to send things: never to itself or its neighbours (SSRF).

A URL must be https, and every address its host resolves to must be a global one: not
loopback, private, link-local (which holds the clouds' metadata services), shared, reserved
or multicast; nor an IPv6 address that carries one of those as IPv4 (IPv4-compatible
``[::127.0.0.1]`` and NAT64 ``64:ff9b::/96`` are reserved; 6to4 and Teredo are unwrapped).
``allow_private`` lifts both rules, for development and tests.

The name is resolved once, when it is checked; the connection then goes to the address
that passed (``tunnel.py``), so that a name answering differently a moment later (DNS
rebinding) cannot send a request somewhere the check never saw.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class RefusedAddress(ValueError):
    """A URL kbaudit will not send to; the message says why."""


@dataclass(frozen=True, slots=True)
class Target:
    """A checked URL's host and port, and the address a request to it must connect to."""

    host: str
    port: int
    address: Address


def check_url(url: str, allow_private: bool) -> None:
    """Refuse ``url`` unless it is https and resolves only to global addresses. Where private
    addresses are allowed, nothing is looked up."""
    if not allow_private:
        target(url, allow_private)
    else:
        _host_and_port(url, allow_private)


def target(url: str, allow_private: bool) -> Target:
    """What a request to ``url`` connects to: its host, resolved once and checked."""
    host, port = _host_and_port(url, allow_private)
    addresses = _addresses(host, port)
    for address in addresses if not allow_private else ():
        for inner in _carried(address):
            if not inner.is_global or inner.is_reserved or inner.is_multicast:
                raise RefusedAddress(f"{host} resolves to {address}, a {_kind(inner)} address")
    return Target(host, port, addresses[0])


def _carried(address: Address) -> list[Address]:
    """The address and the IPv4 addresses it carries, which a relay would reach."""
    if not isinstance(address, ipaddress.IPv6Address):
        return [address]
    teredo = list(address.teredo or ())
    six_to_four = [address.sixtofour] if address.sixtofour else []
    return [address, *teredo, *six_to_four]


def _host_and_port(url: str, allow_private: bool) -> tuple[str, int]:
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # a broken IPv6 literal: "https://[::1"
        raise RefusedAddress("is not a URL (its host is malformed)") from exc
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise RefusedAddress("must be an absolute https:// URL")
    if parts.username or parts.password:
        raise RefusedAddress("must not carry credentials")
    if not allow_private and parts.scheme != "https":
        raise RefusedAddress("must use https")
    try:
        port = parts.port
    except ValueError as exc:
        raise RefusedAddress("has no valid port (1 to 65535)") from exc
    if port == 0:
        raise RefusedAddress("has no valid port (1 to 65535)")
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


def _addresses(host: str, port: int) -> list[Address]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise RefusedAddress(f"{host} cannot be resolved") from exc
    addresses: list[Address] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise RefusedAddress(f"{host} cannot be resolved")
    return addresses


def _kind(address: Address) -> str:
    for kind in ("loopback", "link_local", "private", "multicast", "unspecified", "reserved"):
        if getattr(address, f"is_{kind}"):
            return kind.replace("_", "-")
    return "non-global"

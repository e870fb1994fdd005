"""Where kbaudit agrees to send things: never to itself or its neighbours (SSRF).

A URL must be https, and every address its host resolves to must be a global one: not
loopback, private, link-local (which holds the clouds' metadata services), shared or
reserved. ``allow_private`` lifts both rules, for development and tests.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit


class RefusedAddress(ValueError):
    """A URL kbaudit will not send to; the message says why."""


def check_url(url: str, allow_private: bool) -> None:
    """Refuse ``url`` unless it is https and resolves only to global addresses."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise RefusedAddress("must be an absolute https:// URL")
    if parts.username or parts.password:
        raise RefusedAddress("must not carry credentials")
    if allow_private:
        return
    if parts.scheme != "https":
        raise RefusedAddress("must use https")
    for address in _addresses(parts.hostname, parts.port or 443):
        if not address.is_global:
            raise RefusedAddress(
                f"{parts.hostname} resolves to {address}, a {_kind(address)} address"
            )


def _addresses(host: str, port: int) -> set[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise RefusedAddress(f"{host} cannot be resolved") from exc
    addresses = set()
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        addresses.add(address)
    return addresses


def _kind(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    for kind in ("loopback", "link_local", "private", "multicast", "reserved", "unspecified"):
        if getattr(address, f"is_{kind}"):
            return kind.replace("_", "-")
    return "non-global"

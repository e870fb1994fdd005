"""Which addresses webhooks and destinations may reach: no loopback, private, reserved or
multicast address, however an IPv6 address dresses it."""

from __future__ import annotations

import pytest

from kbaudit.services.delivery.addresses import RefusedAddress, check_url


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "[::1]",
        "[::ffff:127.0.0.1]",  # IPv4-mapped
        "[::127.0.0.1]",  # IPv4-compatible
        "[64:ff9b::7f00:1]",  # NAT64 of loopback
        "[64:ff9b::a9fe:a9fe]",  # NAT64 of the metadata service
        "[2002:7f00:1::]",  # 6to4 of loopback
        "[2002:e000:1::]",  # 6to4 of multicast
        "[2001:0:4136:e378:8000:63bf:80ff:fffe]",  # Teredo
        "[ff0e::1]",  # global-scope multicast
        "224.0.0.1",
        "169.254.169.254",
        "[::]",
    ],
)
def test_local_and_odd_addresses_are_refused(host: str) -> None:
    with pytest.raises(RefusedAddress):
        check_url(f"https://{host}/hook", allow_private=False)


def test_a_global_address_passes() -> None:
    check_url("https://8.8.8.8/hook", allow_private=False)  # a literal: nothing is looked up
    check_url("https://[2606:4700:4700::1111]/hook", allow_private=False)


@pytest.mark.parametrize(
    "url", ["https://[::1/hook", "https://h:99999/", "https://h:0/", "https://h:x/"]
)
def test_urls_that_do_not_parse_are_refused_with_a_reason(url: str) -> None:
    for allow_private in (False, True):
        with pytest.raises(RefusedAddress):
            check_url(url, allow_private=allow_private)

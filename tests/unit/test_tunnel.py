"""The tunnel passes requests for its checked host and port alone, and only to the checked
address: whatever another name or port a client asks for is refused."""

from __future__ import annotations

import ipaddress

import httpx2

from kbaudit.services.delivery.addresses import Target
from kbaudit.services.delivery.tunnel import Tunnel
from tests.receiver import receiving


def test_a_request_for_the_checked_name_reaches_the_checked_address() -> None:
    with receiving([204]) as receiver:
        checked = Target("hooks.example.test", receiver.port, ipaddress.ip_address("127.0.0.1"))
        with Tunnel(checked, timeout=5) as proxy:
            url = f"http://hooks.example.test:{receiver.port}/hook"
            response = httpx2.post(url, content=b"{}", proxy=proxy, trust_env=False)
    assert response.status_code == 204
    [received] = receiver.received
    assert received.headers["host"] == f"hooks.example.test:{receiver.port}"


def test_any_other_host_or_port_is_refused() -> None:
    with receiving([204]) as receiver:
        checked = Target("hooks.example.test", receiver.port, ipaddress.ip_address("127.0.0.1"))
        with (
            Tunnel(checked, timeout=5) as proxy,
            httpx2.Client(proxy=proxy, trust_env=False) as http,
        ):
            other_host = http.post(f"http://elsewhere.test:{receiver.port}/hook")
            other_port = http.post(f"http://hooks.example.test:{receiver.port + 1}/hook")
    assert (other_host.status_code, other_port.status_code) == (403, 403)
    assert receiver.received == []

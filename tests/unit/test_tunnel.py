"""The tunnel passes requests for its checked host and port alone, and only to the checked
address: whatever another name or port a client asks for is refused."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import ssl
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import httpx2
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

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


def certificate_for(name: str, folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for ``name`` and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


def test_https_goes_through_with_the_names_own_tls(tmp_path: Path) -> None:
    """For https the client asks for a tunnel (CONNECT) and does TLS itself: the server is
    told the name (SNI), and its certificate is checked against the name, not the address."""
    cert_file, key_file = certificate_for("hooks.example.test", tmp_path)
    server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_side.load_cert_chain(cert_file, key_file)
    trusting = ssl.create_default_context(cafile=str(cert_file))
    with receiving([204], tls=server_side) as receiver:
        checked = Target("hooks.example.test", receiver.port, ipaddress.ip_address("127.0.0.1"))
        with Tunnel(checked, timeout=5) as proxy:
            url = f"https://hooks.example.test:{receiver.port}/hook"
            response = httpx2.post(url, content=b"{}", proxy=proxy, verify=trusting)
    assert response.status_code == 204
    assert len(receiver.received) == 1


def test_a_connection_brings_back_no_more_than_its_answer_bytes() -> None:
    """A receiver answering with 64 MiB (obstore reads an error's body whole) is cut off at
    the tunnel's bound, and the client sees the connection end."""
    endless = socket.create_server(("127.0.0.1", 0))

    def answer_hugely() -> None:
        connection, _ = endless.accept()
        with connection, contextlib.suppress(OSError):
            connection.recv(65536)
            connection.sendall(b"HTTP/1.1 500 Oops\r\nContent-Length: 67108864\r\n\r\n")
            for _ in range(1024):
                connection.sendall(b"x" * 65536)

    server = threading.Thread(target=answer_hugely, daemon=True)
    server.start()
    port = endless.getsockname()[1]
    checked = Target("bucket.example.test", port, ipaddress.ip_address("127.0.0.1"))
    with Tunnel(checked, timeout=5, answer_bytes=1 << 20) as proxy:
        address = urlsplit(proxy)
        with socket.create_connection((address.hostname, address.port), timeout=5) as client:
            client.sendall(f"GET http://bucket.example.test:{port}/x HTTP/1.1\r\n\r\n".encode())
            received = 0
            while chunk := client.recv(65536):
                received += len(chunk)
    endless.close()
    assert received == 1 << 20

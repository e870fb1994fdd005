"""What hostile input costs a real ``kbaudit serve`` and an export worker: memory and time.

    .venv/bin/python -m bench.hostile [--large 300]

Against a server on a fresh data folder (``bench/out/hostile``): an anonymous 96 MiB body
to every route that takes one, a 70 MiB header line, and a 30 MiB write of empty objects
with a good key; each answer's status and time, and the server's peak RSS (the kernel's
VmHWM) before and after. Then ``--large`` records as large as the schema allows (1.7 MB
each) exported in each format by a worker in a child process (``bench.export``), whose
peak RSS is measured against the 300 MB a worker is budgeted.

The plain-script baseline of the other benchmarks has no counterpart here: what is
measured is what the server holds for input it refuses, against the memory it holds idle.
"""

from __future__ import annotations

import argparse
import socket
import time
from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path

import httpx2

from bench.common import END, Server, fresh_env, kbaudit, peak_rss_mb
from bench.export import service_in_child
from kbaudit.config import Settings
from kbaudit.container import build_container
from kbaudit.demo import largest_record
from kbaudit.services.ingest import ingest_records
from kbaudit.services.keys import organization_named

MIB = 1024 * 1024
BODY_ROUTES = [
    ("POST", "/v1/knowledge-base/audit/retrievals"),
    ("POST", "/v1/knowledge-base/audit/exports"),
    ("PUT", "/v1/knowledge-base/retention-policy"),
    ("POST", "/v1/knowledge-base/audit/webhooks"),
    ("PUT", "/v1/knowledge-base/audit/destinations/mine"),
]
WORKER_BUDGET_MB = 300


def answer_to(port: int, head: bytes, rest: Iterable[bytes]) -> tuple[str, float]:
    """The status line the server answers with, and the seconds it took."""
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=60) as connection:
        connection.sendall(head)
        try:
            for chunk in rest:
                connection.sendall(chunk)
        except OSError:
            pass  # the server answered and closed without reading the rest
        status = connection.recv(256).split(b"\r\n")[0].decode()
    return status, time.perf_counter() - started


def probe(server: Server, what: str, head: bytes, rest: Iterable[bytes]) -> None:
    before = peak_rss_mb(server.process.pid)
    status, seconds = answer_to(server.port, head, rest)
    after = peak_rss_mb(server.process.pid)
    print(f"  {what:58} {status:45} {seconds:5.1f} s   peak RSS {before} -> {after} MB")


def head_of(method: str, route: str, length: int, key: str = "") -> bytes:
    lines = [f"{method} {route} HTTP/1.1", "Host: 127.0.0.1", "content-type: application/json"]
    lines += [f"content-length: {length}"] + ([f"x-api-key: {key}"] if key else [])
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def server_probes() -> None:
    env = fresh_env("hostile")
    key = kbaudit(env, "keys", "create", "--org", "bench", "--scopes", "kb_audit:write")
    server = Server(env)
    try:
        print("a server on a fresh data folder:")
        for method, route in BODY_ROUTES:
            body = (b'{"items":[' + b"{}," * (MIB // 3) for _ in range(96))
            probe(
                server,
                f"anonymous 96 MiB to {method} {route}",
                head_of(method, route, 96 * MIB),
                body,
            )
        probe(
            server,
            "a 70 MiB header line",
            b"GET /healthz HTTP/1.1\r\nx-big: ",
            (b"a" * MIB for _ in range(70)),
        )
        empty = b'{"items":[' + b"{}," * (10 * MIB) + b"{}]}"
        write = head_of("POST", BODY_ROUTES[0][1], len(empty), key)
        probe(server, "30 MiB of empty objects, with a good key", write, [empty])
        assert httpx2.get(f"{server.url}/healthz").status_code == 200
    finally:
        server.stop()


def export_probes(count: int) -> None:
    env = fresh_env(f"hostile-large-{count}")
    kbaudit(env, "keys", "create", "--org", "bench", "--scopes", "kb_audit:read")
    data_dir = Path(env["KBAUDIT_DATA_DIR"])
    container = build_container(Settings(data_dir=data_dir, queue_url="inline"))
    org = organization_named(container.store, "bench")
    start = END - timedelta(days=1)  # in bench.export's window, like every data set here
    for n in range(count):
        ingest_records(
            container.store, container.clock, org.id, [largest_record(start + timedelta(minutes=n))]
        )
    container.close()
    print(f"{count} records of 1.7 MB exported by one worker (budget {WORKER_BUDGET_MB} MB):")
    for export_format in ("csv", "ndjson", "parquet"):
        rate, rows, _, rss, cpu = service_in_child(data_dir, export_format)
        figures = f"{rate:6.0f} rows/s, peak RSS {rss:4.0f} MB, CPU {cpu:.1f} s"
        print(f"  {export_format:8} {rows} rows, {figures}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--large", type=int, default=300, help="records of 1.7 MB to export")
    args = parser.parse_args()
    server_probes()
    export_probes(args.large)


if __name__ == "__main__":
    main()

"""Export throughput, worker memory and download speed, each against a plain-script baseline.

    .venv/bin/python -m bench.export [--records 1000000]

Loads ``--records`` demo records into ``bench/out/export-N`` with ``kbaudit import`` (once;
reused after), in organization ``bench``. One worker: the export runs its parts one after
another in a child process (inline queue), whose peak RSS is read from the kernel.

Baselines, measured in the same run on the same records, sharing nothing with kbaudit
(``bench.plain``): a plain script over a flat single-table SQLite copy of the data set, in
time order; CSV by a generated f-string per row, NDJSON as stored lines; then zstd level 3
and AES-256-GCM in 1 MiB chunks. Download: Tink's decrypting stream and zstandard straight
over the largest file in the blob folder, against the HTTP route (timed by curl): plain, and
zstd-coded, curl decompressing (checked once, untimed, against the file's SHA-256).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

import httpx2
import zstandard
from tink.streaming_aead import StreamingAead

from bench import plain
from bench.common import OUT, Server, dataset, kbaudit, peak_rss_mb
from bench.query import prepare
from kbaudit.config import Settings
from kbaudit.container import build_container
from kbaudit.crypto.envelope import WrappedKeyset
from kbaudit.domain import Caller, ExportFormat, JobStatus, KeyId, OrgId
from kbaudit.filters import RecordFilters
from kbaudit.logs import configure_logging
from kbaudit.runtime import settle_heap
from kbaudit.services.exports.jobs import ExportSpec, create_export, get_export
from kbaudit.services.exports.parts import file_context
from kbaudit.services.exports.sweep import sweep

WINDOW = (datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))


def service_rate(data_dir: Path, export_format: str) -> tuple[float, int, str]:
    settings = Settings(data_dir=data_dir, queue_url="inline", export_max_active_per_org=100)
    container = build_container(settings)
    settle_heap()  # as kbaudit serve and kbaudit worker do once started
    with container.store.reading() as uow:
        org = uow.keys.organization_by_name("bench")
    assert org is not None
    caller = Caller(org.id, KeyId("bench"), frozenset({"kb_audit:export"}))
    spec = ExportSpec(cast(ExportFormat, export_format), RecordFilters.window(*WINDOW))
    started = time.perf_counter()
    job = create_export(container.exports, caller, spec)
    elapsed = time.perf_counter() - started
    done = get_export(container.exports, caller, job.job["id"])
    assert done.job["status"] == "succeeded", done.job
    container.close()
    return done.job["total_rows"] / elapsed, done.job["total_rows"], job.job["id"]


def expire_earlier_exports(data_dir: Path) -> int:
    """Every round leaves a file set of about 280 MB per 1M records: the exports of earlier
    runs are expired (their files deleted) before new ones are made, as kbaudit's sweep
    would at their expiry."""
    later = datetime.now(UTC) + timedelta(days=3650)
    container = build_container(
        Settings(data_dir=data_dir, queue_url="inline"), clock=lambda: later
    )
    try:
        return sweep(container.exports).jobs_expired
    finally:
        container.close()


def baseline_rate(records: int, export_format: str) -> float:
    """The plain script's rows/s over a flat copy of the same records (bench.plain)."""
    flat = OUT / f"flat-{records}.db"
    plain.flat_copy(dataset(records), flat)
    window = tuple(plain.utc_text(instant.isoformat()) or "" for instant in WINDOW)
    out = OUT / f"baseline.{export_format}.zst.aesgcm"
    export = {
        "csv": plain.export_csv,
        "ndjson": plain.export_ndjson,
        "parquet": plain.export_parquet,
    }[export_format]
    return export(flat, (window[0], window[1]), out)


DOWNLOAD_ROUNDS = 9


def download_rates(
    data_dir: Path, export_id: str
) -> tuple[list[float], list[float], list[float], int, int]:
    """MB/s of decrypt+decompress and of the HTTP route over the same file, round by round:
    plain, and zstd-coded (curl decompresses). One pass takes well under a second, so the
    three take turns: the machine's drift then weighs on the passes of a round alike."""
    container = build_container(Settings(data_dir=data_dir, queue_url="inline"))
    with container.store.reading() as uow:
        job = uow.exports.job(export_id)
        assert job is not None
        part = max(uow.exports.parts(export_id), key=lambda p: p.file.plaintext_bytes)
        org = uow.keys.organization(OrgId(job.org_id))
    assert job.wrapped_keyset is not None
    # The one thing the baseline takes from kbaudit: the file's key, as its owner holds it.
    aead = container.exports.keys.open_data_key(
        org.uuid, export_id, WrappedKeyset(job.kek_version, job.wrapped_keyset)
    )
    blob = container.exports.blobs.root / part.file.blob_key  # type: ignore[attr-defined]
    context = file_context(org.uuid, export_id, part.file_name)
    env = {**os.environ, "KBAUDIT_DATA_DIR": str(data_dir), "KBAUDIT_LOG_LEVEL": "warning"}
    key = kbaudit(
        env, "keys", "create", "--org", org.name, "--scopes", "kb_audit:read,kb_audit:export"
    )
    server = Server(env)
    raw, http, coded = [], [], []
    try:
        view = httpx2.get(
            f"{server.url}/v1/knowledge-base/audit/exports/{export_id}",
            headers={"x-api-key": key},
        ).json()
        token = next(f for f in view["files"] if f["name"] == part.file_name)["download_token"]
        path = f"/v1/knowledge-base/audit/exports/{export_id}/download/{part.file_name}"
        url = f"{server.url}{path}?token={token}"
        check_coded(url, key, part.file.sha256_delivered)
        for _ in range(DOWNLOAD_ROUNDS):
            seconds, size = plain_decrypt(aead, context, blob)
            raw.append(size / seconds / 1e6)
            seconds, received = curl_pass(url, key)
            assert received == size
            http.append(size / seconds / 1e6)
            seconds, wire = curl_pass(url, key, compressed=True)
            coded.append(size / seconds / 1e6)
    finally:
        server.stop()
    return raw, http, coded, size, wire


def plain_decrypt(aead: StreamingAead, context: bytes, blob: Path) -> tuple[float, int]:
    """What an owner of the key could run on the stored file: Tink and zstandard straight
    over it, 8 MB at a time, none of kbaudit's code."""
    started = time.perf_counter()
    size = 0
    with blob.open("rb") as ciphertext:
        plaintext = zstandard.ZstdDecompressor().stream_reader(
            aead.new_decrypting_stream(ciphertext, context), read_across_frames=True
        )
        while chunk := plaintext.read(8 << 20):
            size += len(chunk)
    return time.perf_counter() - started, size


def curl_pass(url: str, key: str, *, compressed: bool = False) -> tuple[float, int]:
    """curl reads the stream in C: a Python client would take a core from the server. The
    time is curl's own, from connecting to the last byte: starting the curl process (12-15
    ms here, 4-5% of a 282 MB download) is no part of the download. ``compressed``: curl
    asks for zstd and decompresses; the size is then what crossed the wire."""
    command = ["curl", "-sS", "-o", "/dev/null", "-w", "%{time_total} %{size_download}"]
    if compressed:
        command.append("--compressed")
    result = subprocess.run(
        [*command, "-H", f"x-api-key: {key}", url], capture_output=True, text=True, check=True
    )
    seconds, size = result.stdout.split()
    return float(seconds), int(size)


def check_coded(url: str, key: str, sha256: str) -> None:
    """Once, untimed: curl's decoding of the zstd-coded download is the file itself."""
    command = ["curl", "-sS", "--compressed", "-D", "-", "-H", f"x-api-key: {key}", url]
    with subprocess.Popen(command, stdout=subprocess.PIPE) as curl:
        assert curl.stdout is not None
        headers = b""
        while not headers.endswith(b"\r\n\r\n"):
            headers += curl.stdout.read(1)
        assert b"content-encoding: zstd" in headers.lower(), headers
        digest = hashlib.sha256()
        while chunk := curl.stdout.read(1 << 20):
            digest.update(chunk)
    assert digest.hexdigest() == sha256, "the zstd-coded download is not the file"


def newest_export(data_dir: Path) -> str:
    container = build_container(Settings(data_dir=data_dir, queue_url="inline"))
    with container.store.reading() as uow:
        jobs = uow.exports.jobs_in((JobStatus.SUCCEEDED,))
    return str(max(jobs, key=lambda job: job.created_at).id)


def service_in_child(data_dir: Path, export_format: str) -> tuple[float, int, str, float, float]:
    """The service's export in a fresh process, so that its peak RSS and CPU time (the
    whole process's, start-up included) are its own."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.export",
            "--data-dir",
            str(data_dir),
            "--child",
            export_format,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    rate, rows, export_id, rss, cpu = result.stdout.splitlines()[-1].split()
    return float(rate), int(rows), export_id, float(rss), float(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-download", action="store_true")
    parser.add_argument(
        "--download-only", action="store_true", help="measure downloads of the newest export"
    )
    parser.add_argument("--formats", default="csv,ndjson")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        configure_logging("warning")
        rate, rows, export_id = service_rate(args.data_dir, args.child)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        print(rate, rows, export_id, peak_rss_mb(), usage.ru_utime + usage.ru_stime)
        return
    env, _ = prepare(args.records, OUT / f"export-{args.records}")
    args.data_dir = Path(env["KBAUDIT_DATA_DIR"])
    print(f"export benchmark on {args.data_dir}")
    last_id = ""
    if args.download_only:
        args.formats, last_id = "", newest_export(args.data_dir)
    else:
        print(f"  expired the {expire_earlier_exports(args.data_dir)} exports of earlier runs")
    for export_format in filter(None, args.formats.split(",")):
        # This machine's speed drifts by tens of percent within minutes: the two take turns,
        # and each round's kbaudit figure is judged against its own round's baseline.
        bases, rates, shares, peaks, cpus = [], [], [], [], []
        for _ in range(args.rounds):
            base = baseline_rate(args.records, export_format)
            rate, rows, last_id, rss, cpu = service_in_child(args.data_dir, export_format)
            bases.append(base)
            rates.append(rate)
            shares.append(rate / base)
            peaks.append(rss)
            cpus.append(cpu)
        print(
            f"  {export_format:6} {rows:,} rows, medians of {args.rounds} rounds: "
            f"baseline {statistics.median(bases):9,.0f} rows/s   "
            f"kbaudit {statistics.median(rates):9,.0f} rows/s   "
            f"kbaudit/baseline of the same round {statistics.median(shares):.2f}x "
            f"(lowest {min(shares):.2f}x, highest {max(shares):.2f}x)   "
            f"worker CPU {statistics.median(cpus):.1f} s, peak RSS {max(peaks):,.0f} MB"
        )
    if args.no_download:
        return
    raw, http, coded, size, wire = download_rates(args.data_dir, last_id)
    print(
        f"  download of a {size / 1e6:,.0f} MB file ({wire / 1e6:,.0f} MB on the wire when "
        f"zstd-coded), medians of {DOWNLOAD_ROUNDS} rounds: "
        f"raw decrypt+decompress {statistics.median(raw):,.0f} MB/s"
    )
    for name, rates in (("HTTP route", http), ("HTTP route, zstd-coded", coded)):
        shares = sorted(h / r for h, r in zip(rates, raw, strict=True))
        print(
            f"    {name:22} {statistics.median(rates):6,.0f} MB/s; against raw of the same "
            f"round {statistics.median(shares):.0%} "
            f"(lowest {shares[0]:.0%}, highest {shares[-1]:.0%})"
        )


if __name__ == "__main__":
    main()

"""Parquet export speed against CSV, and webhook latency against polling.

    .venv/bin/python -m bench.delivery [--records 1000000] [--rounds 3] [--exports 30]

Parquet: one export worker (a child process, as in ``bench.export``) writes the same
``--records`` records as Parquet and as CSV, taking turns; the figures are each round's
Parquet rows/s over its CSV rows/s (the issue's yardstick) and over a plain pyarrow script
(``bench.plain.export_parquet``: Arrow's JSON reader over a flat table's lines, a Parquet
file per 50,000 rows, zstd and AES-GCM), and the Parquet worker's peak RSS.

Webhooks: a real ``kbaudit serve`` on the embedded default runs ``--exports`` small exports
one after another, with a webhook to a receiver on 127.0.0.1. Latency is from the job's
``finalized_at`` to the event's arrival. The baseline is what a user without webhooks writes:
a script polling ``GET /exports/{id}`` once a second, from the same end to when it sees it.
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import datetime
from pathlib import Path

import httpx2
import orjson
from tests.receiver import Receiver

from bench.common import OUT, Server, kbaudit, percentile
from bench.export import baseline_rate, service_in_child
from bench.query import prepare

EXPORTS = "/v1/knowledge-base/audit/exports"
POLL_SECONDS = 1.0


def parquet_against_csv(records: int, data_dir: Path, rounds: int) -> None:
    shares, plain_shares, parquet_rates, csv_rates, plain_rates, peaks = [], [], [], [], [], []
    rows = 0
    for _ in range(rounds):
        plain_rate = baseline_rate(records, "parquet")
        csv_rate, rows, _, _, _ = service_in_child(data_dir, "csv")
        parquet_rate, _, _, rss, _ = service_in_child(data_dir, "parquet")
        shares.append(parquet_rate / csv_rate)
        plain_shares.append(parquet_rate / plain_rate)
        parquet_rates.append(parquet_rate)
        csv_rates.append(csv_rate)
        plain_rates.append(plain_rate)
        peaks.append(rss)
    print(
        f"  parquet against csv, {rows:,} rows, medians of {rounds} rounds: "
        f"csv {statistics.median(csv_rates):9,.0f} rows/s   "
        f"parquet {statistics.median(parquet_rates):9,.0f} rows/s   "
        f"parquet/csv of the same round {statistics.median(shares):.2f}x "
        f"(lowest {min(shares):.2f}x, highest {max(shares):.2f}x)   "
        f"parquet worker peak RSS {max(peaks):,.0f} MB"
    )
    print(
        f"  parquet against a plain pyarrow script over a flat table: plain "
        f"{statistics.median(plain_rates):9,.0f} rows/s, kbaudit/plain of the same round "
        f"{statistics.median(plain_shares):.2f}x "
        f"(lowest {min(plain_shares):.2f}x, highest {max(plain_shares):.2f}x)"
    )


def webhook_latency(exports: int) -> None:
    env, _ = prepare(20_000, OUT / "delivery")
    env |= {"KBAUDIT_WEBHOOK_ALLOW_PRIVATE": "true"}
    scopes = "kb_audit:export,kb_audit:read,kb_audit:admin"
    headers = {"x-api-key": kbaudit(env, "keys", "create", "--org", "bench", "--scopes", scopes)}
    receiver = Receiver([200]).start()
    server = Server(env)
    pushed, polled = [], []
    hooks = f"{server.url}/v1/knowledge-base/audit/webhooks"
    try:
        # Webhooks of earlier runs point at receivers that are gone: their retries would be
        # measured too.
        for old in httpx2.get(hooks, headers=headers).json():
            httpx2.delete(f"{hooks}/{old['id']}", headers=headers).raise_for_status()
        hook = httpx2.post(
            hooks,
            json={"url": receiver.url, "events": ["export.succeeded"]},
            headers=headers,
        )
        hook.raise_for_status()
        for number in range(exports):
            day = 1 + number % 28
            window = {
                "start": f"2026-10-{day:02d}T00:00:00Z",
                "end": f"2026-10-{day:02d}T06:00:00Z",
            }
            job = httpx2.post(f"{server.url}{EXPORTS}", json=window, headers=headers).json()
            seen_by_poller = _poll(server.url, headers, job["id"])
            while len(receiver.received) <= number:
                time.sleep(0.01)
            event = receiver.received[number]
            ended = datetime.fromisoformat(orjson.loads(event.body)["data"]["finalized_at"])
            pushed.append(event.at - ended.timestamp())
            polled.append(seen_by_poller - ended.timestamp())
    finally:
        server.stop()
        receiver.stop()
    print(
        f"  webhook latency from job end to receiver, {exports} exports: p50 "
        f"{statistics.median(pushed) * 1000:,.0f} ms, p99 {percentile(pushed, 0.99) * 1000:,.0f} ms"
        f"   a script polling every {POLL_SECONDS:.0f} s: p50 "
        f"{statistics.median(polled) * 1000:,.0f} ms, p99 {percentile(polled, 0.99) * 1000:,.0f} ms"
    )


def _poll(url: str, headers: dict[str, str], job_id: str) -> float:
    """What a user without webhooks does: ask once a second until the job has ended."""
    while True:
        view = httpx2.get(f"{url}{EXPORTS}/{job_id}", headers=headers).json()
        if view["status"] not in ("pending", "running"):
            return time.time()
        time.sleep(POLL_SECONDS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--exports", type=int, default=30)
    parser.add_argument("--skip-parquet", action="store_true")
    args = parser.parse_args()
    if not args.skip_parquet:
        env, _ = prepare(args.records, OUT / f"export-{args.records}")
        print(f"delivery benchmark on {env['KBAUDIT_DATA_DIR']}")
        parquet_against_csv(args.records, Path(env["KBAUDIT_DATA_DIR"]), args.rounds)
    webhook_latency(args.exports)


if __name__ == "__main__":
    main()

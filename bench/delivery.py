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

Sends: ``--sends`` events sent one after another by the delivery service's ``send_event``
(the address checked, a tunnel to it, the body signed), against a plain script that signs
the same bodies and POSTs them over one kept-open httpx2 client.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx2
import orjson
from standardwebhooks.webhooks import Webhook as Signer
from tests.receiver import Receiver, receiving

from bench.common import OUT, Server, kbaudit, percentile
from bench.export import baseline_rate, service_in_child
from bench.query import prepare
from kbaudit.config import Settings
from kbaudit.container import build_container
from kbaudit.domain import Caller, KeyId, OrgId
from kbaudit.services.delivery.webhooks import add_webhook, send_event
from kbaudit.services.keys import create_key
from kbaudit.store.models import OutboxItem, OutboxKind, OutboxStatus

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


def webhook_sends(count: int) -> None:
    with tempfile.TemporaryDirectory() as folder, receiving([200]) as receiver:
        settings = Settings(data_dir=Path(folder), queue_url="inline", webhook_allow_private=True)
        container = build_container(settings)
        create_key(container.store, container.clock, "bench", ("kb_audit:admin",))
        caller = Caller(OrgId(1), KeyId("bench"), frozenset({"kb_audit:admin"}))
        hook = add_webhook(container.delivery, caller, receiver.url, None, None)
        body = orjson.dumps({"type": "export.succeeded", "data": {"id": str(uuid.uuid4())}})
        items = [_item(hook["id"], body) for _ in range(count)]
        now = container.clock()
        started = time.perf_counter()
        for item in items:
            assert send_event(container.delivery, item, now).ok
        kbaudit_rate = count / (time.perf_counter() - started)
        signer = Signer(hook["secret"])
        started = time.perf_counter()
        with httpx2.Client() as client:
            for item in items:
                headers = {
                    "webhook-id": item.id,
                    "webhook-timestamp": str(int(now.timestamp())),
                    "webhook-signature": signer.sign(item.id, now, body.decode()),
                }
                client.post(receiver.url, content=body, headers=headers).raise_for_status()
        plain_rate = count / (time.perf_counter() - started)
        container.close()
    print(
        f"  webhook sends one after another, {count}: kbaudit {kbaudit_rate:,.0f}/s, "
        f"a plain signing script over one open client {plain_rate:,.0f}/s "
        f"({kbaudit_rate / plain_rate:.2f}x)"
    )


def _item(hook_id: str, body: bytes) -> OutboxItem:
    return OutboxItem(
        id=f"msg_{uuid.uuid4().hex}",
        org_id=OrgId(1),
        kind=OutboxKind.WEBHOOK,
        target=hook_id,
        export_id=str(uuid.uuid4()),
        event_type="export.succeeded",
        body=body,
        status=OutboxStatus.PENDING,
        attempts=0,
        next_attempt_at=None,
        created_at=datetime.now(UTC),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--exports", type=int, default=30)
    parser.add_argument("--skip-parquet", action="store_true")
    parser.add_argument("--sends", type=int, default=300)
    parser.add_argument("--only-sends", action="store_true")
    args = parser.parse_args()
    webhook_sends(args.sends)
    if args.only_sends:
        return
    if not args.skip_parquet:
        env, _ = prepare(args.records, OUT / f"export-{args.records}")
        print(f"delivery benchmark on {env['KBAUDIT_DATA_DIR']}")
        parquet_against_csv(args.records, Path(env["KBAUDIT_DATA_DIR"]), args.rounds)
    webhook_latency(args.exports)


if __name__ == "__main__":
    main()

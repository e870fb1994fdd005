"""A long run of the scale-out mode under load and faults: does anything acknowledged get
lost, does anything answer 5xx, does any process grow without bound?

    .venv/bin/python -m bench.soak [--minutes 30] [--fault-every 60] [--folder bench/out/soak]

Starts a PostgreSQL, Redis and SeaweedFS of its own (``scripts/services.sh`` on ports of its
own, so that it may restart them), ``kbaudit serve --processes 2`` and two ``kbaudit worker``
processes, then for ``--minutes`` runs all at once:

- writers: batches of finalized records, and two-phase writes (the intents, then their
  outcomes), each batch sent again with the same ids until it is acknowledged;
- readers: query pages, stats, record details, checkpoints and inclusion proofs;
- an export a minute, NDJSON, CSV and Parquet in turn, each downloaded and verified;
- webhook events to a receiver that fails one attempt in five;
- the retention purge, over an organization whose records are written already past its
  retention while a legal hold keeps them, the hold lifted halfway (a record retention would
  purge at once is refused: written without the hold, each made its month's partition again
  for the purge to drop again);
- hostile clients from 127.0.0.2: oversized, slow, malformed and unauthenticated requests;

and a fault every ``--fault-every`` seconds, round robin: SIGKILL of a ``serve`` child, SIGKILL
of a worker (started again, as a supervisor would), and restarts of PostgreSQL, Redis (which
keeps nothing) and SeaweedFS.

At the end it checks and prints: every acknowledged write present exactly once (a final export
and the log agree), every checkpoint seen consistent with the next and the last, every export
succeeded or failed with a reason and every succeeded one verifies, every webhook event
delivered at least once under one id, no 5xx but 503 with ``Retry-After`` during a fault, every
hostile request refused with a 4xx (each probe's answers counted), the peak RSS of every
process against its budget, the retired organization's records purged once its hold was
lifted; and throughput and p99 per minute, as a table and
a chart (``soak.png``). Exits 1 when a check fails. The plain-script baseline of the other
benchmarks has no counterpart here: the run is measured against kbaudit's own guarantees, and
each minute's throughput against the run's minutes without a fault.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import select
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx2
import msgspec
import orjson
import pyarrow.parquet as pq
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bench.common import OUT, free_port, peak_rss_mb, percentile, without_nulls
from kbaudit.crypto import merkle
from kbaudit.crypto.checkpoint import open_checkpoint
from kbaudit.crypto.signing import PublicKey
from kbaudit.demo import demo_records
from kbaudit.services.verify import read_keys, verify_export
from kbaudit_sdk import AuditError, AuditReader

ROOT = Path(__file__).resolve().parents[1]
AUDIT = "/v1/knowledge-base/audit"
# Ports of its own: the run restarts these servers, never the test suite's (SeaweedFS also
# takes each port + 10000; all stay below the kernel's ephemeral ports, 32768 and up).
PORTS = {
    "KBAUDIT_TEST_PG_PORT": "21432",
    "KBAUDIT_TEST_REDIS_PORT": "21379",
    "KBAUDIT_TEST_S3_PORT": "21333",
}
# A throwaway master key for a loopback-only run.
MASTER_KEY = "1:" + base64.b64encode(b"kbaudit-soak-run-master-key-32by").decode()
HOSTILE_ADDRESS = "127.0.0.2"  # its failed keys throttle that address, not the writers'
BATCH = 25
TWO_PHASE_SHARE = 0.3
EXPORT_FORMATS = ("ndjson", "csv", "parquet")
ENDED = ("succeeded", "partial", "failed", "expired")
RECEIVER_FAILURE_RATE = 0.2
RETENTION_DAYS = 90
STATS_POLL_SECONDS = 15.0  # a console overview left open refreshes about this often
SWEEP_SECONDS = 10  # the workers' upkeep (purge, export sweep): often, so a short run sees it
AFTER_FAULT_SECONDS = 30.0  # a 503 this long after a fault has ended is still the fault's
# Peak RSS budgets: an export worker's is the speed work's; an API process holds at most a
# few bodies at their cap (32 MiB) beside its code.
BUDGET_MB = {"serve (parent)": 150, "serve (API process)": 400, "worker": 300}


# -- the processes -------------------------------------------------------------------------


class Cluster:
    """The servers, ``kbaudit serve --processes 2`` and two workers, all under ``folder``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.services = folder / "services"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env: dict[str, str] = {}
        self.serve: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []
        self.worker_restarts = 0

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._services("start")
        services = _env_file(self.services / "env")
        self.env = {
            **os.environ,
            **services,
            "KBAUDIT_DATA_DIR": str(self.folder / "data"),
            "KBAUDIT_DATABASE_URL": _fresh_database(services["KBAUDIT_TEST_PG_ADMIN_URL"]),
            "KBAUDIT_BLOB_URL": f"s3://kbaudit/soak-{uuid.uuid4().hex[:8]}",
            "KBAUDIT_S3_ENDPOINT": services["KBAUDIT_TEST_S3_ENDPOINT"],
            "KBAUDIT_QUEUE_URL": services["KBAUDIT_TEST_REDIS_URL"],
            "KBAUDIT_QUEUE_NAME": "soak",
            "KBAUDIT_MASTER_KEY": MASTER_KEY,
            "KBAUDIT_WEBHOOK_ALLOW_PRIVATE": "true",
            "KBAUDIT_SWEEP_INTERVAL_SECONDS": str(SWEEP_SECONDS),
            "KBAUDIT_EXPORT_MAX_ACTIVE_PER_ORG": "4",
            "KBAUDIT_EXPORT_ROWS_PER_FILE": "20000",
            "KBAUDIT_LOG_LEVEL": "warning",
        }
        self.kbaudit("migrate")
        self.serve = self._start("serve", "--port", str(self.port), "--processes", "2")
        self.workers = [self._start("worker") for _ in range(2)]
        _wait_until(lambda: httpx2.get(f"{self.url}/readyz", timeout=2).status_code == 200, 120)

    def stop(self) -> None:
        """Everything started, also after a start that failed halfway."""
        started = [p for p in (self.serve, *self.workers) if p is not None]
        for process in started:
            process.terminate()
        for process in started:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
        self._services("stop")

    def kbaudit(self, *args: str) -> str:
        done = subprocess.run([*_KBAUDIT, *args], env=self.env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"kbaudit {args[0]}: {done.stderr}")
        return done.stdout.strip()

    def key(self, org: str, scopes: str) -> str:
        return self.kbaudit("keys", "create", "--org", org, "--scopes", scopes).splitlines()[-1]

    @property
    def running(self) -> subprocess.Popen[bytes]:
        assert self.serve is not None, "the cluster is not started"
        return self.serve

    def processes(self) -> dict[str, list[int]]:
        """kbaudit's processes by role."""
        return {
            "serve (parent)": [self.running.pid],
            "serve (API process)": self.api_processes(),
            "worker": [worker.pid for worker in self.workers],
        }

    def api_processes(self) -> list[int]:
        # The serve parent's other child is multiprocessing's resource tracker.
        return [pid for pid in _children(self.running.pid) if b"spawn_main" in _cmdline(pid)]

    def keep_workers(self) -> None:
        """Start again a worker that died, as systemd or Kubernetes would."""
        for index, worker in enumerate(self.workers):
            if worker.poll() is not None:
                self.workers[index] = self._start("worker")
                self.worker_restarts += 1

    def faults(self) -> Iterator[tuple[str, Callable[[], None]]]:
        """The faults, round robin, forever."""
        while True:
            yield "SIGKILL an API process", self._kill_api_process
            yield "SIGKILL a worker", self._kill_worker
            yield "restart PostgreSQL", lambda: self._services("restart-pg")
            yield "restart Redis", lambda: self._services("restart-redis")
            yield "restart SeaweedFS", lambda: self._services("restart-s3")

    def _kill_api_process(self) -> None:
        victims = self.api_processes()
        os.kill(random.choice(victims), signal.SIGKILL)
        _wait_until(lambda: len(set(self.api_processes()) - set(victims)) == 1, 60)

    def _kill_worker(self) -> None:
        worker = random.choice(self.workers)
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        _wait_until(lambda: all(w.poll() is None for w in self.workers), 30)

    def _start(self, command: str, *args: str) -> subprocess.Popen[bytes]:
        with (self.folder / f"{command}.log").open("ab") as log:
            return subprocess.Popen(
                [*_KBAUDIT, command, *args], env=self.env, stdout=subprocess.DEVNULL, stderr=log
            )

    def _services(self, command: str) -> None:
        subprocess.run(
            [str(ROOT / "scripts/services.sh"), command, str(self.services)],
            env={**os.environ, **PORTS},
            check=True,
            stdout=subprocess.DEVNULL,
        )


_KBAUDIT = (sys.executable, "-m", "kbaudit.cli")


def _env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        values[name] = shlex.split(value)[0]
    return values


def _fresh_database(admin_url: str) -> str:
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text("DROP DATABASE IF EXISTS kbaudit_soak WITH (FORCE)"))
        connection.execute(text("CREATE DATABASE kbaudit_soak"))
    admin.dispose()
    return make_url(admin_url).set(database="kbaudit_soak").render_as_string(hide_password=False)


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return b""


def _wait_until(ready: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if ready():
                return
        except httpx2.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"not ready within {seconds} s")


# -- what every client saw -----------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    at: float  # seconds into the run, when it came
    kind: str  # write, read, export, purge, hostile
    status: int  # 0: no answer (the connection failed)
    seconds: float
    retry_after: bool


class Journal:
    """Every answer any client had, and the faults, in the run's time."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.answers: list[Answer] = []
        self.faults: list[tuple[str, float, float]] = []  # name, start, end
        self.acked_rows: list[tuple[float, int]] = []

    def now(self) -> float:
        return time.monotonic() - self.started

    def client(self, kind: str, base_url: str, **options: Any) -> httpx2.Client:
        """An HTTP client whose every answer is journaled as ``kind``."""

        def sent(request: httpx2.Request) -> None:
            request.extensions["soak_sent"] = time.monotonic()

        def answered(response: httpx2.Response) -> None:
            sent_at = response.request.extensions.get("soak_sent", time.monotonic())
            retry_after = "retry-after" in response.headers
            self.add(kind, response.status_code, time.monotonic() - sent_at, retry_after)

        hooks: dict[str, list[Callable[..., Any]]] = {"request": [sent], "response": [answered]}
        return httpx2.Client(base_url=base_url, timeout=60, event_hooks=hooks, **options)

    def add(self, kind: str, status: int, seconds: float, retry_after: bool = False) -> None:
        self.answers.append(Answer(self.now(), kind, status, seconds, retry_after))

    def during_fault(self, at: float) -> bool:
        return any(start <= at <= end + AFTER_FAULT_SECONDS for _, start, end in self.faults)


# -- writers -------------------------------------------------------------------------------


class Records:
    """Realistic records (the demo's), each made anew with a fresh id at the time of use."""

    def __init__(self) -> None:
        end = datetime.now(UTC)
        self._pool = [without_nulls(msgspec.to_builtins(r)) for r in demo_records(300, end=end)]

    def make(self, created_at: datetime) -> dict[str, Any]:
        record = dict(random.choice(self._pool))
        record_id = uuid.uuid4()
        finalized_at = created_at + timedelta(milliseconds=record.get("duration_ms", 0))
        record.update(
            id=str(record_id),
            request_id=f"req_{record_id.hex[:16]}",
            trace_id=record_id.hex,
            created_at=_instant(created_at),
            intent_recorded_at=_instant(created_at),
            finalized_at=_instant(finalized_at),
            audit_write_status="finalized",
        )
        return record


def intent_of(record: dict[str, Any]) -> dict[str, Any]:
    intent = {**record, "audit_write_status": "intent_recorded"}
    del intent["finalized_at"]
    return intent


def _instant(instant: datetime) -> str:
    return instant.isoformat().replace("+00:00", "Z")


@dataclass
class Acknowledged:
    """What the server acknowledged, by record id: the writes (phases) of each."""

    phases: dict[str, list[str]] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)  # what the server said
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, records: list[dict[str, Any]]) -> None:
        with self.lock:
            for record in records:
                self.phases.setdefault(record["id"], []).append(record["audit_write_status"])

    def leaves(self) -> int:
        """Each accepted write is a leaf: an intent and its outcome are two."""
        return sum(len(phases) for phases in self.phases.values())


class Writer:
    """Writes batches until told to stop; a batch begun is sent until acknowledged, after the
    stop too (a writer that gave up could not know what the server kept)."""

    def __init__(self, journal: Journal, url: str, key: str, acked: Acknowledged) -> None:
        self.journal = journal
        self.http = journal.client("write", url, headers={"x-api-key": key})
        self.acked = acked
        self.records = Records()

    def run(
        self, stop: threading.Event, created_at: Callable[[], datetime], pause: float = 0.0
    ) -> None:
        while not stop.wait(pause):
            batch = [self.records.make(created_at()) for _ in range(BATCH)]
            if random.random() < TWO_PHASE_SHARE:
                self.send([intent_of(record) for record in batch])
            self.send(batch)

    def send(self, batch: list[dict[str, Any]]) -> None:
        body = orjson.dumps({"items": batch})
        headers = {"content-type": "application/json"}
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            try:
                answer = self.http.post(f"{AUDIT}/retrievals", content=body, headers=headers)
            except httpx2.TransportError:
                self.journal.add("write", 0, 0.0)
                time.sleep(0.5)
                continue
            if answer.status_code == 200:
                self.acked.add(batch)
                self.journal.acked_rows.append((self.journal.now(), len(batch)))
                return
            if answer.status_code not in (429, 503):
                self.acked.refusals.append(f"{answer.status_code} {answer.text[:200]}")
                break
            time.sleep(min(float(answer.headers.get("retry-after", 1)), 2.0))
        self.acked.refused.extend(record["id"] for record in batch)


# -- readers -------------------------------------------------------------------------------


class Reader:
    """Queries, stats, record details, proofs; keeps every checkpoint it is shown."""

    def __init__(self, journal: Journal, url: str, key: str, acked: Acknowledged) -> None:
        self.http = journal.client("read", url, headers={"x-api-key": key})
        self.acked = acked
        self.checkpoints: list[str] = []

    def run(self, stop: threading.Event, window: dict[str, str]) -> None:
        looks = [self._page, self._detail, self._proof, self._checkpoint]
        charted = 0.0
        while not stop.is_set():
            # The stats route as a dashboard polls it; every other look as fast as it goes.
            chart_now = time.monotonic() - charted > STATS_POLL_SECONDS
            look = self._stats if chart_now else random.choice(looks)
            charted = time.monotonic() if chart_now else charted
            try:
                look(window)
            except httpx2.TransportError:
                time.sleep(0.5)
            time.sleep(0.2)

    def _page(self, window: dict[str, str]) -> None:
        self.http.get(f"{AUDIT}/retrievals", params={**window, "limit": 50})

    def _stats(self, window: dict[str, str]) -> None:
        self.http.get(f"{AUDIT}/stats", params=window)

    def _detail(self, _window: dict[str, str]) -> None:
        if ref := self._some_record():
            self.http.get(f"{AUDIT}/retrievals/{ref}")

    def _proof(self, _window: dict[str, str]) -> None:
        if ref := self._some_record():
            self.http.get(f"{AUDIT}/retrievals/{ref}/proof")

    def _checkpoint(self, _window: dict[str, str]) -> None:
        answer = self.http.get(f"{AUDIT}/log/checkpoint")
        if answer.status_code == 200:
            self.checkpoints.append(answer.text)

    def _some_record(self) -> str | None:
        with self.acked.lock:
            ids = list(self.acked.phases)[-2000:]
        return random.choice(ids) if ids else None


# -- exports -------------------------------------------------------------------------------


@dataclass
class ExportRun:
    export_id: str | None = None
    export_format: str = ""
    status: str = "not started"
    error: str | None = None
    verified_rows: int | None = None
    checkpoint_size: int | None = None
    ids: list[tuple[str, str]] = field(default_factory=list)  # (id, audit_write_status)


class Exporter:
    """Requests an export, waits for it, downloads and verifies it, through any fault."""

    def __init__(self, journal: Journal, url: str, key: str, folder: Path) -> None:
        self.journal = journal
        self.url = url
        self.key = key
        self.folder = folder
        self.runs: list[ExportRun] = []

    def export(
        self, window: dict[str, str], export_format: str, keep_ids: bool = False
    ) -> ExportRun:
        run = ExportRun(export_format=export_format)
        self.runs.append(run)
        once = uuid.uuid4().hex  # the same key for every try: one export, however many tries
        start, end = window["start"], window["end"]
        with AuditReader(self.url, self.key, http=self._http()) as reader:
            try:
                run.export_id = _patiently(
                    lambda: reader.export(start, end, export_format, idempotency_key=once)
                )
                job = _ended(reader, str(run.export_id))
            except AuditError as exc:
                busy = exc.status == 409 and exc.body.get("error") == "export_in_progress"
                run.status, run.error = ("skipped" if busy else "lost"), repr(exc)
                return run
            except Exception as exc:  # what the run reports, not a reason to stop it
                run.status, run.error = "lost", repr(exc)
                return run
            run.status, run.error = job["status"], job.get("error_code")
            if run.status in ("succeeded", "partial"):
                self._verify(reader, run, keep_ids)
        return run

    def _verify(self, reader: AuditReader, run: ExportRun, keep_ids: bool) -> None:
        target = self.folder / str(run.export_id)
        try:
            paths = _patiently(lambda: reader.download(str(run.export_id), target))
            keys = read_keys(_patiently(reader.signing_keys))
            verified = verify_export(target, keys, export_id=run.export_id)
        except Exception as exc:  # reported as this export's failure
            run.error = f"not verified: {exc!r}"
            return
        run.verified_rows = verified.rows
        run.checkpoint_size = verified.checkpoint.size
        if keep_ids:
            run.ids = [row for path in paths for row in _rows_of(path)]

    def _http(self) -> httpx2.Client:
        return self.journal.client("export", self.url, headers={"x-api-key": self.key})


def _ended(reader: AuditReader, export_id: str, seconds: float = 1800) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        job: dict[str, Any] = _patiently(lambda: reader.job(export_id))
        if job["status"] in ENDED:
            return job
        time.sleep(2)
    raise TimeoutError(f"export {export_id} has not ended after {seconds} s")


def _patiently(call: Callable[[], Any], seconds: float = 300) -> Any:
    """The call, tried again through what a fault causes (a lost connection, a 503) and
    through a 429 (four exports running already)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return call()
        except Exception as exc:
            status = getattr(exc, "status", 0)
            passing = isinstance(exc, httpx2.TransportError) or status in (429, 503)
            if not passing or time.monotonic() > deadline:
                raise
            time.sleep(1)


def _rows_of(path: Path) -> list[tuple[str, str]]:
    if path.name.endswith(".ndjson"):
        lines = path.read_bytes().splitlines()
        return [(row["id"], row["audit_write_status"]) for row in map(orjson.loads, lines)]
    if path.name.endswith(".parquet"):
        table = pq.read_table(path, columns=["id", "audit_write_status"]).to_pylist()
        return [(row["id"], row["audit_write_status"]) for row in table]
    return []


# -- the webhook receiver ------------------------------------------------------------------


class Receiver:
    """Takes webhook events on 127.0.0.1, failing one attempt in five with a 500."""

    def __init__(self) -> None:
        self.received: dict[str, set[bytes]] = {}
        self.attempts = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(min(int(self.headers.get("content-length", 0)), 1 << 20))
                receiver.attempts += 1
                if random.random() < RECEIVER_FAILURE_RATE:
                    self.send_response(500)
                else:
                    receiver.received.setdefault(self.headers["webhook-id"], set()).add(body)
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


# -- hostile clients -----------------------------------------------------------------------


class Hostile:
    """Requests that must each get a 4xx, from an address of their own."""

    def __init__(self, journal: Journal, cluster: Cluster, key: str) -> None:
        self.journal = journal
        self.port = cluster.port
        self.key = key
        transport = httpx2.HTTPTransport(local_address=HOSTILE_ADDRESS)
        self.http = journal.client("hostile", cluster.url, transport=transport)
        self.answers: dict[str, Counter[int]] = defaultdict(Counter)  # by probe; 0: none

    def run(self, stop: threading.Event) -> None:
        probes = [
            self._anonymous_huge_body,
            self._oversized_policy,
            self._not_a_number,
            self._nul_in_path,
            self._huge_number,
            self._huge_header,
            self._deep_nesting,
            self._anonymous_huge_body,
            self._not_a_number,
            self._wrong_key,  # one in ten: under the throttle, most of the time
        ]
        while not stop.is_set():
            for probe in probes:
                self._try(probe)
                time.sleep(0.5)

    def run_slow(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self._try(self._slow_body)

    def _try(self, probe: Callable[[], int]) -> None:
        try:
            status = probe()
        except (httpx2.TransportError, OSError):
            self.journal.add("hostile", 0, 0.0)
            status = 0
        self.answers[probe.__name__.strip("_").replace("_", " ")][status] += 1

    def _slow_body(self) -> int:
        """A body sent a byte a second, for longer than a whole body may take."""
        head = self._head("POST", f"{AUDIT}/exports", 10_000, {"x-api-key": self.key})
        return self._raw(head, (b"{" for _ in range(45)), pause=1.0)

    def _send(
        self, method: str, path: str, body: bytes | None = None, key: str | None = None
    ) -> int:
        headers = {"x-api-key": key or self.key, "content-type": "application/json"}
        return self.http.request(method, path, content=body, headers=headers).status_code

    def _anonymous_huge_body(self) -> int:
        head = self._head("POST", f"{AUDIT}/exports", 64 << 20, {})
        return self._raw(head, (b"x" * (1 << 20) for _ in range(64)))

    def _oversized_policy(self) -> int:
        body = b'{"legal_hold_reason": "' + b"x" * (64 << 10) + b'"}'
        return self._send("PUT", "/v1/knowledge-base/retention-policy", body)

    def _not_a_number(self) -> int:
        body = b'{"start": "2026-01-01T00:00:00Z", "end": NaN, "export_format": "csv"}'
        return self._send("POST", f"{AUDIT}/exports", body)

    def _nul_in_path(self) -> int:
        return self._send("GET", f"{AUDIT}/retrievals/a%00b")

    def _huge_number(self) -> int:
        return self._send(
            "POST", f"{AUDIT}/retrievals", b'{"items": [{"id": 1' + b"0" * 5000 + b"}]}"
        )

    def _deep_nesting(self) -> int:
        body = b'{"items": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
        return self._send("POST", f"{AUDIT}/retrievals", body)

    def _huge_header(self) -> int:
        head = self._head("GET", "/healthz", 0, {"x-padding": "p" * (80 << 10)})
        return self._raw(head, iter(()))

    def _wrong_key(self) -> int:
        return self._send("GET", f"{AUDIT}/retrievals", key="kba_wrong_" + "0" * 40)

    def _head(self, method: str, path: str, length: int, headers: dict[str, str]) -> bytes:
        lines = [f"{method} {path} HTTP/1.1", f"host: 127.0.0.1:{self.port}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        lines += [f"content-length: {length}", "content-type: application/json", "", ""]
        return "\r\n".join(lines).encode()

    def _raw(self, head: bytes, rest: Iterator[bytes], pause: float = 0.0) -> int:
        """Sends until the server answers or stops reading; journals its status."""
        started = time.monotonic()
        address = ("127.0.0.1", self.port)
        with socket.create_connection(address, 60, source_address=(HOSTILE_ADDRESS, 0)) as sock:
            sock.sendall(head)
            for chunk in rest:
                if select.select([sock], [], [], pause)[0]:
                    break  # answered before the body was all sent, as it should be
                sock.sendall(chunk)
            answer = sock.recv(4096)
        status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0
        self.journal.add("hostile", status, time.monotonic() - started, b"retry-after" in answer)
        return status


# -- the run -------------------------------------------------------------------------------


class Watcher:
    """Once a second: the peak RSS of every process, and a dead worker started again."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.peaks: dict[str, int] = {}
        self.serve_exited = False

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(1.0):
            self.look()

    def look(self) -> None:
        self.cluster.keep_workers()
        self.serve_exited |= self.cluster.running.poll() is not None
        for role, pids in self.cluster.processes().items():
            for pid in pids:
                if (peak := peak_rss_mb(pid)) is not None:
                    self.peaks[role] = max(self.peaks.get(role, 0), peak)


def inject_faults(cluster: Cluster, journal: Journal, every: float, stop: threading.Event) -> None:
    faults = cluster.faults()
    while not stop.wait(every):
        name, fault = next(faults)
        started = journal.now()
        fault()
        journal.faults.append((name, started, journal.now()))
        print(f"{started:7.0f} s  {name} ({journal.now() - started:.1f} s)", flush=True)


@dataclass
class Soak:
    cluster: Cluster
    journal: Journal
    minutes: float
    fault_every: float
    acked: Acknowledged = field(default_factory=Acknowledged)
    retired_acked: Acknowledged = field(default_factory=Acknowledged)
    refused_once_retired: str = "never sent"

    def run(self) -> Checks:
        cluster, journal = self.cluster, self.journal
        admin = cluster.key("soak", "kb_audit:read,kb_audit:export,kb_audit:write,kb_audit:admin")
        retired = cluster.key("retired", "kb_audit:read,kb_audit:write,kb_audit:admin")
        receiver = Receiver()
        webhook = _created(
            httpx2.post(
                f"{cluster.url}{AUDIT}/webhooks",
                json={"url": receiver.url},
                headers={"x-api-key": admin},
            )
        )
        _created(
            httpx2.put(
                f"{cluster.url}/v1/knowledge-base/retention-policy",
                json={"retention_days": RETENTION_DAYS, "legal_hold_enabled": True},
                headers={"x-api-key": retired},
            )
        )
        begun = datetime.now(UTC)
        window = {
            "start": _instant(begun - timedelta(hours=1)),
            "end": _instant(begun + timedelta(days=1)),
        }
        exporter = Exporter(journal, cluster.url, admin, cluster.folder / "exports")
        readers = [Reader(journal, cluster.url, admin, self.acked) for _ in range(2)]
        watcher = Watcher(cluster)
        hostile = Hostile(journal, cluster, admin)
        stop, writers_stop = threading.Event(), threading.Event()
        now: Callable[[], datetime] = lambda: datetime.now(UTC)  # noqa: E731
        long_ago: Callable[[], datetime] = lambda: now() - timedelta(days=2 * RETENTION_DAYS)  # noqa: E731
        loads: list[tuple[Callable[..., None], tuple[Any, ...]]] = [
            *(
                (Writer(journal, cluster.url, admin, self.acked).run, (writers_stop, now))
                for _ in range(3)
            ),
            (self._retire_halfway, (cluster.url, retired, long_ago)),
            *((reader.run, (stop, window)) for reader in readers),
            (watcher.run, (stop,)),
            (hostile.run, (stop,)),
            (hostile.run_slow, (stop,)),
            (inject_faults, (cluster, journal, self.fault_every, stop)),
            (self._export_every_minute, (exporter, window, stop)),
        ]
        threads = [threading.Thread(target=run, args=args, daemon=True) for run, args in loads]
        for thread in threads:
            thread.start()
        time.sleep(self.minutes * 60)
        print(f"{journal.now():7.0f} s  load stops; the checks begin", flush=True)
        writers_stop.set()
        stop.set()
        for thread in threads:
            thread.join(timeout=900)
        final = exporter.export(
            {**window, "end": _instant(now() + timedelta(minutes=1))}, "ndjson", keep_ids=True
        )
        return Checks(
            journal=journal,
            acked=self.acked,
            final=final,
            exports=exporter.runs[:-1],
            checkpoints=[note for reader in readers for note in reader.checkpoints],
            deliveries=_settled_deliveries(cluster.url, admin, webhook["id"]),
            receiver=receiver,
            peaks=watcher.peaks,
            serve_exited=watcher.serve_exited,
            retired_left=_retired_left(cluster.url, retired),
            retired_written=len(self.retired_acked.phases),
            refused_once_retired=self.refused_once_retired,
            hostile=hostile.answers,
            reader=AuditReader(cluster.url, admin),
            worker_restarts=cluster.worker_restarts,
        )

    def _retire_halfway(self, url: str, key: str, long_ago: Callable[[], datetime]) -> None:
        """Records past retention go in while the hold keeps them; halfway, the hold is lifted
        and the purge has them, and a record past retention is refused."""
        halfway = threading.Event()
        writer = Writer(self.journal, url, key, self.retired_acked)
        thread = threading.Thread(target=writer.run, args=(halfway, long_ago, 2.0), daemon=True)
        thread.start()
        time.sleep(self.minutes * 30)
        halfway.set()
        thread.join(timeout=900)
        policy = f"{url}/v1/knowledge-base/retention-policy"
        lift = {"legal_hold_enabled": False}
        _until_answered(lambda: httpx2.put(policy, json=lift, headers={"x-api-key": key}))
        late = orjson.dumps({"items": [writer.records.make(long_ago())]})
        headers = {"x-api-key": key, "content-type": "application/json"}
        answer = _until_answered(
            lambda: httpx2.post(f"{url}{AUDIT}/retrievals", content=late, headers=headers)
        )
        self.refused_once_retired = f"{answer.status_code} {answer.text[:80]}"

    def _export_every_minute(
        self, exporter: Exporter, window: dict[str, str], stop: threading.Event
    ) -> None:
        running: list[threading.Thread] = []
        turn = 0
        while not stop.wait(60.0 if turn else 15.0):
            export_format = EXPORT_FORMATS[turn % len(EXPORT_FORMATS)]
            thread = threading.Thread(target=exporter.export, args=(window, export_format))
            thread.start()
            running.append(thread)
            turn += 1
        for thread in running:
            thread.join(timeout=900)


def _created(answer: httpx2.Response) -> dict[str, Any]:
    if answer.status_code not in (200, 201):
        raise RuntimeError(f"{answer.request.url.path}: {answer.status_code} {answer.text}")
    result: dict[str, Any] = answer.json()
    return result


def _refused(status: int) -> bool:
    return 400 <= status < 500 or status in (0, 503)


def _until_answered(call: Callable[[], httpx2.Response]) -> httpx2.Response:
    """The answer that is not a fault's (a lost connection, a 503), within five minutes."""
    deadline = time.monotonic() + 300
    while True:
        try:
            answer = call()
            if answer.status_code != 503 or time.monotonic() > deadline:
                return answer
        except httpx2.TransportError:
            if time.monotonic() > deadline:
                raise
        time.sleep(1)


def _settled_deliveries(url: str, key: str, webhook_id: str) -> list[dict[str, Any]]:
    """The webhook's events, once none is still pending (or after five minutes)."""
    path = f"{url}{AUDIT}/webhooks/{webhook_id}/deliveries"
    deadline = time.monotonic() + 300
    while True:
        events: list[dict[str, Any]] = _patiently(
            lambda: _created(httpx2.get(path, params={"limit": 200}, headers={"x-api-key": key}))
        )
        if time.monotonic() > deadline or all(e["status"] != "pending" for e in events):
            return events
        time.sleep(2)


def _retired_left(url: str, key: str) -> int:
    """Records of the retired organization past its retention, once the purge has had three
    turns to delete them."""
    now = datetime.now(UTC)
    window = {
        "start": _instant(now - timedelta(days=3650)),
        "end": _instant(now - timedelta(days=RETENTION_DAYS)),
    }
    deadline = time.monotonic() + 3 * SWEEP_SECONDS + 30
    while True:
        page = _patiently(
            lambda: _created(
                httpx2.get(
                    f"{url}{AUDIT}/retrievals",
                    params={**window, "limit": 200},
                    headers={"x-api-key": key},
                )
            )
        )
        if not page["items"] or time.monotonic() > deadline:
            return len(page["items"])
        time.sleep(2)


# -- the checks ----------------------------------------------------------------------------


@dataclass
class Checks:
    journal: Journal
    acked: Acknowledged
    final: ExportRun
    exports: list[ExportRun]
    checkpoints: list[str]
    deliveries: list[dict[str, Any]]
    receiver: Receiver
    peaks: dict[str, int]
    serve_exited: bool
    retired_left: int
    retired_written: int
    refused_once_retired: str
    hostile: dict[str, Counter[int]]
    reader: AuditReader
    worker_restarts: int
    results: list[tuple[str, bool, str]] = field(default_factory=list)

    def run(self) -> bool:
        for check in (
            self._written_once,
            self._log_agrees,
            self._checkpoints_consistent,
            self._exports_ended,
            self._webhooks_delivered,
            self._no_server_errors,
            self._hostile_refused,
            self._memory,
            self._purged,
        ):
            try:
                ok, detail = check()
            except Exception as exc:  # a check that cannot run has failed
                ok, detail = False, repr(exc)
            self.results.append((check.__name__.strip("_").replace("_", " "), ok, detail))
        return all(ok for _, ok, _ in self.results)

    def _written_once(self) -> tuple[bool, str]:
        exported = self.final.ids
        latest = {record_id: phases[-1] for record_id, phases in self.acked.phases.items()}
        duplicated = len(exported) - len({record_id for record_id, _ in exported})
        missing = latest.keys() - {record_id for record_id, _ in exported}
        unknown = {record_id for record_id, _ in exported} - latest.keys()
        wrong = sum(1 for record_id, status in exported if latest.get(record_id, status) != status)
        detail = (
            f"{len(latest):,} records acknowledged, {len(exported):,} rows in the final export "
            f"({self.final.status}): {len(missing)} missing, {duplicated} twice, {len(unknown)} "
            f"never acknowledged, {wrong} in another state; {len(self.acked.refused)} refused"
        )
        detail += "".join(f"; refused: {said}" for said in self.acked.refusals[:5])
        ok = self.final.verified_rows == len(exported) and not (
            missing or duplicated or unknown or wrong or self.acked.refused
        )
        return ok, detail

    def _log_agrees(self) -> tuple[bool, str]:
        expected = self.acked.leaves()
        current, _ = open_checkpoint(self.reader.checkpoint(), self._keys())
        detail = (
            f"{expected:,} writes acknowledged; the final export's checkpoint holds "
            f"{self.final.checkpoint_size:,} leaves, the log now {current.size:,}"
        )
        return self.final.checkpoint_size == expected == current.size, detail

    def _checkpoints_consistent(self) -> tuple[bool, str]:
        keys = self._keys()
        final, _ = open_checkpoint(self.reader.checkpoint(), keys)
        seen = sorted(
            {c.size: c for c in (open_checkpoint(n, keys)[0] for n in self.checkpoints)}.values(),
            key=lambda c: c.size,
        )
        bad = 0
        for older, newer in [*pairwise(seen), *((c, final) for c in seen)]:
            proof = self.reader.consistency(older.size, newer.size)["proof"]
            hashes = [base64.b64decode(h) for h in proof]
            bad += not merkle.verify_consistency(
                older.size, newer.size, older.root, newer.root, hashes
            )
        detail = f"{len(self.checkpoints)} checkpoints seen, {len(seen)} sizes: {bad} inconsistent"
        return bool(seen) and not bad, detail

    def _exports_ended(self) -> tuple[bool, str]:
        tally: dict[str, int] = {}
        bad = []
        for run in self.exports:
            fine = (
                run.verified_rows is not None
                if run.status in ("succeeded", "partial")
                # Failed with a reason, or not begun because four were running already.
                else bool(run.status in ("failed", "skipped") and run.error)
            )
            tally[run.status] = tally.get(run.status, 0) + 1
            if not fine:
                bad.append(f"{run.export_id} {run.export_format} {run.status}: {run.error}")
        verified = sum(run.verified_rows is not None for run in self.exports)
        failed = [
            f"{run.export_format}: {run.error}" for run in self.exports if run.status == "failed"
        ]
        detail = f"{len(self.exports)} exports {tally}, {verified} verified"
        detail += "".join(f"; failed with {reason}" for reason in failed)
        detail += "".join(f"; NOT fine: {line}" for line in bad)
        return bool(self.exports) and not bad, detail

    def _webhooks_delivered(self) -> tuple[bool, str]:
        by_export = {e["export_id"] for e in self.deliveries}
        ended = [
            r.export_id
            for r in [*self.exports, self.final]
            if r.status in ("succeeded", "partial", "failed")
        ]
        unannounced = [export_id for export_id in ended if export_id not in by_export]
        undelivered = [e["id"] for e in self.deliveries if e["status"] != "delivered"]
        unseen = [e["id"] for e in self.deliveries if e["id"] not in self.receiver.received]
        changed = [i for i, bodies in self.receiver.received.items() if len(bodies) > 1]
        detail = (
            f"{len(self.deliveries)} events, {self.receiver.attempts} attempts: "
            f"{len(undelivered)} not delivered, {len(unseen)} never received, {len(changed)} "
            f"received with different bodies, {len(unannounced)} ended exports without an event"
        )
        return not (undelivered or unseen or changed or unannounced), detail

    def _no_server_errors(self) -> tuple[bool, str]:
        server_errors = [a for a in self.journal.answers if a.status >= 500]
        honest = [
            a
            for a in server_errors
            if a.status == 503 and a.retry_after and self.journal.during_fault(a.at)
        ]
        others = [a for a in server_errors if a not in honest]
        lost = sum(a.status == 0 for a in self.journal.answers)
        detail = (
            f"{len(self.journal.answers):,} answers; {len(honest)} 503 with Retry-After during "
            f"faults, {len(others)} other 5xx, {lost} connections lost"
        )
        detail += "".join(f"; {a.status} {a.kind} at {a.at:.0f} s" for a in others[:10])
        return not others, detail

    def _hostile_refused(self) -> tuple[bool, str]:
        """Every hostile request got a 4xx, or met a fault (a 503, a lost connection)."""
        accepted = {
            probe: sorted(status for status in answers if not _refused(status))
            for probe, answers in self.hostile.items()
        }
        detail = "; ".join(
            f"{probe}: " + ", ".join(f"{n}x {status or 'lost'}" for status, n in sorted(a.items()))
            for probe, a in sorted(self.hostile.items())
        )
        return bool(self.hostile) and not any(accepted.values()), detail

    def _memory(self) -> tuple[bool, str]:
        over = [role for role, budget in BUDGET_MB.items() if self.peaks.get(role, 0) > budget]
        detail = ", ".join(
            f"{role} {self.peaks.get(role, 0)} MB of {budget}" for role, budget in BUDGET_MB.items()
        )
        return not over and not self.serve_exited, detail + (
            "; serve EXITED" if self.serve_exited else ""
        )

    def _purged(self) -> tuple[bool, str]:
        detail = (
            f"{self.retired_written:,} records written {2 * RETENTION_DAYS} days old to an "
            f"organization that keeps {RETENTION_DAYS}, under a hold lifted halfway: "
            f"{self.retired_left} left; one more, once lifted: {self.refused_once_retired}"
        )
        refused = self.refused_once_retired.startswith("422") and (
            "outside_retention" in self.refused_once_retired
        )
        return self.retired_written > 0 and self.retired_left == 0 and refused, detail

    def _keys(self) -> list[PublicKey]:
        return read_keys(self.reader.signing_keys())


# -- figures -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Minute:
    minute: int
    records_per_second: float
    write_p99_ms: float | None
    read_p99_ms: float | None
    unavailable: int  # 503s
    lost: int  # connections lost
    faults: str


def per_minute(journal: Journal, minutes: float) -> list[Minute]:
    rows = []
    for minute in range(int(minutes + 0.999)):
        start, end = minute * 60, (minute + 1) * 60

        def within(at: float, start: float = start, end: float = end) -> bool:
            return start <= at < end

        answers = [a for a in journal.answers if within(a.at)]
        rows.append(
            Minute(
                minute=minute + 1,
                records_per_second=sum(n for at, n in journal.acked_rows if within(at)) / 60,
                write_p99_ms=_p99_ms(answers, "write"),
                read_p99_ms=_p99_ms(answers, "read"),
                unavailable=sum(a.status == 503 for a in answers),
                lost=sum(a.status == 0 for a in answers),
                faults=", ".join(name for name, at, _ in journal.faults if within(at)),
            )
        )
    return rows


def _p99_ms(answers: list[Answer], kind: str) -> float | None:
    samples = [a.seconds for a in answers if a.kind == kind and a.status == 200]
    return round(percentile(samples, 0.99) * 1000, 1) if samples else None


def table(minutes: list[Minute]) -> str:
    lines = [
        "| minute | records/s | write p99 ms | read p99 ms | 503s | lost | fault |",
        "|---:" * 6 + "|---|",
    ]
    for m in minutes:
        lines.append(
            f"| {m.minute} | {m.records_per_second:,.0f} | {m.write_p99_ms} | {m.read_p99_ms} "
            f"| {m.unavailable} | {m.lost} | {m.faults} |"
        )
    return "\n".join(lines)


def chart(journal: Journal, minutes: list[Minute], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import ScalarFormatter

    x = [m.minute - 0.5 for m in minutes]
    figure, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(10, 6))
    top.bar(x, [m.records_per_second for m in minutes], width=0.8, color="#4878a8")
    top.set_ylabel("records acknowledged / s")
    for kind, color in (("write", "#c05030"), ("read", "#50a050")):
        values = [getattr(m, f"{kind}_p99_ms") for m in minutes]
        bottom.plot(
            x,
            [v if v is not None else float("nan") for v in values],
            "o-",
            color=color,
            label=f"{kind} p99",
        )
    bottom.set_ylabel("p99 (ms)")
    bottom.set_yscale("log")
    bottom.yaxis.set_major_formatter(ScalarFormatter())
    bottom.set_xlabel("minute of the run")
    bottom.legend(loc="upper left")
    for name, start, end in journal.faults:
        for axes in (top, bottom):
            axes.axvspan(start / 60, max(end, start + 3) / 60, color="#e0a020", alpha=0.3)
        top.annotate(
            name.replace("restart ", "").replace("SIGKILL ", "kill "),
            (start / 60, 0),
            rotation=90,
            fontsize=7,
            va="bottom",
        )
    top.set_title("kbaudit soak: two API processes, two workers, a fault a minute (shaded)")
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


# -- main ----------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--fault-every", type=float, default=60.0, help="seconds between faults")
    parser.add_argument("--folder", type=Path, default=OUT / "soak")
    args = parser.parse_args()
    subprocess.run(["rm", "-rf", str(args.folder)], check=True)
    cluster = Cluster(args.folder)
    try:
        cluster.start()
        print(f"soak: {args.minutes} minutes, a fault every {args.fault_every:.0f} s", flush=True)
        checks = Soak(cluster, Journal(), args.minutes, args.fault_every).run()
        passed = checks.run()
    finally:
        cluster.stop()
    minutes = per_minute(checks.journal, args.minutes)
    chart(checks.journal, minutes, args.folder / "soak.png")
    print(table(minutes))
    print()
    for name, ok, detail in checks.results:
        print(f"{'PASS' if ok else 'FAIL'}  {name}: {detail}")
    print(f"peak RSS (MB): {checks.peaks}; workers restarted: {checks.worker_restarts}")
    report = {
        "minutes": [m.__dict__ for m in minutes],
        "checks": [{"check": n, "passed": ok, "detail": d} for n, ok, d in checks.results],
        "peak_rss_mb": checks.peaks,
        "faults": checks.journal.faults,
    }
    (args.folder / "soak.json").write_text(json.dumps(report, indent=2))
    print(f"chart: {args.folder / 'soak.png'}; figures: {args.folder / 'soak.json'}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())

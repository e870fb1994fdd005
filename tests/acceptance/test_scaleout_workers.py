"""The scale-out mode end to end: PostgreSQL, SeaweedFS and Redis, an API that only enqueues,
and three ``kbaudit worker`` processes that share one export's parts, through a worker killed
with SIGKILL and through restarts of the S3 server and of PostgreSQL.

These tests always run on the real servers (``scripts/services.sh``); ``./dev.sh test`` runs
them once, in the scale-out pass.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from kbaudit.store.engine import create_store_engine
from tests.acceptance.conftest import KBAUDIT, Cli, Serve
from tests.acceptance.test_export_cli import WINDOW, exported_ids, load
from tests.backends import redis_url, scaleout_env

pytestmark = pytest.mark.scaleout
SERVICES = Path(os.environ.get("KBAUDIT_TEST_SERVICES", "."))
SERVICES_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "services.sh"
RECORDS, ROWS_PER_FILE = 24_000, 1_000  # 24 parts
# The SIGKILL test looks at the parts a connection at a time (about 0.1 s a look) and must
# catch the export midway: three times the parts give it seconds rather than a second.
KILL_RECORDS = 3 * RECORDS


class Worker:
    def __init__(self, cli: Cli) -> None:
        self.process = subprocess.Popen(
            [*KBAUDIT, "worker", "--concurrency", "1"],
            env=cli.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )

    def wait_until_consuming(self, seconds: float = 60) -> None:
        """Until the worker says it takes parts: on a slow machine, the first worker up could
        otherwise run a whole export before the others start."""
        assert self.process.stderr is not None
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.process.stderr], [], [], deadline - time.monotonic())
            line = self.process.stderr.readline() if ready else ""
            if "kbaudit worker running" in line:
                self._drain()
                return
            if not line and self.process.poll() is not None:
                break
        raise AssertionError("the worker did not start taking parts")

    def _drain(self) -> None:
        """Keep reading what the worker logs: a pipe nobody reads fills up (64 KB), and the
        worker would then block in its next log line (a server restart makes many)."""
        stream = self.process.stderr
        assert stream is not None
        self.log: list[str] = []
        self._reader = threading.Thread(target=lambda: self.log.extend(stream), daemon=True)
        self._reader.start()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)
        reader = getattr(self, "_reader", None)
        if reader is not None:
            reader.join(timeout=10)  # the pipe ends with the process
        if self.process.stderr is not None:
            self.process.stderr.close()


@pytest.fixture
def cluster_cli(tmp_path: Path) -> Cli:
    cli = Cli(tmp_path / "data")
    cli.env |= scaleout_env()
    cli.env |= {
        "KBAUDIT_QUEUE_URL": redis_url(),
        "KBAUDIT_QUEUE_NAME": f"test-{uuid.uuid4().hex[:12]}",
        "KBAUDIT_EXPORT_ROWS_PER_FILE": str(ROWS_PER_FILE),
        "KBAUDIT_EXPORT_LEASE_SECONDS": "3",
        "KBAUDIT_EXPORT_RETRY_BACKOFF_SECONDS": "0.5",
        "KBAUDIT_SWEEP_INTERVAL_SECONDS": "0.5",
    }
    cli.run("migrate")
    return cli


@pytest.fixture
def workers(cluster_cli: Cli) -> Iterator[Callable[[int], list[Worker]]]:
    started: list[Worker] = []

    def start(count: int) -> list[Worker]:
        started.extend(Worker(cluster_cli) for _ in range(count))
        for worker in started[-count:]:
            worker.wait_until_consuming()
        return started[-count:]

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def api(cluster_cli: Cli) -> Iterator[Serve]:
    server = Serve(cluster_cli).start()
    yield server
    server.stop()


def parts(cli: Cli, export_id: str) -> list[tuple[int, str, str | None]]:
    return [
        (int(no), str(status), owner)
        for no, status, owner in cli.query(
            "SELECT part_no, status, lease_owner FROM export_parts WHERE job_id = :job "
            "ORDER BY part_no",
            job=export_id,
        )
    ]


def newest_claim_holder(cli: Cli, export_id: str) -> int:
    """The pid of the worker that most recently claimed or renewed a running part."""
    [(owner,)] = cli.query(
        "SELECT lease_owner FROM export_parts WHERE job_id = :job AND status = 'running' "
        "ORDER BY updated_at DESC LIMIT 1",
        job=export_id,
    )
    return int(str(owner).split(":")[1])


def wait_until(
    condition: Callable[[], bool], what: str, seconds: float = 120, poll: float = 0.05
) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(poll)
    raise AssertionError(f"timed out waiting for {what}")


def start_export(cli: Cli, api: Serve, key: str) -> str:
    cli.env.update({"KBAUDIT_URL": api.url, "KBAUDIT_API_KEY": key})
    return cli.run("export", "create", *WINDOW).stdout.splitlines()[-1]


def test_three_workers_share_an_export_and_survive_a_sigkill(
    cluster_cli: Cli, api: Serve, workers: Callable[[int], list[Worker]], tmp_path: Path
) -> None:
    key, ids = load(cluster_cli, tmp_path, KILL_RECORDS)
    pool = workers(3)
    export_id = start_export(cluster_cli, api, key)

    def a_part_runs_after_one_is_done() -> bool:
        statuses = [status for _, status, _ in parts(cluster_cli, export_id)]
        return "running" in statuses and "done" in statuses

    wait_until(a_part_runs_after_one_is_done, "a running part")
    stranded: list[int] = []
    # A part seen running may finish just before the signal lands, leaving its worker between
    # parts: then kill another, so that at least one worker dies in the middle of a part.
    for _ in range(2):
        victim_pid = newest_claim_holder(cluster_cli, export_id)
        [victim] = [w for w in pool if w.process.pid == victim_pid]
        victim.process.send_signal(signal.SIGKILL)
        victim.process.wait(timeout=30)
        stranded = [
            no
            for no, status, owner in parts(cluster_cli, export_id)
            if status == "running" and str(owner).split(":")[1] == str(victim_pid)
        ]
        if stranded:
            break
    assert stranded, "a worker was killed in the middle of a part"

    waited = cluster_cli.run("export", "wait", export_id)
    assert f"succeeded, {KILL_RECORDS} rows" in waited.stderr
    done = parts(cluster_cli, export_id)
    assert len(done) == KILL_RECORDS // ROWS_PER_FILE
    assert all(status == "done" for _, status, _ in done)
    for part_no in stranded:
        [(redone,)] = cluster_cli.query(
            "SELECT attempts FROM export_parts WHERE job_id = :job AND part_no = :no",
            job=export_id,
            no=part_no,
        )
        assert redone >= 2, "the killed worker's part was redone by another"
    out = tmp_path / "out"
    paths = cluster_cli.run("export", "download", export_id, "--out", str(out)).stdout
    assert exported_ids(paths.splitlines()) == ids


def test_parts_of_one_export_run_on_several_workers_at_once(
    cluster_cli: Cli, api: Serve, workers: Callable[[int], list[Worker]], tmp_path: Path
) -> None:
    key, _ = load(cluster_cli, tmp_path, RECORDS)
    workers(3)
    seen_together: set[str] = set()
    # One connection polled every few milliseconds: a part of 1,000 rows takes tens of
    # milliseconds, less than opening a connection per look (as Cli.query does) takes.
    engine = create_store_engine(cluster_cli.env["KBAUDIT_DATABASE_URL"])
    running = text(
        "SELECT lease_owner FROM export_parts WHERE job_id = :job AND status = 'running'"
    )
    try:
        with engine.connect() as connection:
            export_id = start_export(cluster_cli, api, key)

            def two_workers_hold_parts() -> bool:
                owners = connection.execute(running, {"job": export_id}).scalars().all()
                connection.rollback()  # the next look sees what committed since
                holders = {str(owner).split(":")[1] for owner in owners}
                seen_together.update(holders)
                return len(holders) >= 2

            wait_until(two_workers_hold_parts, "two workers holding parts at once", poll=0.002)
    finally:
        engine.dispose()
    assert "succeeded" in cluster_cli.run("export", "wait", export_id).stderr
    assert len(seen_together) >= 2


@pytest.mark.parametrize("server", ["s3", "pg"])
def test_a_server_restarted_mid_export_never_leaves_the_job_running(
    cluster_cli: Cli,
    api: Serve,
    workers: Callable[[int], list[Worker]],
    tmp_path: Path,
    server: str,
) -> None:
    key, ids = load(cluster_cli, tmp_path, RECORDS)
    workers(3)
    export_id = start_export(cluster_cli, api, key)
    wait_until(
        lambda: any(status == "done" for _, status, _ in parts(cluster_cli, export_id)),
        "the first part",
    )
    subprocess.run(
        [str(SERVICES_SCRIPT), f"restart-{server}", str(SERVICES)], check=True, timeout=120
    )
    waited = cluster_cli.run("export", "wait", export_id, check=False)
    [(status, total, failed)] = cluster_cli.query(
        "SELECT status, total_rows, failed_count FROM export_jobs WHERE id = :job", job=export_id
    )
    assert status in ("succeeded", "partial", "failed"), waited.stderr
    ended = parts(cluster_cli, export_id)
    assert all(part_status in ("done", "failed") for _, part_status, _ in ended)
    [(failed_rows,)] = cluster_cli.query(
        "SELECT coalesce(sum(planned_rows), 0) FROM export_parts "
        "WHERE job_id = :job AND status = 'failed'",
        job=export_id,
    )
    assert (failed or 0) == failed_rows
    if status == "succeeded":
        assert total == RECORDS
        out = tmp_path / "out"
        paths = cluster_cli.run("export", "download", export_id, "--out", str(out)).stdout
        assert exported_ids(paths.splitlines()) == ids

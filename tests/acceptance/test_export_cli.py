"""Exports through the real server, its in-process workers and the CLI client, including a
server killed with SIGKILL in the middle of a part."""

from __future__ import annotations

import csv
import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2
import msgspec
import orjson

from kbaudit.crypto.checkpoint import Checkpoint
from kbaudit.crypto.keyring import load_keyring
from kbaudit.crypto.signing import SigningKeys
from kbaudit.demo import demo_records
from kbaudit.runtime import YOUNG_OBJECTS
from tests.acceptance.conftest import KBAUDIT, RECENT_END, RECENT_WINDOW, Cli, Serve, free_port

WINDOW = ["--start", RECENT_WINDOW["start"], "--end", RECENT_WINDOW["end"]]


def load(cli: Cli, tmp_path: Path, count: int) -> tuple[str, list[str]]:
    """Import ``count`` demo records; returns a key and their ids, oldest first."""
    key = cli.key("acme", "kb_audit:read,kb_audit:export")
    records = list(demo_records(count, end=RECENT_END))
    source = tmp_path / "records.ndjson"
    source.write_bytes(b"\n".join(msgspec.json.encode(record) for record in records))
    cli.run("import", str(source), "--org", "acme")
    ordered = sorted(records, key=lambda record: (record.created_at, str(record.id)))
    return key, [str(record.id) for record in ordered]


def _size_in_manifest(folder: Path, name: str) -> int:
    manifest = orjson.loads((folder / "manifest.json").read_bytes())
    return int(next(f["bytes"] for f in manifest["files"] if f["name"] == name))


def exported_ids(paths: list[str]) -> list[str]:
    ids = []
    for path in paths:
        ids += [row["id"] for row in csv.DictReader(io.StringIO(Path(path).read_text()))]
    return ids


def test_create_wait_download_with_the_cli(
    cli: Cli, serve: Callable[[], Serve], tmp_path: Path
) -> None:
    cli.env["KBAUDIT_EXPORT_ROWS_PER_FILE"] = "400"
    key, ids = load(cli, tmp_path, 1000)
    server = serve()
    cli.env.update({"KBAUDIT_URL": server.url, "KBAUDIT_API_KEY": key})
    export_id = cli.run("export", "create", *WINDOW).stdout.splitlines()[-1]
    waited = cli.run("export", "wait", export_id)
    assert "succeeded, 1000 rows" in waited.stderr
    out = tmp_path / "out"
    downloaded = cli.run("export", "download", export_id, "--out", str(out))
    paths = downloaded.stdout.splitlines()
    assert [Path(p).name for p in paths] == [
        *(f"kb-audit-0000{n}.csv" for n in (1, 2, 3)),
        "manifest.json",
        "manifest.json.sig",
    ]
    assert f"verified: export {export_id}" in downloaded.stderr
    assert "1,000 rows" in downloaded.stderr
    assert exported_ids(paths[:3]) == ids
    assert not list(out.glob(".*partial"))

    # Offline, with the keys saved once: a changed file is named.
    keys = tmp_path / "keys.json"
    keys.write_text(httpx2.get(f"{server.url}/v1/knowledge-base/audit/signing-keys").text)
    server.stop()
    assert "verified" in cli.run("verify", str(out), "--keys", str(keys)).stdout
    (out / "kb-audit-00002.csv").write_text("id\n")
    refused = cli.run("verify", str(out), "--keys", str(keys), check=False)
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        "NOT verified: kb-audit-00002.csv has 3 bytes; the manifest says "
        f"{_size_in_manifest(out, 'kb-audit-00002.csv'):,}"
    ]


def test_several_api_processes_serve_and_export_once(
    cli: Cli, serve: Callable[..., Serve], tmp_path: Path
) -> None:
    key, ids = load(cli, tmp_path, 300)
    server = serve("--processes", "2")
    cli.env.update({"KBAUDIT_URL": server.url, "KBAUDIT_API_KEY": key})
    export_id = cli.run("export", "create", *WINDOW).stdout.splitlines()[-1]
    assert "succeeded, 300 rows" in cli.run("export", "wait", export_id).stderr
    paths = cli.run("export", "download", export_id, "--out", str(tmp_path / "out")).stdout
    assert exported_ids(paths.splitlines()[:-2]) == ids
    assert server.process is not None
    assert len(serving_children(server.process.pid)) == 2
    server.stop()


def test_the_api_processes_share_the_connections_and_the_port_is_theirs(
    cli: Cli, serve: Callable[..., Serve]
) -> None:
    """Each process listens on a socket of its own: 16 clients connecting at once land on
    both (all 16 on one would happen by chance once in 32,768 runs)."""
    server = serve("--processes", "2")
    assert server.process is not None
    children = serving_children(server.process.pid)
    assert len(children) == 2
    wait_until_all_listen(children, server.port)
    clients = [httpx2.Client(base_url=server.url) for _ in range(16)]
    try:
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(lambda client: client.get("/healthz"), clients))
        assert {answer.status_code for answer in answers} == {200}
        held = {child: connections_to(child, server.port) for child in children}
        assert sum(held.values()) == 16
        assert min(held.values()) > 0, held
    finally:
        for client in clients:
            client.close()

    refused = subprocess.run(
        [*KBAUDIT, "serve", "--port", str(server.port), "--processes", "2"],
        env=cli.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2
    assert f"cannot listen on 127.0.0.1:{server.port}" in refused.stderr
    assert httpx2.get(f"{server.url}/healthz").status_code == 200


ESTABLISHED, LISTENING = "01", "0A"  # the states /proc/net/tcp names


def connections_to(pid: int, port: int, state: str = ESTABLISHED) -> int:
    """How many TCP sockets on local ``port`` in ``state`` the process ``pid`` holds."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    held = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].rsplit(":", 1)[1], 16)
        if local_port == port and fields[3] == state and fields[9] in inodes:
            held += 1
    return held


def wait_until_all_listen(children: list[int], port: int) -> None:
    """The server answers as soon as one process listens; the others may still be starting."""
    deadline = time.monotonic() + 30
    while not all(connections_to(child, port, LISTENING) for child in children):
        assert time.monotonic() < deadline, "not every API process listens"
        time.sleep(0.1)


def test_an_api_process_that_dies_is_replaced(cli: Cli, serve: Callable[..., Serve]) -> None:
    server = serve("--processes", "2")
    assert server.process is not None
    first = serving_children(server.process.pid)
    wait_until_all_listen(first, server.port)
    os.kill(first[0], signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        now = serving_children(server.process.pid)
        if len(now) == 2 and first[0] not in now:
            break
        time.sleep(0.2)
    assert len(now) == 2, now
    assert first[0] not in now
    assert server.process.poll() is None
    wait_until_all_listen(now, server.port)
    assert httpx2.get(f"{server.url}/healthz").status_code == 200
    server.stop()  # an orderly stop still exits 0


def serving_children(pid: int) -> list[int]:
    """The processes ``pid`` spawned to serve requests (from /proc: Linux only)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            command = (stat.parent / "cmdline").read_bytes()
        except OSError:  # the process ended meanwhile
            continue
        if int(fields[1]) == pid and b"spawn_main" in command:
            children.append(int(stat.parent.name))
    return children


def test_a_worker_killed_mid_part_still_yields_exactly_the_rows(
    cli: Cli, serve: Callable[[], Serve], tmp_path: Path
) -> None:
    cli.env.update(
        {
            "KBAUDIT_EXPORT_ROWS_PER_FILE": "4000",
            "KBAUDIT_EXPORT_LEASE_SECONDS": "2",
            "KBAUDIT_SWEEP_INTERVAL_SECONDS": "0.5",
            "KBAUDIT_WORKER_THREADS": "1",
        }
    )
    key, ids = load(cli, tmp_path, 20_000)
    first = serve()
    cli.env.update({"KBAUDIT_URL": first.url, "KBAUDIT_API_KEY": key})
    export_id = cli.run("export", "create", *WINDOW).stdout.splitlines()[-1]
    killed_during = wait_for_running_part(cli, export_id)
    first.kill()
    assert part_status(cli, export_id, killed_during) == "running"

    second = serve()
    cli.env["KBAUDIT_URL"] = second.url
    waited = cli.run("export", "wait", export_id)
    assert "succeeded, 20000 rows" in waited.stderr
    [(attempts,)] = cli.query(
        "SELECT attempts FROM export_parts WHERE job_id = :job AND part_no = :no",
        job=export_id,
        no=killed_during,
    )
    assert attempts >= 2, "the killed part was redone from its start"
    paths = cli.run("export", "download", export_id, "--out", str(tmp_path / "out")).stdout
    assert exported_ids(paths.splitlines()[:-2]) == ids


def wait_for_running_part(cli: Cli, export_id: str) -> int:
    """The number of a part that is running and has at least one part done before it."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        rows = cli.query(
            "SELECT part_no, status FROM export_parts WHERE job_id = :job ORDER BY part_no",
            job=export_id,
        )
        running = [no for no, status in rows if status == "running"]
        if running and any(status == "done" for _, status in rows):
            return int(running[0])
        time.sleep(0.02)
    raise AssertionError("no part was seen running")


def part_status(cli: Cli, export_id: str, part_no: int) -> str:
    [(status,)] = cli.query(
        "SELECT status FROM export_parts WHERE job_id = :job AND part_no = :no",
        job=export_id,
        no=part_no,
    )
    return str(status)


def test_sigterm_lets_the_running_part_finish(
    cli: Cli, serve: Callable[[], Serve], tmp_path: Path
) -> None:
    cli.env.update({"KBAUDIT_EXPORT_ROWS_PER_FILE": "4000", "KBAUDIT_WORKER_THREADS": "1"})
    key, ids = load(cli, tmp_path, 12_000)
    first = serve()
    cli.env.update({"KBAUDIT_URL": first.url, "KBAUDIT_API_KEY": key})
    export_id = cli.run("export", "create", *WINDOW).stdout.splitlines()[-1]
    running = wait_for_running_part(cli, export_id)
    first.stop()  # SIGTERM; asserts an exit status of 0
    assert part_status(cli, export_id, running) == "done"

    cli.env["KBAUDIT_URL"] = serve().url
    assert "succeeded, 12000 rows" in cli.run("export", "wait", export_id).stderr
    paths = cli.run("export", "download", export_id, "--out", str(tmp_path / "out")).stdout
    assert exported_ids(paths.splitlines()[:-2]) == ids


def test_the_log_commands_prove_records_and_witness_the_log(
    cli: Cli, serve: Callable[[], Serve], tmp_path: Path
) -> None:
    key, ids = load(cli, tmp_path, 50)
    server = serve()
    cli.env.update({"KBAUDIT_URL": server.url, "KBAUDIT_API_KEY": key})
    note = cli.run("log", "checkpoint").stdout
    assert note.splitlines()[1] == "50"
    proved = cli.run("log", "prove", ids[7]).stdout
    assert proved.startswith(f"{ids[7]}: in the log at index ")
    assert "proofs verified" in proved

    state = tmp_path / "witness.json"
    watch = ["log", "watch", "--once", "--state", str(state)]
    assert "first seen at 50 leaves" in cli.run(*watch).stdout
    source = tmp_path / "more.ndjson"
    source.write_bytes(
        b"\n".join(msgspec.json.encode(r) for r in demo_records(5, end=RECENT_END, seed=11))
    )
    cli.run("import", str(source), "--org", "acme")
    assert "55 leaves, consistent with 50" in cli.run(*watch).stdout

    # A log that shows one history, then another: the witness's kept checkpoint is replaced
    # by one the server's own key signed over a different tree of the same size.
    keyring = load_keyring(cli.data_dir, cli.env.get("KBAUDIT_MASTER_KEY"))
    kept = orjson.loads(state.read_bytes())
    origin = next(iter(kept["checkpoints"]))
    signer = SigningKeys(keyring)
    for size, message in ((55, "FORK"), (60, "shrank from 60 to 55")):
        other = Checkpoint(origin, size, bytes(32)).text()
        kept["checkpoints"][origin] = signer.sign_note(other)
        state.write_bytes(orjson.dumps(kept))
        refused = cli.run(*watch, check=False)
        assert refused.returncode == 1
        assert message in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1


def test_export_commands_say_one_line_when_the_server_is_down_or_the_disk_full(
    cli: Cli, serve: Callable[[], Serve], tmp_path: Path
) -> None:
    key, _ = load(cli, tmp_path, 20)
    cli.env.update({"KBAUDIT_URL": f"http://127.0.0.1:{free_port()}", "KBAUDIT_API_KEY": key})
    for command in (("create", *WINDOW), ("wait", "x"), ("download", "x")):
        down = cli.run("export", *command, check=False)
        assert down.returncode == 1, command
        assert down.stderr.strip().startswith("error: the kbaudit server cannot be reached")
        assert len(down.stderr.strip().splitlines()) == 1, down.stderr
    server = serve()
    cli.env["KBAUDIT_URL"] = server.url
    export_id = cli.run("export", "create", *WINDOW).stdout.splitlines()[-1]
    cli.run("export", "wait", export_id)
    full = cli.run("export", "download", export_id, "--out", "/dev/full/out", check=False)
    assert full.returncode == 1
    assert full.stderr.strip().startswith("error: ")
    assert len(full.stderr.strip().splitlines()) == 1, full.stderr


def test_a_serving_process_freezes_what_startup_made(cli: Cli) -> None:
    """Startup's objects leave the garbage collector's walks, and young collections come
    less often (see ``kbaudit.runtime``)."""
    cli.run("migrate")
    probe = (
        "import gc; from kbaudit.api.app import app_of_a_serving_process; "
        "before = gc.get_freeze_count(); app_of_a_serving_process(); "
        "print(before, gc.get_freeze_count(), gc.get_threshold()[0])"
    )
    shown = subprocess.run(
        [sys.executable, "-c", probe], env=cli.env, capture_output=True, text=True, check=True
    )
    before, after, young = map(int, shown.stdout.split())
    assert before == 0
    assert after > 100_000
    assert young == YOUNG_OBJECTS

"""The ``kbaudit`` command. Each command is a thin shell over a function the tests call."""

from __future__ import annotations

import os
import signal
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from kbaudit.cli.export import export_app
from kbaudit.cli.log import log_app, verify
from kbaudit.config import Settings
from kbaudit.domain import EARLIEST_INSTANT, LATEST_INSTANT, SCOPES, OrgId
from kbaudit.errors import ConfigurationError, KbAuditError, NotFound, StoreUnavailable

if TYPE_CHECKING:
    from kbaudit.container import Container
    from kbaudit.services.importer import ImportReport

# The server's stack (the store, the queue, the services) is imported by the commands that
# use it, so that the client commands (verify, log, export) start in a fraction of a second.

HELP = """kbaudit keeps every knowledge-base retrieval your AI agents make, answers queries over
them, and hands out exports that are encrypted, signed and provably complete.

To try it: `kbaudit demo` (sample records and an API key), then `kbaudit serve` and open
http://127.0.0.1:8000/docs. Settings are KBAUDIT_* environment variables (see the README).
Add --debug to any command to see the full traceback of an error."""

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help=HELP, pretty_exceptions_enable=False
)
keys_app = typer.Typer(no_args_is_help=True, help="API keys.")
app.add_typer(keys_app, name="keys")
app.add_typer(export_app, name="export")
app.add_typer(log_app, name="log")
app.command("verify")(verify)
archive_app = typer.Typer(no_args_is_help=True, help="Archives written before purges.")
app.add_typer(archive_app, name="archive")
retention_app = typer.Typer(no_args_is_help=True, help="Retention.")
app.add_typer(retention_app, name="retention")
err = Console(stderr=True)
DEMO_ORG = "demo"


def main() -> None:
    """The ``kbaudit`` command. A setting or a server that is wrong is one plain line on
    standard error and exit status 2; ``--debug`` (or KBAUDIT_DEBUG=1) shows the traceback."""
    debug = "--debug" in sys.argv[1:] or os.environ.get("KBAUDIT_DEBUG") == "1"
    if "--debug" in sys.argv[1:]:
        sys.argv.remove("--debug")
    try:
        app(prog_name="kbaudit")
    except (ConfigurationError, ValidationError, StoreUnavailable) as exc:
        if debug:
            raise
        print(f"kbaudit: {_plainly(exc)}", file=sys.stderr)
        sys.exit(2)


def _plainly(exc: Exception) -> str:
    if isinstance(exc, ValidationError):  # a KBAUDIT_* setting of the wrong shape
        problems = [
            f"KBAUDIT_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors()
        ]
        return "; ".join(problems)
    return str(exc)


def _container() -> Container:
    from kbaudit.container import build_container

    return build_container(Settings())


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="KBAUDIT_PORT", help="Port to listen on.")] = 8000,
    processes: Annotated[
        int, typer.Option(min=1, help="API processes; Python runs one request at a time each.")
    ] = 1,
) -> None:
    """Serve the HTTP API (and, in the embedded default, run the export workers)."""
    import uvicorn

    from kbaudit.api.app import NoDelayHttp, create_app
    from kbaudit.logs import configure_logging
    from kbaudit.runtime import settle_heap

    container = _container()
    configure_logging(container.settings.log_level)
    NoDelayHttp.header_seconds = container.settings.header_timeout_seconds
    err.print(f"kbaudit serving on http://{host}:{port}  (data in {container.settings.data_dir})")
    # The asyncio loop, not uvloop: its socket sends release the GIL, so a download's next
    # chunk decrypts while the current one is sent (86% of raw decrypt speed against 72-77%).
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "loop": "asyncio",
        "http": NoDelayHttp,
        "log_level": "warning",
        "access_log": False,
        "proxy_headers": bool(container.settings.trusted_proxies),
        "forwarded_allow_ips": container.settings.trusted_proxies or None,
    }
    if processes == 1:
        # uvicorn shuts down gracefully, then re-raises the signal to the handler it found:
        # make that handler a clean exit, so that a supervisor sees 0 for an orderly stop.
        for stop in (signal.SIGTERM, signal.SIGINT):
            signal.signal(stop, lambda *_: sys.exit(0))
        api = create_app(container)
        settle_heap()
        uvicorn.run(api, **options)
        return
    # Several processes, each serving app_of_a_serving_process on a socket of its own (see
    # api/serving.py); the export workers run here, once.
    from kbaudit.api.serving import PortTaken, serve_in_processes

    workers = container.workers() if container.settings.api_runs_workers else None
    if workers is not None:
        workers.start()
    try:
        status = serve_in_processes(host, port, processes, options)
    except PortTaken as exc:
        err.print(f"kbaudit: {exc}")
        status = 2
    finally:
        if workers is not None:
            workers.stop()
        container.close()
    raise typer.Exit(status)


@app.command()
def worker(
    concurrency: Annotated[
        int | None,
        typer.Option(help="Parts run at once (threads); default KBAUDIT_WORKER_THREADS."),
    ] = None,
) -> None:
    """Run export parts and the periodic upkeep from the queue, until SIGTERM or SIGINT.

    For the scale-out mode (KBAUDIT_QUEUE_URL=redis://...): run one on any number of hosts.
    A stop lets the running parts finish first."""
    from kbaudit.logs import configure_logging

    container = _container()
    configure_logging(container.settings.log_level)
    if container.settings.api_runs_workers:
        err.print("[yellow]note:[/] with the embedded queue, `kbaudit serve` runs the workers too")
    stopping = threading.Event()
    for stop in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop, lambda *_: stopping.set())
    from kbaudit.runtime import settle_heap

    workers = container.workers(concurrency)
    settle_heap()
    workers.start()
    err.print(
        f"kbaudit worker running {concurrency or container.settings.worker_threads} part(s) at once"
    )
    stopping.wait()
    err.print("stopping: letting running parts finish")
    workers.stop()
    container.close()


@app.command()
def migrate() -> None:
    """Apply pending database migrations."""
    _container().close()
    err.print("schema is up to date")


@keys_app.command("create")
def keys_create(
    org: Annotated[str, typer.Option(help="Organization name; created when new.")],
    scopes: Annotated[str, typer.Option(help=f"Comma-separated, of: {', '.join(SCOPES)}")],
) -> None:
    """Create an API key. The key alone is the last line on standard output."""
    from kbaudit.services.keys import create_key

    container = _container()
    try:
        key = create_key(container.store, container.clock, org, _split(scopes))
    except KbAuditError as exc:
        err.print(f"[red]error:[/] {exc.message}")
        raise typer.Exit(2) from exc
    err.print(f"API key for organization {org!r}; it is shown only this once:")
    print(key)


@keys_app.command("rotate-master")
def keys_rotate_master() -> None:
    """Add a new master key version; new exports and tokens use it, old files still open."""
    from kbaudit.crypto.keyring import rotate

    settings = Settings()
    if settings.master_key is not None:
        err.print("[red]error:[/] the keyring comes from KBAUDIT_MASTER_KEY; add a version there")
        raise typer.Exit(2)
    version = rotate(settings.data_dir)
    err.print(f"master key version {version} is now current; restart kbaudit to use it")


@app.command("import")
def import_file(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    org: Annotated[str, typer.Option(help="Existing organization to load into.")],
) -> None:
    """Bulk-load NDJSON records (one per line). Bad lines are reported, the rest load."""
    container = _container()
    report = _import_with_progress(container, _organization_id(container, org), file)
    for line, message in report.errors[:50]:
        err.print(f"line {line}: {message}", markup=False, highlight=False, soft_wrap=True)
    if len(report.errors) > 50:
        err.print(f"... and {len(report.errors) - 50} more bad lines")
    counts = ", ".join(f"{n} {outcome}" for outcome, n in report.counts.items())
    err.print(f"imported: {counts}; {len(report.errors)} bad line(s)")
    if report.errors:
        raise typer.Exit(1)


def _import_with_progress(container: Container, org_id: OrgId, file: Path) -> ImportReport:
    from kbaudit.runtime import settle_heap
    from kbaudit.services.importer import import_lines

    settle_heap()
    with file.open("rb") as handle:
        total = sum(1 for _ in handle)
    with _progress() as progress, file.open("rb") as handle:
        task = progress.add_task("importing", total=total)
        return import_lines(
            container.store,
            container.clock,
            org_id,
            handle,
            on_batch=lambda lines: progress.advance(task, lines),
        )


@app.command()
def demo(
    records: Annotated[int, typer.Option(help="How many sample records.")] = 20_000,
    port: Annotated[
        int, typer.Option(envvar="KBAUDIT_PORT", help="The port the curl example uses.")
    ] = 8000,
) -> None:
    """Fill the store with realistic sample records and print a ready API key (last line).
    Run again, it keeps the records it loaded before and prints a new key."""
    from kbaudit.services.keys import create_key, organization_named
    from kbaudit.services.query import newest_record_at

    container = _container()
    key = create_key(container.store, container.clock, DEMO_ORG, SCOPES)
    org = organization_named(container.store, DEMO_ORG)
    newest = newest_record_at(container.store, org.id)
    if newest is None:
        newest = container.clock().replace(second=0, microsecond=0)
        _load_demo(container, org.id, records, newest)
    else:
        err.print(f"organization {DEMO_ORG!r} already has its sample records; keeping them")
        # Written before kbaudit bounded instants, a record may lie where no window reaches.
        newest = min(
            max(newest, EARLIEST_INSTANT + timedelta(days=30)),
            LATEST_INSTANT - timedelta(minutes=1),
        )
    start = f"{newest - timedelta(days=30):%Y-%m-%dT%H:%M:%SZ}"
    end = f"{newest + timedelta(minutes=1):%Y-%m-%dT%H:%M:%SZ}"
    base = f"http://127.0.0.1:{port}"
    err.print(
        f"Sample records of organization {DEMO_ORG!r} run from {start} to {end}. Try:\n"
        f"  curl -H 'x-api-key: {key}' "
        f"'{base}/v1/knowledge-base/audit/retrievals?start={start}&end={end}&limit=5'\n"
        f"  KBAUDIT_URL={base} KBAUDIT_API_KEY={key} "
        f"kbaudit export create --start {start} --end {end} --format ndjson\n"
        "API key (all scopes):",
        soft_wrap=True,
        markup=False,
        highlight=False,
    )
    print(key)


def _load_demo(container: Container, org_id: OrgId, records: int, end: datetime) -> None:
    from kbaudit.demo import demo_records
    from kbaudit.services.ingest import ingest_records

    batch = []
    with _progress() as progress:
        task = progress.add_task("demo records", total=records)
        for record in demo_records(records, end=end.astimezone(UTC)):
            batch.append(record)
            if len(batch) == 1000:
                ingest_records(container.store, container.clock, org_id, batch)
                progress.advance(task, len(batch))
                batch.clear()
        if batch:
            ingest_records(container.store, container.clock, org_id, batch)
            progress.advance(task, len(batch))


@retention_app.command("purge")
def retention_purge(
    batch_size: Annotated[
        int | None,
        typer.Option(help="Records per transaction; default 50 on SQLite, 500 on PostgreSQL."),
    ] = None,
) -> None:
    """Apply every organization's retention policy now (kbaudit serve also does it
    periodically)."""
    from kbaudit.services.retention import purge

    container = _container()
    deleted = purge(container.store, container.clock, container.archiver, batch_size)
    err.print(f"purged {deleted} records")


@archive_app.command("list")
def archive_list(
    org: Annotated[str | None, typer.Option(help="Only this organization's.")] = None,
) -> None:
    """Archives, oldest first: id, organization, records, when, where."""
    from kbaudit.services.archive import list_archives

    container = _container()
    try:
        archives = list_archives(container.store, org)
    except NotFound as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from exc
    for archive in archives:
        print(
            f"{archive.id}  {archive.organization}  {archive.record_count} records  "
            f"{archive.created_at:%Y-%m-%d %H:%M:%S}  {archive.destination}"
        )


@archive_app.command("restore")
def archive_restore(
    archive_id: str,
    into: Annotated[str | None, typer.Option(help="Organization to restore into.")] = None,
) -> None:
    """Write an archive's records back, into its own organization or another; idempotent."""
    from kbaudit.services.ingest import Outcome

    container = _container()
    try:
        result = container.archiver.restore(container.store, archive_id, into)
    except NotFound as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from exc
    counts = ", ".join(f"{result.count(o)} {o.value}" for o in Outcome)
    err.print(f"restored: {counts}")
    refused = [item for item in result.outcomes if item.outcome is Outcome.REFUSED]
    if refused:
        err.print(f"[red]refused:[/] {refused[0].reason}")
        raise typer.Exit(1)


def _organization_id(container: Container, name: str) -> OrgId:
    from kbaudit.services.keys import organization_named

    try:
        return organization_named(container.store, name).id
    except NotFound as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from exc


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    )


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]

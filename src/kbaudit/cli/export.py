"""``kbaudit export create|wait|download``: the client side of exports."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TransferSpeedColumn,
)

from kbaudit.cli.log import Keys, fail_on_error, load_keys, say
from kbaudit.domain import EXPORT_FORMATS, RETRIEVAL_STATUSES, JobStatus
from kbaudit.services.verify import VerificationFailed, verify_export
from kbaudit_sdk import AuditReader

export_app = typer.Typer(no_args_is_help=True, help="Create, follow and download exports.")
err = Console(stderr=True)
Url = Annotated[str, typer.Option(envvar="KBAUDIT_URL", help="Base URL of the kbaudit API.")]
Key = Annotated[str, typer.Option(envvar="KBAUDIT_API_KEY", help="API key.", show_default=False)]


def _client(url: str, key: str) -> AuditReader:
    return AuditReader(url, key)


@export_app.command("create")
def create(
    start: Annotated[str, typer.Option(help="Window start, RFC 3339 with a timezone.")],
    end: Annotated[str, typer.Option(help="Window end (exclusive).")],
    api_key: Key,
    url: Url = "http://127.0.0.1:8000",
    export_format: Annotated[
        str, typer.Option("--format", help=" | ".join(EXPORT_FORMATS))
    ] = "csv",
    kb_id: Annotated[list[str] | None, typer.Option(help="Knowledge base id (repeatable).")] = None,
    status: Annotated[
        list[str] | None, typer.Option(help=f"{'|'.join(RETRIEVAL_STATUSES)} (repeatable).")
    ] = None,
    actor: Annotated[str | None, typer.Option(help="Actor user id.")] = None,
    session: Annotated[str | None, typer.Option(help="Session id.")] = None,
    idempotency_key: Annotated[str | None, typer.Option(help="Makes retries safe.")] = None,
    recipient: Annotated[
        list[str] | None, typer.Option(help="age recipient age1... the files are encrypted to.")
    ] = None,
    destination: Annotated[str | None, typer.Option(help="Destination to copy to.")] = None,
) -> None:
    """Request an export; its id alone is the last line on standard output."""
    body: dict[str, Any] = {}
    for name, value in (
        ("kb_ids", kb_id),
        ("statuses", status),
        ("actor_user_id", actor),
        ("session_id", session),
        ("recipients", recipient),
        ("destination", destination),
    ):
        if value:
            body[name] = value
    with _client(url, api_key) as reader:
        export_id = fail_on_error(
            lambda: reader.export(
                start, end, export_format, idempotency_key=idempotency_key, **body
            )
        )
        job = fail_on_error(lambda: reader.job(export_id))
    err.print(f"export {export_id} is {job['status']}")
    print(export_id)


@export_app.command("wait")
def wait(export_id: str, api_key: Key, url: Url = "http://127.0.0.1:8000") -> None:
    """Follow an export until it ends, with a progress bar of parts and rows."""
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("parts, {task.fields[rows]:,} rows"),
        console=err,
        transient=True,
    ) as progress:
        task = progress.add_task("running", total=None, rows=0)

        def show(job: dict[str, Any]) -> None:
            parts = job.get("progress") or {}
            progress.update(
                task,
                description=job["status"],
                total=parts.get("parts_total") or None,
                completed=parts.get("parts_done", 0),
                rows=parts.get("rows_written", 0),
            )

        with _client(url, api_key) as reader:
            job = fail_on_error(lambda: reader.wait(export_id, show))
    err.print(
        f"export {export_id}: {job['status']}, {job['total_rows']} rows, "
        f"{job['partial_count']} not finalized, {job['failed_count']} failed"
        + (f", error {job['error_code']}" if job["error_code"] else "")
    )
    if not JobStatus(job["status"]).downloadable:
        raise typer.Exit(1)


@export_app.command("download")
def download(
    export_id: str,
    api_key: Key,
    out: Annotated[Path, typer.Option(help="Folder to write the files to.")] = Path("."),
    url: Url = "http://127.0.0.1:8000",
    keys: Keys = None,
    check: Annotated[
        bool, typer.Option("--verify/--no-verify", help="Verify the signed manifest after.")
    ] = True,
) -> None:
    """Download every file, each checked against its SHA-256 (a download cut short resumes
    where it stopped); then verify the whole export against its signed manifest, as
    ``kbaudit verify`` does."""
    with (
        _client(url, api_key) as reader,
        Progress(
            TextColumn("downloading"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=err,
            transient=True,
        ) as progress,
    ):
        task = progress.add_task("downloading", total=None)
        saved = fail_on_error(
            lambda: reader.download(export_id, out, lambda n: progress.advance(task, n))
        )
        trusted = fail_on_error(lambda: load_keys(keys, url, reader)) if check else []
    for path in saved:
        print(path)
    if check:
        try:
            verified = verify_export(out, trusted, export_id=export_id)
        except VerificationFailed as exc:
            say(f"NOT verified: {exc}")
            raise typer.Exit(1) from exc
        say(verified.summary())

"""Downloading one export file: checks in the order that leaks nothing, then a stream of the
decrypted bytes that writes its own access-log entry when it ends."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

from kbaudit.crypto.envelope import WrappedKeyset
from kbaudit.crypto.files import decrypted_chunks
from kbaudit.domain import Caller
from kbaudit.errors import ExportExpired, KbAuditError, NotFound
from kbaudit.services.access import record_access
from kbaudit.services.exports.deps import ExportDeps
from kbaudit.services.exports.formats import FORMATS
from kbaudit.services.exports.jobs import DOWNLOADABLE, signed_files
from kbaudit.services.exports.parts import file_context

DOWNLOAD_ROUTE = "GET /v1/knowledge-base/audit/exports/{export_id}/download/{file_name}"


@dataclass
class Download:
    file_name: str
    content_type: str
    length: int
    sha256_plaintext: str
    chunks: Iterator[bytes]


def open_download(
    deps: ExportDeps, caller: Caller, export_id: str, file_name: str, token: str
) -> Download:
    """Another organization's export and unknown files are 404; an expired export 410; then
    the token must match this organization, export and file, and be fresh."""
    with deps.store.reading() as uow:
        job = uow.exports.job(export_id, caller.org_id)
        if job is None:
            raise NotFound("no export job has that id")
        if job.status == "expired":
            raise ExportExpired("this export has expired; its files are deleted")
        part = next((p for p in uow.exports.parts(export_id) if p.file_name == file_name), None)
        org_uuid = uow.keys.organization(caller.org_id).uuid
    signed = dict(signed_files(job))
    present = file_name in signed or (part is not None and part.status == "done")
    if job.status not in DOWNLOADABLE or not present:
        raise NotFound("this export has no downloadable file of that name")
    deps.tokens.check(token, caller.org_id, export_id, file_name)
    if file_name in signed:
        return _signed_file(deps, caller, export_id, file_name, signed[file_name])
    assert part is not None
    aead = deps.keys.open_data_key(
        org_uuid, export_id, WrappedKeyset(job.kek_version, job.wrapped_keyset)
    )
    plaintext = decrypted_chunks(
        aead, file_context(org_uuid, export_id, file_name), deps.blobs.read(part.blob_key)
    )
    # Open the first segment now, so a file damaged at its start fails before any header.
    try:
        first = next(plaintext, b"")
    except KbAuditError as exc:
        _log(deps, caller, export_id, file_name, exc.code, 0)
        raise
    return Download(
        file_name=file_name,
        content_type=FORMATS[job.export_format].content_type,
        length=part.plaintext_bytes,
        sha256_plaintext=part.sha256_plaintext,
        chunks=_logged(deps, caller, export_id, file_name, first, plaintext),
    )


def _signed_file(
    deps: ExportDeps, caller: Caller, export_id: str, file_name: str, content: bytes
) -> Download:
    """The manifest or its signature: small, kept in the job's row, sent as they are."""
    return Download(
        file_name=file_name,
        content_type="application/json",
        length=len(content),
        sha256_plaintext=hashlib.sha256(content).hexdigest(),
        chunks=_logged(deps, caller, export_id, file_name, content, iter(())),
    )


def _logged(
    deps: ExportDeps,
    caller: Caller,
    export_id: str,
    file_name: str,
    first: bytes,
    rest: Iterator[bytes],
) -> Iterator[bytes]:
    sent, outcome = 0, "failed"
    try:
        if first:
            sent += len(first)
            yield first
        for chunk in rest:
            sent += len(chunk)
            yield chunk
        outcome = "ok"
    except GeneratorExit:
        outcome = "aborted"
        raise
    finally:
        _log(deps, caller, export_id, file_name, outcome, sent)


def _log(
    deps: ExportDeps, caller: Caller, export_id: str, file_name: str, outcome: str, sent: int
) -> None:
    record_access(
        deps.store,
        deps.clock,
        caller,
        "export_downloaded",
        DOWNLOAD_ROUTE,
        outcome=outcome,
        details={"export_id": export_id, "file": file_name, "bytes": sent},
    )

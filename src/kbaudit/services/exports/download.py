"""Downloading one export file: checks in the order that leaks nothing, then a stream of the
decrypted bytes that writes its own access-log entry when it ends."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterator
from dataclasses import dataclass

from kbaudit.blobs import BlobStore
from kbaudit.crypto.envelope import KeyManager, WrappedKeyset
from kbaudit.crypto.files import decrypted_chunks
from kbaudit.domain import Caller, JobStatus
from kbaudit.errors import ExportExpired, KbAuditError, NotFound, RangeNotSatisfiable
from kbaudit.services.access import record_access
from kbaudit.services.exports.deps import ExportDeps
from kbaudit.services.exports.formats import FORMATS
from kbaudit.services.exports.jobs import signed_files
from kbaudit.services.exports.parts import file_context
from kbaudit.store.models import ExportJob, ExportPart, PartStatus

# A byte range as asked for: (first, last) inclusive, (first, None) to the end, or
# (None, n) for the last n bytes (RFC 9110 section 14.1.2).
Wanted = tuple[int | None, int | None]


@dataclass
class Download:
    file_name: str
    content_type: str
    size: int  # of the whole file
    sha256: str  # of the whole file as sent: its version (the plaintext's, unless age)
    chunks: Iterator[bytes]
    start: int = 0  # the bytes sent: [start, stop)
    stop: int = 0
    encoding: str | None = None  # "zstd": the file's zstd stream, decoded by the client

    @property
    def partial(self) -> bool:
        return (self.start, self.stop) != (0, self.size)


def open_download(
    deps: ExportDeps,
    caller: Caller,
    export_id: str,
    file_name: str,
    token: str,
    *,
    wanted: Wanted | None = None,
    only_if_version: str | None = None,
    head: bool = False,
    zstd_accepted: bool = False,
) -> Download:
    """Another organization's export and unknown files are 404; an expired export 410; then
    the token must match this organization, export and file, and be fresh. ``wanted``: one
    range of the file (its start is reached by decrypting from the beginning: the file is
    one compressed stream), unless ``only_if_version`` names another SHA-256 than the
    file's: then the whole file. ``head``: the checks and headers alone, nothing
    decrypted. ``zstd_accepted``: a whole data file goes out as the zstd stream it is
    stored as, for the client to decompress."""
    with deps.store.reading() as uow:
        job = uow.exports.job(export_id, caller.org_id)
        if job is None:
            raise NotFound("no export job has that id")
        if job.status is JobStatus.EXPIRED:
            raise ExportExpired("this export has expired; its files are deleted")
        part = next((p for p in uow.exports.parts(export_id) if p.file_name == file_name), None)
        org_uuid = uow.keys.organization(caller.org_id).uuid
    signed = dict(signed_files(job))
    present = file_name in signed or (part is not None and part.status is PartStatus.DONE)
    if not job.status.downloadable or not present:
        raise NotFound("this export has no downloadable file of that name")
    deps.tokens.check(token, caller.org_id, export_id, file_name)
    if file_name in signed:
        content = signed[file_name]
        version = hashlib.sha256(content).hexdigest()
        start, stop = _span(_if_same(wanted, only_if_version, version), len(content))
        chunks: Iterator[bytes] = iter(())
        if not head:
            entry = {"export_id": export_id, "file": file_name}
            chunks = _logged(deps, caller, entry, content, iter(()), start, stop)
        return Download(file_name, "application/json", len(content), version, chunks, start, stop)
    assert part is not None
    file = part.file
    wanted = _if_same(wanted, only_if_version, file.sha256_delivered)
    start, stop = _span(wanted, file.delivered_bytes)
    encoding = "zstd" if zstd_accepted and wanted is None else None
    download = Download(
        file_name,
        delivered_content_type(job),
        file.delivered_bytes,
        file.sha256_delivered,
        iter(()),
        start,
        stop,
        encoding,
    )
    if head:
        return download
    delivered = delivered_chunks(
        deps.keys, deps.blobs, job, org_uuid, part, decompress=not encoding
    )
    entry = {"export_id": export_id, "file": file_name}
    if encoding:
        entry["encoding"] = encoding
    # Open the first segment now, so a file damaged at its start fails before any header.
    try:
        first = next(delivered, b"")
    except KbAuditError as exc:
        _log(deps, caller, entry, exc.code, 0)
        raise
    # A coded stream's length is its own: sent whole, never cut at the decoded file's size.
    until = None if encoding else stop
    download.chunks = _logged(deps, caller, entry, first, delivered, start, until)
    return download


def delivered_content_type(job: ExportJob) -> str:
    if job.recipients:
        return "application/octet-stream"  # an age file
    return FORMATS[job.export_format].content_type


def delivered_chunks(
    keys: KeyManager,
    blobs: BlobStore,
    job: ExportJob,
    org_uuid: str,
    part: ExportPart,
    *,
    decompress: bool = True,
) -> Iterator[bytes]:
    """A done part's file as its recipient receives it: kbaudit's encryption at rest
    opened, so the plaintext, or the age file for an export with recipients (with
    ``decompress=False``, its zstd stream)."""
    if job.wrapped_keyset is None:
        raise ExportExpired("this export has expired; its files are deleted")
    aead = keys.open_data_key(org_uuid, job.id, WrappedKeyset(job.kek_version, job.wrapped_keyset))
    context = file_context(org_uuid, job.id, part.file_name)
    return decrypted_chunks(aead, context, blobs.read(part.file.blob_key), decompress=decompress)


def _span(wanted: Wanted | None, size: int) -> tuple[int, int]:
    """The bytes [start, stop) to send of a file of ``size``."""
    if wanted is None:
        return 0, size
    first, last = wanted
    if first is None:  # the last n bytes; none of them is no range at all (RFC 9110 14.1.1)
        if not last:
            raise RangeNotSatisfiable("a range of the last 0 bytes holds nothing")
        return max(0, size - last), size
    if first >= size or (last is not None and last < first):
        raise RangeNotSatisfiable(f"the file has {size} bytes; that range is outside it")
    return first, size if last is None else min(last + 1, size)


def _if_same(wanted: Wanted | None, only_if_version: str | None, version: str) -> Wanted | None:
    """A range of another version of the file than the client holds is no use to it."""
    return wanted if only_if_version in (None, version) else None


def _logged(
    deps: ExportDeps,
    caller: Caller,
    entry: dict[str, str],
    first: bytes,
    rest: Iterator[bytes],
    start: int = 0,
    stop: int | None = None,
) -> Iterator[bytes]:
    """The bytes [start, stop) of the stream ``first`` then ``rest``; the access log hears,
    in ``entry``, how it ended and how much went out."""
    sent, outcome = 0, "failed"
    try:
        for chunk in _between(itertools.chain((first,), rest), start, stop):
            sent += len(chunk)
            yield chunk
        outcome = "ok"
    except GeneratorExit:
        outcome = "aborted"
        raise
    finally:
        _log(deps, caller, entry, outcome, sent)


def _between(chunks: Iterator[bytes], start: int, stop: int | None) -> Iterator[bytes]:
    position = 0
    for chunk in chunks:
        end = position + len(chunk)
        if end > start and (stop is None or position < stop):
            yield chunk[max(0, start - position) : None if stop is None else stop - position]
        position = end
        if stop is not None and position >= stop:
            return


def _log(deps: ExportDeps, caller: Caller, entry: dict[str, str], outcome: str, sent: int) -> None:
    record_access(
        deps.store,
        deps.clock,
        caller,
        "export_downloaded",
        outcome=outcome,
        details={**entry, "bytes": sent},
    )

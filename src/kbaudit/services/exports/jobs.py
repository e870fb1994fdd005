"""Export jobs as callers see them: create, view (with fresh download tokens), list."""

from __future__ import annotations

import base64
import binascii
import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import orjson

from kbaudit.crypto.age import MAX_RECIPIENTS, InvalidRecipient, parse_recipients
from kbaudit.document import instant_of, micros
from kbaudit.domain import Caller, ExportFormat, JobStatus, OrgId
from kbaudit.errors import ExportInProgress, IdempotencyKeyReused, InvalidRequest, NotFound
from kbaudit.filters import RecordFilters
from kbaudit.services.access import record_access
from kbaudit.services.exports.deps import ExportDeps
from kbaudit.services.exports.manifest_format import MANIFEST, SIGNATURE
from kbaudit.services.query import CursorCodec
from kbaudit.store.models import ExportJob, PartStatus
from kbaudit.store.unit_of_work import UnitOfWork

CONTRACT_FIELDS = (
    "id",
    "status",
    "export_format",
    "window_start",
    "window_end",
    "created_at",
    "started_at",
    "finalized_at",
    "expires_at",
    "total_rows",
    "partial_count",
    "failed_count",
    "error_code",
    "filters",
)
IDEMPOTENCY_WINDOW = timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class ExportSpec:
    export_format: ExportFormat
    filters: RecordFilters
    recipients: tuple[str, ...] = ()  # age recipients
    destination: str | None = None


@dataclass(frozen=True, slots=True)
class FileView:
    name: str
    sha256_plaintext: str | None
    download_token: str | None
    sha256_delivered: str | None = None  # when it differs: the age file's


@dataclass(frozen=True, slots=True)
class DeliveryView:
    destination: str
    status: str  # pending, delivered, failed
    error: str | None = None


@dataclass(frozen=True, slots=True)
class ExportView:
    """A job as the API shows it: the contract's fields plus part progress, recipients and
    the delivery to a destination."""

    job: dict[str, Any]
    files: list[FileView]
    parts_total: int
    parts_done: int
    rows_written: int
    recipients: list[str] | None = None
    delivery: DeliveryView | None = None

    def as_dict(self) -> dict[str, Any]:
        """The view as the API and webhook events show it."""
        files = []
        for file in self.files:
            shown = {
                "name": file.name,
                "sha256_plaintext": file.sha256_plaintext,
                "download_token": file.download_token,
            }
            if file.sha256_delivered is not None:
                shown["sha256_delivered"] = file.sha256_delivered
            files.append(shown)
        shown_job = {
            **self.job,
            "files": files,
            "progress": {
                "parts_total": self.parts_total,
                "parts_done": self.parts_done,
                "rows_written": self.rows_written,
            },
        }
        if self.recipients:
            shown_job["recipients"] = self.recipients
        if self.delivery is not None:
            shown_job["delivery"] = {
                "destination": self.delivery.destination,
                "status": self.delivery.status,
                "error": self.delivery.error,
            }
        return shown_job


@dataclass(frozen=True, slots=True)
class ExportPage:
    items: list[ExportView] = field(default_factory=list)
    next_cursor: str | None = None
    has_more: bool = False


def create_export(
    deps: ExportDeps, caller: Caller, spec: ExportSpec, idempotency_key: str | None = None
) -> ExportView:
    """Record a pending job and hand it to the workers. The same idempotency key with the
    same request within 24 hours returns the first job instead."""
    _check_spec(deps, spec)
    now = deps.clock()
    request_hash = _request_hash(spec)
    job_id = str(uuid.uuid4())
    with deps.store.writing() as uow:
        if idempotency_key:
            earlier = uow.exports.job_by_idempotency_key(caller.org_id, idempotency_key)
            if earlier is not None and earlier.created_at > now - IDEMPOTENCY_WINDOW:
                if earlier.request_hash != request_hash:
                    raise IdempotencyKeyReused(
                        "this Idempotency-Key was used with a different request"
                    )
                return _view(deps, uow, caller.org_id, earlier)
            if earlier is not None:
                uow.exports.forget_idempotency_key(earlier.id)
        if spec.destination and uow.delivery.destination(caller.org_id, spec.destination) is None:
            raise InvalidRequest(
                f"no destination is named {spec.destination!r}", field=("body", "destination")
            )
        if uow.exports.active_count(caller.org_id) >= deps.config.max_active_per_org:
            raise ExportInProgress("this organization already has an export pending or running")
        org = uow.keys.organization(caller.org_id)
        wrapped = deps.keys.new_data_key(org.uuid, job_id)
        job = ExportJob(
            id=job_id,
            org_id=caller.org_id,
            key_id=caller.key_id,
            status=JobStatus.PENDING,
            export_format=spec.export_format,
            window_start=spec.filters.start,
            window_end=spec.filters.end,
            filters=spec.filters.echo(),
            created_at=now,
            rows_per_file=deps.config.rows_per_file,
            idempotency_key=idempotency_key,
            request_hash=request_hash,
            kek_version=wrapped.kek_version,
            wrapped_keyset=wrapped.ciphertext,
            recipients=list(spec.recipients) or None,
            destination=spec.destination,
        )
        uow.exports.add_job(job)
        uow.commit()
    record_access(
        deps.store,
        deps.clock,
        caller,
        "export_requested",
        details={
            "export_id": job_id,
            "format": spec.export_format,
            **spec.filters.describe(),
            **({"recipients": len(spec.recipients)} if spec.recipients else {}),
            **({"destination": spec.destination} if spec.destination else {}),
        },
    )
    created = get_export(deps, caller, job_id)  # as created: pending, before any worker ran
    deps.dispatcher.plan_export(job_id)
    return created


def get_export(deps: ExportDeps, caller: Caller, export_id: str) -> ExportView:
    with deps.store.reading() as uow:
        job = uow.exports.job(export_id, caller.org_id)
        if job is None:
            raise NotFound("no export job has that id")
        return _view(deps, uow, caller.org_id, job)


def list_exports(
    deps: ExportDeps,
    codec: CursorCodec,
    caller: Caller,
    status: JobStatus | None,
    limit: int,
    cursor: str | None,
) -> ExportPage:
    scope = f"exports|{status or ''}"
    after = None
    if cursor:
        created_at, job_id = codec.decode(cursor, caller.org_id, scope)
        after = (instant_of(created_at), str(uuid.UUID(bytes=job_id)))
    with deps.store.reading() as uow:
        jobs = uow.exports.jobs_page(caller.org_id, status, after, limit + 1)
        views = [_view(deps, uow, caller.org_id, job) for job in jobs[:limit]]
    has_more = len(jobs) > limit
    next_cursor = None
    if has_more:
        last = jobs[limit - 1]
        key = (micros(last.created_at), uuid.UUID(last.id).bytes)
        next_cursor = codec.encode(caller.org_id, scope, key)
    return ExportPage(views, next_cursor, has_more)


def filters_of(job: ExportJob) -> RecordFilters:
    return RecordFilters.of(job.filters, job.window_start, job.window_end)


@dataclass(frozen=True, slots=True)
class ManifestCheck:
    key_id: str
    valid: bool


def check_manifest(deps: ExportDeps, caller: Caller, export_id: str) -> ManifestCheck | None:
    """Whether the job's signed manifest verifies with the deployment's signing keys, as
    ``kbaudit verify`` checks it offline; None before the job has one."""
    with deps.store.reading() as uow:
        job = uow.exports.job(export_id, caller.org_id)
    if job is None:
        raise NotFound("no export job has that id")
    if job.manifest is None or job.manifest_signature is None:
        return None
    signature = orjson.loads(job.manifest_signature)
    key_id = str(signature.get("key_id"))
    key = next((key for key, _ in deps.signing.listed() if key.kid == key_id), None)
    try:
        raw = base64.b64decode(str(signature.get("signature")), validate=True)
    except binascii.Error:
        return ManifestCheck(key_id, valid=False)
    return ManifestCheck(key_id, valid=key is not None and key.verifies(raw, job.manifest))


def signed_files(job: ExportJob) -> list[tuple[str, bytes]]:
    """The manifest and its signature, once the job has them: (file name, content)."""
    if job.manifest is None or job.manifest_signature is None:
        return []
    return [(MANIFEST, job.manifest), (SIGNATURE, job.manifest_signature)]


def _check_spec(deps: ExportDeps, spec: ExportSpec) -> None:
    if len(spec.recipients) > MAX_RECIPIENTS:
        raise InvalidRequest(
            f"an export has at most {MAX_RECIPIENTS} recipients", field=("body", "recipients")
        )
    for number, recipient in enumerate(spec.recipients):
        try:
            parse_recipients([recipient])
        except InvalidRecipient as exc:
            raise InvalidRequest(str(exc), field=("body", "recipients", number)) from exc
    if spec.filters.end - spec.filters.start > timedelta(days=deps.config.max_window_days):
        raise InvalidRequest(
            f"an export window spans at most {deps.config.max_window_days} days",
            field=("body", "end"),
        )


def _request_hash(spec: ExportSpec) -> str:
    asked: list[Any] = [spec.export_format, spec.filters.fingerprint()]
    if spec.recipients or spec.destination:  # so that earlier jobs keep their hash
        asked += [sorted(spec.recipients), spec.destination]
    return hashlib.sha256(orjson.dumps(asked)).hexdigest()


def _view(deps: ExportDeps, uow: UnitOfWork, org_id: OrgId, job: ExportJob) -> ExportView:
    def mint(name: str) -> str:
        return deps.tokens.mint(org_id, job.id, name)

    return view_of(uow, job, mint if job.status.downloadable else None)


def view_of(
    uow: UnitOfWork, job: ExportJob, mint: Callable[[str], str] | None = None
) -> ExportView:
    """The job as callers see it; ``mint`` makes each file's download token (none without)."""
    parts = uow.exports.parts(job.id)
    files = [
        FileView(
            name=part.file_name,
            sha256_plaintext=part.sha256_plaintext,
            download_token=mint(part.file_name) if mint else None,
            sha256_delivered=part.sha256_delivered,
        )
        for part in parts
        if part.status is PartStatus.DONE
    ]
    files += [
        FileView(
            name=name,
            sha256_plaintext=hashlib.sha256(content).hexdigest(),
            download_token=mint(name) if mint else None,
        )
        for name, content in signed_files(job)
    ]
    fields = {name: getattr(job, name) for name in CONTRACT_FIELDS}
    return ExportView(
        job=fields,
        files=files,
        parts_total=len(parts),
        parts_done=sum(1 for part in parts if part.status is PartStatus.DONE),
        # Running parts report the rows they have written so far (see parts.Heartbeat).
        rows_written=sum(
            part.rows_written or 0
            for part in parts
            if part.status in (PartStatus.DONE, PartStatus.RUNNING)
        ),
        recipients=job.recipients,
        delivery=_delivery_of(uow, job),
    )


def _delivery_of(uow: UnitOfWork, job: ExportJob) -> DeliveryView | None:
    if job.destination is None:
        return None
    item = uow.delivery.destination_item(job.id)
    if item is not None:
        return DeliveryView(job.destination, item.status, item.last_error)
    if job.status.active:
        return DeliveryView(job.destination, "pending")
    return DeliveryView(job.destination, "failed", "the export ended without files to deliver")

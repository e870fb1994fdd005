"""The signed manifest of an export: what a recipient needs to prove, offline, that the files
are complete and are the ones kbaudit wrote (see ``kbaudit.services.verify``).

``manifest.json`` lists every data file with its rows, size and SHA-256 and carries the
organization's signed log checkpoint at the export's snapshot; ``manifest.json.sig`` is the
Ed25519 signature of its exact bytes. Both are made when the job ends and listed after the
data files.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson

from kbaudit.crypto.signing import SigningKeys
from kbaudit.document import canonical_json
from kbaudit.services.exports.manifest_format import VERSION
from kbaudit.services.log import checkpoint_note
from kbaudit.store.models import ExportPart, PartStatus
from kbaudit.store.unit_of_work import UnitOfWork

JOB_FIELDS = (
    "export_format",
    "window_start",
    "window_end",
    "filters",
    "started_at",
    "finalized_at",
    "status",
    "total_rows",
    "partial_count",
    "failed_count",
)


def write_manifest(uow: UnitOfWork, signing: SigningKeys, job_id: str) -> None:
    """Sign and keep the manifest of an ended job that has files."""
    job = uow.exports.job(job_id)
    assert job is not None
    org_uuid = uow.keys.organization(job.org_id).uuid
    # Jobs planned before the log existed have no size at their snapshot: the log as it
    # is now is the nearest honest statement.
    size = job.log_size if job.log_size is not None else uow.log.size(job.org_id)
    manifest = canonical_json(
        {
            "version": VERSION,
            "export_id": job.id,
            "organization_id": org_uuid,
            **{name: getattr(job, name) for name in JOB_FIELDS},
            "files": [
                _listed(part)
                for part in uow.exports.parts(job_id)
                if part.status is PartStatus.DONE
            ],
            "checkpoint": checkpoint_note(uow, signing, job.org_id, size),
        }
    )
    signature = {
        "key_id": signing.active.kid,
        "algorithm": "Ed25519",
        "signature": base64.b64encode(signing.sign(manifest)).decode(),
    }
    uow.exports.keep_manifest(job_id, manifest, orjson.dumps(signature))


def _listed(part: ExportPart) -> dict[str, Any]:
    """A file as its recipient receives it: ``bytes`` is its size as delivered, and an age
    file has ``sha256_delivered`` beside its plaintext's hash."""
    file = part.file
    listed = {
        "name": part.file_name,
        "rows": file.rows,
        "bytes": file.delivered_bytes,
        "sha256_plaintext": file.sha256_plaintext,
    }
    if file.sha256_delivered != file.sha256_plaintext:
        listed["sha256_delivered"] = file.sha256_delivered
    return listed

"""Archives: the records a purge is about to delete, written first as NDJSON, compressed and
encrypted exactly like export files, read back and checked; and restored again on demand.

One archive holds one purge batch: a file ``records.ndjson`` under
``<destination>/<organization>/<archive id>/`` plus a ``manifest.json`` beside it (names, row
counts, ``sha256_plaintext``). The database keeps the same facts and the wrapped data key.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import msgspec
import orjson

from kbaudit.blobs import BlobStore
from kbaudit.crypto.envelope import KeyManager, WrappedKeyset
from kbaudit.crypto.files import EncryptedFileWriter, decrypted_chunks
from kbaudit.domain import OrgId, RecordIn
from kbaudit.errors import CiphertextCorrupt, NotFound
from kbaudit.services.clock import Clock
from kbaudit.services.ingest import IngestResult, ingest_records
from kbaudit.store.models import Archive
from kbaudit.store.unit_of_work import Store

DEFAULT_DESTINATION = "archives"
FILE_NAME = "records.ndjson"
RESTORE_BATCH = 1000


@dataclass(frozen=True, slots=True)
class ArchiveSummary:
    id: str
    organization: str
    record_count: int
    created_at: datetime
    destination: str


def list_archives(store: Store, organization: str | None = None) -> list[ArchiveSummary]:
    """Archives, oldest first, of one organization or of all."""
    with store.reading() as uow:
        org_id = None
        if organization is not None:
            found = uow.keys.organization_by_name(organization)
            if found is None:
                raise NotFound(f"no organization named {organization!r}")
            org_id = found.id
        rows = uow.retention.archives(org_id)
        names = {o: uow.keys.organization(o).name for o in {row.org_id for row in rows}}
    return [
        ArchiveSummary(row.id, names[row.org_id], row.record_count, row.created_at, row.destination)
        for row in rows
    ]


def _context(org_uuid: str, archive_id: str) -> bytes:
    return f"kbaudit/archive-file/{org_uuid}/{archive_id}/{FILE_NAME}".encode()


def _folder(destination: str | None, org_uuid: str, archive_id: str) -> str:
    return f"{destination or DEFAULT_DESTINATION}/{org_uuid}/{archive_id}"


class Archiver:
    def __init__(self, blobs: BlobStore, keys: KeyManager, clock: Clock) -> None:
        self._blobs = blobs
        self._keys = keys
        self._clock = clock

    def write(
        self, org_id: OrgId, org_uuid: str, destination: str | None, lines: Sequence[str]
    ) -> Archive:
        """Write, read back and verify; raises unless the stored archive is exact. Returns
        the archive to record, in the transaction of the deletion it allows."""
        archive_id = str(uuid.uuid4())
        wrapped = self._keys.new_data_key(org_uuid, f"archive/{archive_id}")
        aead = self._keys.open_data_key(org_uuid, f"archive/{archive_id}", wrapped)
        folder = _folder(destination, org_uuid, archive_id)
        plaintext = "".join(line + "\n" for line in lines).encode()
        with (
            self._blobs.writer(f"{folder}/{FILE_NAME}.zst.tink") as sink,
            EncryptedFileWriter(aead, _context(org_uuid, archive_id), sink) as out,
        ):
            out.write(plaintext)
        digest = hashlib.sha256()
        stored = self._blobs.read(f"{folder}/{FILE_NAME}.zst.tink")
        for chunk in decrypted_chunks(aead, _context(org_uuid, archive_id), stored):
            digest.update(chunk)
        if digest.hexdigest() != out.sha256:
            raise CiphertextCorrupt("the archive read back differs from what was written")
        files = [{"name": FILE_NAME, "rows": len(lines), "sha256_plaintext": out.sha256}]
        manifest = {"archive_id": archive_id, "organization_id": org_uuid, "files": files}
        with self._blobs.writer(f"{folder}/manifest.json") as sink:
            sink.write(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
        return Archive(
            id=archive_id,
            org_id=org_id,
            destination=destination or DEFAULT_DESTINATION,
            created_at=self._clock(),
            record_count=len(lines),
            kek_version=wrapped.kek_version,
            wrapped_keyset=wrapped.ciphertext,
            files={"files": files},
        )

    def restore(self, store: Store, archive_id: str, into: str | None = None) -> IngestResult:
        """Write an archive's records into the organization named ``into`` (by default its
        own); idempotent by record id."""
        with store.reading() as uow:
            archive = uow.retention.archive(archive_id)
            if archive is None:
                raise NotFound(f"no archive {archive_id!r}")
            org_uuid = uow.keys.organization(archive.org_id).uuid
            target = archive.org_id
            if into is not None:
                found = uow.keys.organization_by_name(into)
                if found is None:
                    raise NotFound(f"no organization named {into!r}")
                target = found.id
        aead = self._keys.open_data_key(
            org_uuid,
            f"archive/{archive_id}",
            WrappedKeyset(archive.kek_version, archive.wrapped_keyset),
        )
        folder = _folder(archive.destination, org_uuid, archive_id)
        plaintext = b"".join(
            decrypted_chunks(
                aead,
                _context(org_uuid, archive_id),
                self._blobs.read(f"{folder}/{FILE_NAME}.zst.tink"),
            )
        )
        [described] = archive.files["files"]
        if hashlib.sha256(plaintext).hexdigest() != described["sha256_plaintext"]:
            raise CiphertextCorrupt("the archive does not match its manifest")
        decoder = msgspec.json.Decoder(RecordIn)
        records = [decoder.decode(line) for line in plaintext.splitlines() if line]
        outcomes = []
        for offset in range(0, len(records), RESTORE_BATCH):
            batch = records[offset : offset + RESTORE_BATCH]
            outcomes += ingest_records(
                store, self._clock, target, batch, reject_conflicts=False
            ).outcomes
        return IngestResult(outcomes)

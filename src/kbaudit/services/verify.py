"""Offline verification of a downloaded export: the folder and the public keys are all it needs.

In order, and stopping at the first problem: the manifest's signature; the checkpoint it
carries (signed by a listed key, for the manifest's organization); every listed file present
with its size and SHA-256, and no other data file beside them; then every row, in ascending
``(created_at, id)`` order across the files, inside the window and the filters, the counts
adding up to the manifest's.
"""

from __future__ import annotations

import base64
import binascii
import csv
import hashlib
import operator
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import orjson

from kbaudit.crypto.checkpoint import Checkpoint, open_checkpoint, origin_of
from kbaudit.crypto.signing import PublicKey, SignatureError
from kbaudit.document import instant_text
from kbaudit.domain import JobStatus
from kbaudit.services.exports.manifest_format import MANIFEST, SIGNATURE, VERSION

CHUNK = 8 << 20
DATA_FILE = re.compile(r"kb-audit-\d+\.\w+(\.age)?\Z|.*\.(csv|ndjson|parquet)(\.age)?\Z")


class VerificationFailed(Exception):
    """The first problem found, in one line."""


@dataclass(frozen=True, slots=True)
class Verified:
    export_id: str
    organization_id: str
    export_format: str
    status: str
    files: int
    rows: int
    bytes: int
    checkpoint: Checkpoint
    key_id: str
    unchecked: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = (
            f"verified: export {self.export_id} of organization {self.organization_id}, "
            f"{self.status}, {self.files} file(s), {self.rows:,} rows, {self.bytes:,} bytes, "
            f"signed by key {self.key_id}; log checkpoint at {self.checkpoint.size} leaves"
        )
        return text + "".join(f"; not checkable here: {note}" for note in self.unchecked)


def read_keys(text: str) -> list[PublicKey]:
    """Keys as the signing-keys route lists them (JSON), or one verifier key a line."""
    try:
        listed = orjson.loads(text)
    except orjson.JSONDecodeError:
        return [PublicKey.from_vkey(line) for line in text.splitlines() if line.strip()]
    try:
        return [PublicKey.from_vkey(key["vkey"]) for key in listed["keys"]]
    except (KeyError, TypeError) as exc:
        raise SignatureError("the keys file lists no keys with a vkey") from exc


def verify_export(
    folder: Path,
    keys: list[PublicKey],
    *,
    export_id: str | None = None,
    organization_id: str | None = None,
) -> Verified:
    manifest, key = _signed_manifest(folder, keys)
    for name, expected in (("export_id", export_id), ("organization_id", organization_id)):
        if expected is not None and manifest[name] != expected:
            raise VerificationFailed(f"the manifest is of {name} {manifest[name]}, not {expected}")
    checkpoint = _checkpoint(manifest, keys)
    files = manifest["files"]
    _same_files(folder, [listed["name"] for listed in files])
    rows = Rows(manifest)
    for listed in files:
        _check_file(folder / listed["name"], listed, rows, manifest["export_format"])
    _check_totals(manifest, rows)
    return Verified(
        export_id=manifest["export_id"],
        organization_id=manifest["organization_id"],
        export_format=manifest["export_format"],
        status=manifest["status"],
        files=len(files),
        rows=rows.count,
        bytes=sum(listed["bytes"] for listed in files),
        checkpoint=checkpoint,
        key_id=key.kid,
        unchecked=rows.unchecked,
    )


def _signed_manifest(folder: Path, keys: list[PublicKey]) -> tuple[dict[str, Any], PublicKey]:
    try:
        manifest_bytes = (folder / MANIFEST).read_bytes()
        signature = orjson.loads((folder / SIGNATURE).read_bytes())
    except FileNotFoundError as exc:
        raise VerificationFailed(f"{Path(exc.filename).name} is missing") from exc
    except orjson.JSONDecodeError as exc:
        raise VerificationFailed(f"{SIGNATURE} is not JSON") from exc
    if not isinstance(signature, dict) or signature.get("algorithm") != "Ed25519":
        raise VerificationFailed(f"{SIGNATURE} is not an Ed25519 signature")
    key = next((k for k in keys if k.kid == signature.get("key_id")), None)
    if key is None:
        raise VerificationFailed(
            f"the manifest is signed by key {signature.get('key_id')!r}, which is not listed"
        )
    try:
        raw = base64.b64decode(str(signature.get("signature")), validate=True)
    except binascii.Error as exc:
        raise VerificationFailed(f"{SIGNATURE} holds a signature that is not base64") from exc
    if not key.verifies(raw, manifest_bytes):
        raise VerificationFailed(f"the signature of {MANIFEST} does not verify with key {key.kid}")
    manifest = orjson.loads(manifest_bytes)
    if manifest.get("version") != VERSION:
        raise VerificationFailed(f"{MANIFEST} is of version {manifest.get('version')!r}")
    return manifest, key


def _checkpoint(manifest: dict[str, Any], keys: list[PublicKey]) -> Checkpoint:
    try:
        checkpoint, _ = open_checkpoint(manifest["checkpoint"], keys)
    except SignatureError as exc:
        raise VerificationFailed(f"the manifest's log checkpoint: {exc}") from exc
    if checkpoint.origin != origin_of(manifest["organization_id"]):
        raise VerificationFailed(
            f"the log checkpoint is of {checkpoint.origin}, not of the manifest's organization"
        )
    return checkpoint


def _same_files(folder: Path, listed: list[str]) -> None:
    present = {path.name for path in folder.iterdir() if DATA_FILE.match(path.name)}
    for name in listed:
        if name not in present:
            raise VerificationFailed(f"{name} is listed in the manifest but missing")
    for name in sorted(present - set(listed)):
        raise VerificationFailed(f"{name} is in the folder but not in the manifest")


def _check_file(path: Path, listed: dict[str, Any], rows: Rows, export_format: str) -> None:
    size = path.stat().st_size
    if size != listed["bytes"]:
        raise VerificationFailed(
            f"{path.name} has {size:,} bytes; the manifest says {listed['bytes']:,}"
        )
    if "sha256_delivered" in listed:  # an age file: only its recipients can read the rows
        if _sha256(path) != listed["sha256_delivered"]:
            raise VerificationFailed(f"{path.name} does not match its SHA-256 in the manifest")
        rows.take_on_trust(listed["rows"], "rows of files encrypted to the export's recipients")
        return
    if export_format == "parquet":
        if _sha256(path) != listed["sha256_plaintext"]:
            raise VerificationFailed(f"{path.name} does not match its SHA-256 in the manifest")
        _check_parquet_rows(path, listed, rows)
        return
    digest = hashlib.sha256()
    before = rows.count
    problem: VerificationFailed | None = None
    # SHA-256 runs in a thread (hashlib lets go of the GIL) while the rows are read here.
    with ThreadPoolExecutor(1) as hasher:
        pending = None
        for chunk in _chunks(path):
            if pending is not None:
                pending.result()
            pending = hasher.submit(digest.update, chunk)
            if problem is None:
                try:
                    rows.feed(chunk, path.name, export_format)
                except VerificationFailed as exc:
                    problem = exc  # hash on: an altered file is the clearer reason
        if pending is not None:
            pending.result()
    if digest.hexdigest() != listed["sha256_plaintext"]:
        raise VerificationFailed(f"{path.name} does not match its SHA-256 in the manifest")
    if problem is not None:
        raise problem
    rows.end_of_file(path.name, export_format)
    if rows.count - before != listed["rows"]:
        raise VerificationFailed(
            f"{path.name} holds {rows.count - before:,} rows; the manifest says {listed['rows']:,}"
        )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    for chunk in _chunks(path):
        digest.update(chunk)
    return digest.hexdigest()


def _check_parquet_rows(path: Path, listed: dict[str, Any], rows: Rows) -> None:
    import pyarrow.parquet as pq  # only Parquet exports need it

    before = rows.count
    columns = [*KEY_COLUMNS, "scopes"]
    try:
        batches = pq.ParquetFile(path).iter_batches(columns=columns)
        for batch in batches:
            for row in batch.to_pylist():
                kbs = {scope["knowledge_base_id"] for scope in row["scopes"] or ()}
                key = (instant_text(row["created_at"]), *(row[name] for name in KEY_COLUMNS[1:]))
                rows.check(path.name, key, kbs)
    except (OSError, ValueError, KeyError) as exc:  # pyarrow's errors derive from these
        raise VerificationFailed(f"{path.name} is not a readable Parquet file ({exc})") from exc
    if rows.count - before != listed["rows"]:
        raise VerificationFailed(
            f"{path.name} holds {rows.count - before:,} rows; the manifest says {listed['rows']:,}"
        )


def _chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            yield chunk


def _check_totals(manifest: dict[str, Any], rows: Rows) -> None:
    listed = sum(item["rows"] for item in manifest["files"])
    if listed != manifest["total_rows"]:
        raise VerificationFailed(
            f"the files hold {listed:,} rows; the manifest's total_rows is "
            f"{manifest['total_rows']:,}"
        )
    if not rows.on_trust and rows.unfinalized != manifest["partial_count"]:
        raise VerificationFailed(
            f"{rows.unfinalized:,} rows are not finalized; the manifest's partial_count is "
            f"{manifest['partial_count']:,}"
        )
    if manifest["status"] == JobStatus.SUCCEEDED and manifest["failed_count"]:
        raise VerificationFailed("the manifest says succeeded but counts failed rows")


class _Scope(msgspec.Struct):
    knowledge_base_id: str | None = None


class _Row(msgspec.Struct):
    """What the checks read of a record; msgspec skips the rest of the line unread."""

    created_at: str
    id: str
    audit_write_status: str
    retrieval_status: str | None = None
    actor_user_id: str | None = None
    session_id: str | None = None
    scopes: list[_Scope] | None = None


# created_at, id, audit_write_status, retrieval_status, actor_user_id, session_id
RowKey = tuple[str, str, str, str | None, str | None, str | None]
KEY_COLUMNS = (
    "created_at",
    "id",
    "audit_write_status",
    "retrieval_status",
    "actor_user_id",
    "session_id",
)


class Rows:
    """Reads the rows of every file in turn and checks each against the manifest."""

    def __init__(self, manifest: dict[str, Any]) -> None:
        filters = manifest["filters"]
        self._start, self._end = manifest["window_start"], manifest["window_end"]
        self._statuses = set(filters.get("statuses") or ())
        self._kb_ids = set(filters.get("kb_ids") or ())
        self._actor = filters.get("actor_user_id")
        self._session = filters.get("session_id")
        self._last: tuple[str, str] = ("", "")
        self._rest = b""
        self._columns: list[int] | None = None
        self._decode = msgspec.json.Decoder(_Row).decode
        self.count = self.unfinalized = 0
        self.unchecked: list[str] = []
        self.on_trust = False  # some rows were counted, not read

    def take_on_trust(self, count: int, what: str) -> None:
        self.count += count
        self.on_trust = True
        if what not in self.unchecked:
            self.unchecked.append(what)

    def feed(self, chunk: bytes, name: str, export_format: str) -> None:
        lines = (self._rest + chunk).split(b"\n")
        self._rest = lines.pop()
        try:
            if export_format == "ndjson":
                self._ndjson(lines, name)
            elif export_format == "csv":
                self._csv(lines, name)
            else:
                raise VerificationFailed(f"kbaudit cannot read {export_format} files")
        except (UnicodeDecodeError, csv.Error) as exc:
            # Files are hashed while they are read: a corrupt byte can show here first.
            raise VerificationFailed(f"{name}: row {self.count + 1} is not CSV text") from exc

    def end_of_file(self, name: str, export_format: str) -> None:
        if self._rest:
            raise VerificationFailed(f"{name} ends in the middle of a row")
        self._columns = None

    def _ndjson(self, lines: list[bytes], name: str) -> None:
        decode = self._decode
        for line in lines:
            try:
                row = decode(line)
            except msgspec.DecodeError as exc:
                raise VerificationFailed(f"{name}: row {self.count + 1} is not a record") from exc
            kbs = None if row.scopes is None else {s.knowledge_base_id for s in row.scopes}
            key = (row.created_at, row.id, row.audit_write_status)
            self.check(name, (*key, row.retrieval_status, row.actor_user_id, row.session_id), kbs)

    def _csv(self, lines: list[bytes], name: str) -> None:
        if self._kb_ids and "kb_ids filter (CSV rows do not hold scopes)" not in self.unchecked:
            self.unchecked.append("kb_ids filter (CSV rows do not hold scopes)")
        if self._columns is None and lines:
            header = next(csv.reader([lines.pop(0).decode().removesuffix("\r")]))
            try:
                self._columns = [header.index(column) for column in KEY_COLUMNS]
            except ValueError as exc:
                raise VerificationFailed(f"{name}: the header lacks a column") from exc
        if self._columns is None:
            return
        keys = operator.itemgetter(*self._columns)
        for cells in self._csv_records(lines, max(self._columns) + 1):
            try:
                created_at, record_id, write_status, status, actor, session = keys(cells)
            except IndexError as exc:
                raise VerificationFailed(f"{name}: row {self.count + 1} has too few cells") from exc
            row = (created_at, record_id, write_status, status or None, actor or None)
            self.check(name, (*row, session or None), None)

    def _csv_records(self, lines: list[bytes], width: int) -> Iterator[list[str]]:
        """The first ``width`` cells of each RFC 4180 record. Most lines hold a whole record
        with no quote among those cells: they are split on commas, as bytes. A quoted cell
        may hold commas and line breaks, so other lines are joined until their quotes pair
        up, and go through ``csv``."""
        pending: list[bytes] = []
        for raw in lines:
            line = raw[:-1] if raw.endswith(b"\r") else raw
            if not pending and line.count(b'"') % 2 == 0:
                rest = line.split(b",", width)[-1]  # what follows the key columns
                head = len(line) - len(rest)
                quote = line.find(b'"')
                if quote < 0 or quote >= head:
                    yield line[: head - 1].decode().split(",") if head else [line.decode()]
                    continue
            pending.append(line)
            if sum(part.count(b'"') for part in pending) % 2 == 0:
                yield next(csv.reader([b"\n".join(pending).decode()]))
                pending = []
        if pending:  # a quoted cell goes on in the next chunk
            self._rest = b"\n".join(pending) + b"\n" + self._rest

    def check(self, name: str, values: RowKey, kb_ids: set[str | None] | None) -> None:
        created_at, record_id, write_status, status, actor, session = values
        self.count += 1
        where = f"{name}: row {self.count} ({record_id})"
        key = (created_at, record_id)
        if key <= self._last:
            raise VerificationFailed(f"{where} is out of (created_at, id) order")
        self._last = key
        if not self._start <= created_at < self._end:
            raise VerificationFailed(f"{where} was created outside the window")
        if self._statuses and status not in self._statuses:
            raise VerificationFailed(f"{where} has a status outside the filter")
        if self._actor and actor != self._actor:
            raise VerificationFailed(f"{where} has another actor than the filter's")
        if self._session and session != self._session:
            raise VerificationFailed(f"{where} has another session than the filter's")
        if self._kb_ids and kb_ids is not None and not kb_ids & self._kb_ids:
            raise VerificationFailed(f"{where} names no knowledge base of the filter")
        if write_status != "finalized":
            self.unfinalized += 1

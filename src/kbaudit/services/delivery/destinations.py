"""Destinations: the customer's own S3-compatible bucket. Saving one first proves that kbaudit
can write, read back and delete there; an export that names one is copied there when it
ends, file by file, as its recipient would download it."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import obstore
from obstore.store import S3Store

from kbaudit.crypto.envelope import WrappedKeyset
from kbaudit.domain import Caller
from kbaudit.errors import DestinationCheckFailed, InvalidRequest, NotFound
from kbaudit.services.delivery.addresses import RefusedAddress, target
from kbaudit.services.delivery.deps import DeliveryDeps
from kbaudit.services.delivery.tunnel import Tunnel
from kbaudit.services.exports.download import delivered_chunks
from kbaudit.services.exports.jobs import signed_files
from kbaudit.store.models import Destination, OutboxItem, PartStatus

NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}\Z")
UPLOAD_CHUNK = 8 * 1024 * 1024
COPY_TIMEOUT_SECONDS = 60.0
# What one connection may bring back from a customer's endpoint. S3's answers to a copy are
# headers and a little XML (an uploaded part's: some 500 bytes), so this is some 16,000
# answers; a connection cut at it is opened again by obstore's retry. A hostile endpoint's
# 400 MiB error body, which obstore reads whole, stops here.
ANSWER_BYTES = 8 * 1024 * 1024
_S3_CODE = re.compile(r"<Code>([^<]{1,64})</Code>")
_S3_MESSAGE = re.compile(r"<Message>([^<]{1,300})</Message>")


@dataclass(frozen=True, slots=True)
class DestinationSpec:
    bucket: str
    prefix: str
    region: str | None
    endpoint: str | None
    access_key_id: str
    secret_access_key: str


def put_destination(
    deps: DeliveryDeps, caller: Caller, name: str, spec: DestinationSpec
) -> dict[str, Any]:
    """Check the bucket with a probe object, then save (or replace) the destination."""
    if not NAME.match(name):
        raise InvalidRequest("a destination's name is 1-64 of A-Z a-z 0-9 _ . -", field=("path",))
    try:
        with _connected(deps, spec, fast=True) as store:
            _preflight(store)
    except RefusedAddress as exc:
        raise InvalidRequest(f"endpoint {exc}", field=("body", "endpoint")) from exc
    now = deps.clock()
    with deps.store.writing() as uow:
        org_uuid = uow.keys.organization(caller.org_id).uuid
        wrapped = deps.keys.wrap_secret(org_uuid, _purpose(name), spec.secret_access_key.encode())
        uow.delivery.put_destination(
            Destination(
                org_id=caller.org_id,
                name=name,
                bucket=spec.bucket,
                prefix=spec.prefix,
                region=spec.region,
                endpoint=spec.endpoint,
                access_key_id=spec.access_key_id,
                kek_version=wrapped.kek_version,
                wrapped_secret=wrapped.ciphertext,
                created_at=now,
                updated_at=now,
            )
        )
        saved = uow.delivery.destination(caller.org_id, name)
        uow.commit()
    assert saved is not None
    return destination_view(saved)


def list_destinations(deps: DeliveryDeps, caller: Caller) -> list[dict[str, Any]]:
    with deps.store.reading() as uow:
        return [destination_view(d) for d in uow.delivery.destinations(caller.org_id)]


def remove_destination(deps: DeliveryDeps, caller: Caller, name: str) -> None:
    with deps.store.writing() as uow:
        if not uow.delivery.remove_destination(caller.org_id, name):
            raise NotFound("no destination has that name")
        uow.commit()


def destination_view(destination: Destination) -> dict[str, Any]:
    """Everything but the secret key."""
    return {
        "name": destination.name,
        "type": "s3",
        "bucket": destination.bucket,
        "prefix": destination.prefix,
        "region": destination.region,
        "endpoint": destination.endpoint,
        "access_key_id": destination.access_key_id,
        "created_at": destination.created_at,
        "updated_at": destination.updated_at,
    }


def copy_export(deps: DeliveryDeps, item: OutboxItem) -> str | None:
    """Copy every file of the export, and its manifest, to ``<prefix>/<export id>/<name>``.
    Returns why it cannot be done at all (no retry helps), or None once copied; a failure
    worth retrying raises."""
    with deps.store.reading() as uow:
        destination = uow.delivery.destination(item.org_id, item.target)
        job = uow.exports.job(item.export_id)
        parts = uow.exports.parts(item.export_id)
        org_uuid = uow.keys.organization(item.org_id).uuid
    if destination is None:
        return f"the destination {item.target!r} was removed"
    if job is None or job.wrapped_keyset is None:
        return "the export has expired; its files are deleted"
    secret = deps.keys.unwrap_secret(
        org_uuid,
        _purpose(destination.name),
        WrappedKeyset(destination.kek_version, destination.wrapped_secret),
    )
    credentials = DestinationSpec(
        destination.bucket,
        destination.prefix,
        destination.region,
        destination.endpoint,
        destination.access_key_id,
        secret.decode(),
    )
    with _connected(deps, credentials) as store:
        for part in parts:
            if part.status is PartStatus.DONE:
                chunks = delivered_chunks(deps.keys, deps.blobs, job, org_uuid, part)
                with obstore.open_writer(
                    store, f"{job.id}/{part.file_name}", buffer_size=UPLOAD_CHUNK
                ) as sink:
                    for chunk in chunks:
                        sink.write(chunk)
        for name, content in signed_files(job):
            obstore.put(store, f"{job.id}/{name}", content)
    return None


def describe_store_error(exc: Exception) -> str:
    """The store's own error code and message, when it sent them, else what failed."""
    text = str(exc)
    code, message = _S3_CODE.search(text), _S3_MESSAGE.search(text)
    if code:
        return f"{code[1]}: {message[1] if message else type(exc).__name__}"
    return f"{type(exc).__name__}: {text.splitlines()[0][:300] if text else ''}"


def _preflight(store: S3Store) -> None:
    probe = f".kbaudit-probe-{uuid.uuid4().hex}"
    content = b"kbaudit destination check\n"
    step = "put"
    try:
        obstore.put(store, probe, content)
        step = "get"
        if bytes(obstore.get(store, probe).bytes()) != content:
            raise DestinationCheckFailed("get: the probe object read back different bytes")
        step = "delete"
        obstore.delete(store, probe)
    except DestinationCheckFailed:
        raise
    except Exception as exc:  # obstore's errors, and the network's
        raise DestinationCheckFailed(f"{step}: {describe_store_error(exc)}") from exc


@contextmanager
def _connected(
    deps: DeliveryDeps, spec: DestinationSpec, *, fast: bool = False
) -> Iterator[S3Store]:
    """The destination's bucket. A customer's endpoint is checked, and every connection goes
    to the address that passed (tunnel.py); without one, the store is AWS's, and its hosts
    are obstore's choice. ``fast``: a preflight answers a request, so it tries once and
    waits little."""
    timeout = deps.config.timeout_seconds if fast else COPY_TIMEOUT_SECONDS
    if spec.endpoint is None:
        yield _store(spec, timeout, fast=fast)
        return
    checked = target(spec.endpoint, deps.config.allow_private)
    with Tunnel(checked, timeout, answer_bytes=ANSWER_BYTES) as proxy:
        yield _store(spec, timeout, fast=fast, proxy=proxy)


def _store(
    spec: DestinationSpec, timeout: float, *, fast: bool, proxy: str | None = None
) -> S3Store:
    endpoint = spec.endpoint
    client: dict[str, Any] = {
        "allow_http": bool(endpoint and endpoint.startswith("http://")),
        "connect_timeout": timedelta(seconds=5),
        "timeout": timedelta(seconds=timeout),
    }
    if proxy is not None:
        client["proxy_url"] = proxy
    options: dict[str, Any] = {
        "client_options": client,
        "retry_config": {
            "max_retries": 0 if fast else 4,
            "retry_timeout": timedelta(seconds=10 if fast else 60),
            "backoff": {"init_backoff": timedelta(milliseconds=200)},
        },
    }
    if endpoint:
        options["endpoint"] = endpoint
    return S3Store(
        spec.bucket,
        prefix=spec.prefix.strip("/") or None,
        region=spec.region or "us-east-1",
        access_key_id=spec.access_key_id,
        secret_access_key=spec.secret_access_key,
        **options,
    )


def _purpose(name: str) -> str:
    return f"destination/{name}"

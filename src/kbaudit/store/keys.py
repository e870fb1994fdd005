"""Organizations and their API keys (hashes only)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table, insert, select

from kbaudit.domain import KeyId, OrgId
from kbaudit.store.tables import api_keys, keyring_checks, organizations


@dataclass(frozen=True, slots=True)
class Organization:
    id: OrgId
    uuid: str
    name: str


@dataclass(frozen=True, slots=True)
class StoredKey:
    id: KeyId
    org_id: OrgId
    secret_hash: str
    scopes: frozenset[str]
    revoked: bool


class KeyRepository:
    def __init__(self, connection: Connection, upsert: Callable[[Table], Any]) -> None:
        self._connection = connection
        self._upsert = upsert  # the engine's INSERT that can skip a conflicting row

    def organization_by_name(self, name: str) -> Organization | None:
        row = self._connection.execute(
            select(organizations.c.id, organizations.c.uuid, organizations.c.name).where(
                organizations.c.name == name
            )
        ).one_or_none()
        return None if row is None else Organization(OrgId(row.id), row.uuid, row.name)

    def organization(self, org_id: OrgId) -> Organization:
        row = self._connection.execute(
            select(organizations.c.uuid, organizations.c.name).where(organizations.c.id == org_id)
        ).one()
        return Organization(org_id, row.uuid, row.name)

    def add_organization(self, org_uuid: str, name: str, now: datetime) -> Organization:
        org_id = self._connection.execute(
            insert(organizations)
            .values(uuid=org_uuid, name=name, created_at=now)
            .returning(organizations.c.id)
        ).scalar_one()
        return Organization(OrgId(org_id), org_uuid, name)

    def add_key(
        self, key_id: KeyId, org_id: OrgId, secret_hash: str, scopes: frozenset[str], now: datetime
    ) -> None:
        self._connection.execute(
            insert(api_keys).values(
                id=key_id,
                org_id=org_id,
                secret_hash=secret_hash,
                scopes=",".join(sorted(scopes)),
                created_at=now,
            )
        )

    def key(self, key_id: str) -> StoredKey | None:
        row = self._connection.execute(
            select(api_keys).where(api_keys.c.id == key_id)
        ).one_or_none()
        if row is None:
            return None
        return StoredKey(
            id=KeyId(row.id),
            org_id=OrgId(row.org_id),
            secret_hash=row.secret_hash,
            scopes=frozenset(row.scopes.split(",")),
            revoked=row.revoked_at is not None,
        )

    def keyring_checks(self) -> dict[int, bytes]:
        rows = self._connection.execute(select(keyring_checks))
        return {row.version: row.check_value for row in rows}

    def keyring_check(self, version: int, value: bytes) -> bytes:
        """The check value kept for a keyring version, keeping ``value`` when there is none
        yet (hosts starting at once keep the first)."""
        self._connection.execute(
            self._upsert(keyring_checks)
            .values(version=version, check_value=value)
            .on_conflict_do_nothing(index_elements=["version"])
        )
        c = keyring_checks.c
        kept: bytes = self._connection.execute(
            select(c.check_value).where(c.version == version)
        ).scalar_one()
        return kept

"""Organizations and API keys: creation and authentication.

A key reads ``kba_<key id>_<secret>``. The id finds the row; only a SHA-256 of the secret is
stored, and it is compared in constant time. Secrets are 256-bit random, so a plain hash is
as strong as a slow one here.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from collections.abc import Iterable

from kbaudit.domain import SCOPES, Caller, KeyId
from kbaudit.errors import AuthenticationRequired, InvalidRequest
from kbaudit.services.clock import Clock
from kbaudit.store.keys import KeyRepository, Organization
from kbaudit.store.unit_of_work import Store

KEY_PREFIX = "kba"
MAX_PRESENTED_KEY_LENGTH = 200


def create_key(store: Store, clock: Clock, org_name: str, scopes: Iterable[str]) -> str:
    """Create the organization when it is new and a key for it; return the key, once."""
    wanted = frozenset(scopes)
    unknown = wanted - set(SCOPES)
    if not wanted or unknown:
        raise InvalidRequest(
            f"scopes must be a non-empty subset of {', '.join(SCOPES)}; got {sorted(wanted)}"
        )
    if not org_name or len(org_name) > 200:
        raise InvalidRequest("an organization name has 1 to 200 characters")
    key_id = KeyId(secrets.token_hex(8))
    secret = secrets.token_urlsafe(32)
    with store.writing() as uow:
        org = ensure_organization(uow.keys, org_name, clock)
        uow.keys.add_key(key_id, org.id, _digest(secret), wanted, clock())
        uow.commit()
    return f"{KEY_PREFIX}_{key_id}_{secret}"


def ensure_organization(keys: KeyRepository, name: str, clock: Clock) -> Organization:
    org = keys.organization_by_name(name)
    return org or keys.add_organization(str(uuid.uuid4()), name, clock())


def authenticate(store: Store, presented: str | None, client_address: str | None = None) -> Caller:
    """The caller behind a presented key; the same error whatever was wrong with it."""
    refused = AuthenticationRequired("a valid x-api-key header is required")
    if not presented or len(presented) > MAX_PRESENTED_KEY_LENGTH:
        raise refused
    prefix, _, rest = presented.partition("_")
    key_id, _, secret = rest.partition("_")
    if prefix != KEY_PREFIX or not key_id or not secret:
        raise refused
    with store.reading() as uow:
        stored = uow.keys.key(key_id)
    expected = stored.secret_hash if stored else _digest("no such key")
    matches = hmac.compare_digest(expected, _digest(secret))
    if stored is None or stored.revoked or not matches:
        raise refused
    return Caller(stored.org_id, stored.id, stored.scopes, client_address)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()

"""Organizations and API keys: creation and authentication.

A key reads ``kba_<key id>_<secret>``. The id finds the row; only a SHA-256 of the secret is
stored, and it is compared in constant time. Secrets are 256-bit random, so a plain hash is
as strong as a slow one here.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import uuid
from collections.abc import Callable, Iterable

from kbaudit.crypto.keyring import Keyring
from kbaudit.domain import SCOPES, Caller, KeyId, Via
from kbaudit.errors import (
    AuthenticationRequired,
    ConfigurationError,
    InvalidRequest,
    NotFound,
    TooManyAttempts,
)
from kbaudit.services.clock import Clock
from kbaudit.services.throttle import FailureThrottle
from kbaudit.store.keys import KeyRepository, Organization, StoredKey
from kbaudit.store.unit_of_work import Store

KEY_PREFIX = "kba"
MAX_PRESENTED_KEY_LENGTH = 200
MAX_REMEMBERED_KEYS = 10_000


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


def organization_named(store: Store, name: str) -> Organization:
    """The organization called ``name``; NotFound when there is none."""
    with store.reading() as uow:
        organization = uow.keys.organization_by_name(name)
    if organization is None:
        raise NotFound(f"no organization named {name!r}; `kbaudit keys create` makes one")
    return organization


def ensure_organization(keys: KeyRepository, name: str, clock: Clock) -> Organization:
    org = keys.organization_by_name(name)
    return org or keys.add_organization(str(uuid.uuid4()), name, clock())


class Authenticator:
    """The caller behind a presented key; the same error whatever was wrong with it.

    Stored keys found are remembered for ``ttl`` seconds, so that a request's authentication
    is not a database transaction of its own: a key revoked in the database stops working
    within that time. Unknown key ids are looked up every time and never remembered, so
    that made-up keys cannot fill the memory. The secret is checked on every call.

    Wrong keys are counted (``throttle``): a client address past the limit is refused
    whatever it presents, until its window ends; a key id past it is refused with a wrong
    secret only, so that someone else's guesses never lock a key's owner out.
    ``on_refusal`` hears ``"refused"`` or ``"throttled"`` for each (the metrics count them).
    """

    def __init__(
        self,
        store: Store,
        ttl: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        throttle: FailureThrottle | None = None,
        on_refusal: Callable[[str], None] = lambda _: None,
    ) -> None:
        self._store = store
        self._ttl = ttl
        self._clock = clock
        self._known: dict[str, tuple[float, StoredKey]] = {}
        self._throttle = throttle or FailureThrottle(clock=clock)
        self._on_refusal = on_refusal

    def __call__(
        self, presented: str | None, client_address: str | None = None, via: Via | None = None
    ) -> Caller:
        if not presented:
            raise AuthenticationRequired("a valid x-api-key header is required")
        address = f"address {client_address}"
        self._refuse_if_throttled(address)
        prefix, _, rest = presented.partition("_")
        key_id, _, secret = rest.partition("_")
        valid_form = len(presented) <= MAX_PRESENTED_KEY_LENGTH and prefix == KEY_PREFIX
        stored = self._stored(key_id) if valid_form and key_id and secret else None
        expected = stored.secret_hash if stored else _digest("no such key")
        matches = hmac.compare_digest(expected, _digest(secret))
        if stored is None or stored.revoked or not matches:
            self._refuse_if_throttled(f"key {key_id[:32]}")
            self._throttle.failed(address)
            self._throttle.failed(f"key {key_id[:32]}")
            self._on_refusal("refused")
            raise AuthenticationRequired("a valid x-api-key header is required")
        return Caller(stored.org_id, stored.id, stored.scopes, client_address, via)

    def _refuse_if_throttled(self, name: str) -> None:
        if (wait := self._throttle.wait(name)) is not None:
            self._on_refusal("throttled")
            raise TooManyAttempts(
                "too many wrong API keys; try again after the Retry-After seconds", wait
            )

    @property
    def remembered(self) -> int:
        """How many stored keys are remembered now."""
        return len(self._known)

    def _stored(self, key_id: str) -> StoredKey | None:
        now = self._clock()
        remembered = self._known.get(key_id)
        if remembered is not None and now - remembered[0] < self._ttl:
            return remembered[1]
        with self._store.reading() as uow:
            stored = uow.keys.key(key_id)
        if stored is not None:
            if len(self._known) >= MAX_REMEMBERED_KEYS:
                self._known.clear()
            self._known[key_id] = (now, stored)
        return stored


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def check_keyring(store: Store, keyring: Keyring) -> None:
    """Refuse a keyring whose versions are not the ones the database was written with (a
    host given another KBAUDIT_MASTER_KEY, a data folder's master.keys replaced); versions
    seen for the first time are remembered. A start with known versions only reads."""
    values = {v: keyring.derive("keyring-check/v1", v) for v in keyring.versions}
    with store.reading() as uow:
        kept = uow.keys.keyring_checks()
    if set(values) - set(kept):
        with store.writing() as uow:
            for version in set(values) - set(kept):
                kept[version] = uow.keys.keyring_check(version, values[version])
            uow.commit()
    for version, value in values.items():
        if not hmac.compare_digest(kept[version], value):
            raise ConfigurationError(
                f"master key version {version} is not the one this database was written "
                "with: check KBAUDIT_MASTER_KEY (or master.keys in the data folder)"
            )

"""Authentication remembers stored keys briefly, and checks the secret on every call."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from kbaudit.container import Container
from kbaudit.domain import SCOPES
from kbaudit.errors import AuthenticationRequired
from kbaudit.services.keys import Authenticator, create_key
from kbaudit.store.tables import api_keys


class Ticks:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def revoke_all(container: Container) -> None:
    with container.store.writing() as uow:
        uow.connection.execute(update(api_keys).values(revoked_at=container.clock()))
        uow.commit()


def test_a_remembered_key_still_needs_its_secret(container: Container) -> None:
    key = create_key(container.store, container.clock, "acme", SCOPES)
    authenticate = Authenticator(container.store, ttl=60, clock=Ticks())
    assert authenticate(key).scopes == frozenset(SCOPES)
    with pytest.raises(AuthenticationRequired):
        authenticate(key[:-1] + ("A" if key[-1] != "A" else "B"))


def test_a_revoked_key_stops_working_once_the_memory_lapses(container: Container) -> None:
    key = create_key(container.store, container.clock, "acme", SCOPES)
    ticks = Ticks()
    authenticate = Authenticator(container.store, ttl=5, clock=ticks)
    authenticate(key)
    revoke_all(container)
    ticks.now = 4.9
    authenticate(key)
    ticks.now = 5.1
    with pytest.raises(AuthenticationRequired):
        authenticate(key)


def test_unknown_keys_are_never_remembered(container: Container) -> None:
    authenticate = Authenticator(container.store, ttl=60, clock=Ticks())
    for n in range(5):
        with pytest.raises(AuthenticationRequired):
            authenticate(f"kba_unknown{n}_secret")
    assert authenticate.remembered == 0

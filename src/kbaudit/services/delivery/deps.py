"""What the delivery services need, handed over explicitly."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from kbaudit.blobs import BlobStore
from kbaudit.crypto.envelope import KeyManager
from kbaudit.services.clock import Clock
from kbaudit.store.unit_of_work import Store


@dataclass(frozen=True)
class DeliveryConfig:
    allow_private: bool = False  # KBAUDIT_WEBHOOK_ALLOW_PRIVATE: see addresses.py
    timeout_seconds: float = 10.0
    first_retry_seconds: float = 5.0
    longest_wait_seconds: float = 3600.0
    retry_for: timedelta = timedelta(hours=25)
    # How long one attempt may take before the item is due again, should its worker die: a
    # webhook's try is bounded by its timeout; a copy of a large export takes a while.
    copy_lease: timedelta = timedelta(minutes=30)

    @property
    def event_lease(self) -> timedelta:
        return timedelta(seconds=4 * self.timeout_seconds)


@dataclass
class DeliveryDeps:
    store: Store
    blobs: BlobStore  # the exports' files, to copy to destinations
    keys: KeyManager
    clock: Clock
    config: DeliveryConfig

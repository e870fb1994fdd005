"""What the delivery services need, handed over explicitly."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from kbaudit.services.exports.deps import ExportDeps


@dataclass(frozen=True)
class DeliveryConfig:
    allow_private: bool = False  # KBAUDIT_WEBHOOK_ALLOW_PRIVATE: see addresses.py
    timeout_seconds: float = 10.0
    first_retry_seconds: float = 5.0
    longest_wait_seconds: float = 3600.0
    retry_for: timedelta = timedelta(hours=25)
    # How long one attempt may take before the item is due again: a copy of a large export
    # to a destination takes a while.
    lease: timedelta = timedelta(minutes=30)


@dataclass
class DeliveryDeps:
    exports: ExportDeps  # the store, blobs, keys and clock the exports use
    config: DeliveryConfig

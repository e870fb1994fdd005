"""Retention: each organization's policy, and the purge that applies it.

The purge deletes records older than ``retention_days`` in bounded batches, one short write
transaction each, so that ingest and queries keep flowing. Before each batch, and again just
before deleting it, it reads the policy: a legal hold set mid-purge stops it. It leaves an
organization alone while a legal hold is on and while an export of it is pending or running
(no rows vanish from under a part). With ``archive_before_delete``, each batch is first
written as an archive, read back and verified; only then, in one transaction, is the archive
recorded and the batch deleted: a crash in between leaves the records in place.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from functools import partial
from typing import Any

import structlog

from kbaudit.domain import Caller, OrgId
from kbaudit.errors import InvalidRequest, StoreUnavailable
from kbaudit.services.access import record_access
from kbaudit.services.archive import Archiver
from kbaudit.services.clock import Clock
from kbaudit.store.models import DEFAULT_RETENTION_DAYS, Month, RetentionPolicy, purge_cutoff
from kbaudit.store.unit_of_work import Store, UnitOfWork

log = structlog.get_logger("kbaudit.retention")

MIN_RETENTION_DAYS = 90
MAX_RETENTION_DAYS = 36_500
_PRINCIPALS = uuid.UUID("6f1b7a52-3c2e-4d0a-9b7e-2f5d8c1a9e40")


def principal_uuid(key_id: str) -> str:
    """The uuid under which an API key appears in ``legal_hold_set_by``."""
    return str(uuid.uuid5(_PRINCIPALS, key_id))


def get_policy(store: Store, clock: Clock, caller: Caller) -> dict[str, Any]:
    with store.writing() as uow:
        policy = _view(uow, _policy(uow, caller.org_id, clock))
        uow.commit()
    return policy


def update_policy(
    store: Store, clock: Clock, caller: Caller, changes: dict[str, Any]
) -> dict[str, Any]:
    """Apply the given fields only. Every change raises ``policy_version`` and is logged."""
    days = changes.get("retention_days")
    if days is not None and not MIN_RETENTION_DAYS <= days <= MAX_RETENTION_DAYS:
        raise InvalidRequest(
            f"retention_days must be {MIN_RETENTION_DAYS} to {MAX_RETENTION_DAYS}",
            field=("body", "retention_days"),
        )
    now = clock()
    with store.writing() as uow:
        current = _policy(uow, caller.org_id, clock)
        values = {name: value for name, value in changes.items() if getattr(current, name) != value}
        if values.get("legal_hold_enabled") is True:
            values |= {"legal_hold_set_by": principal_uuid(caller.key_id), "legal_hold_set_at": now}
        elif values.get("legal_hold_enabled") is False:
            values |= {"legal_hold_set_by": None, "legal_hold_set_at": None}
        if values:
            version = current.policy_version + 1
            changed = replace(current, **values, policy_version=version, updated_at=now)
            uow.retention.update_policy(changed)
        before, after = _view(uow, current), _view(uow, _policy(uow, caller.org_id, clock))
        uow.commit()
    if values:
        names = sorted(values)
        record_access(
            store,
            clock,
            caller,
            "retention_policy_changed",
            details={
                "old": {name: _plain(before[name]) for name in names},
                "new": {name: _plain(after[name]) for name in names},
                "policy_version": after["policy_version"],
            },
        )
    return after


def purge(
    store: Store,
    clock: Clock,
    archiver: Archiver | None = None,
    batch_size: int | None = None,
    on_batch: Callable[[OrgId, int], None] | None = None,
    pause_seconds: float | None = None,
) -> int:
    """Apply every organization's policy; returns how many records were deleted.
    ``on_batch`` hears of each batch written (organization, records deleted)."""
    # The store's engine sets the pace (its adapter: store/sqlite/, store/postgres/).
    batch_size = batch_size or store.adapter.purge_batch_size
    if pause_seconds is None:
        pause_seconds = store.adapter.purge_pause_seconds
    deleted = _keep_months_in_step(store, clock)
    with store.reading() as uow:
        org_ids = uow.retention.organization_ids()
    for org_id in org_ids:
        while (gone := _purge_batch(store, clock, archiver, org_id, batch_size)) is not None:
            deleted += gone
            if on_batch:
                on_batch(org_id, gone)
            if gone < batch_size:
                break
            # SQLite has one writer: step aside so that ingest and the access log get in.
            time.sleep(pause_seconds)
    if deleted:
        log.info("purged", records=deleted)
    return deleted


def _keep_months_in_step(store: Store, clock: Clock) -> int:
    """On PostgreSQL, make this month's and the next's partitions before writers need them
    (a writer that must make one gives up after a short wait behind long scans), and drop
    each month that every organization with records in it may lose whole: past its
    retention, no hold, no archive wanted, no export running. A month whose lock cannot be
    had soon is left for the next turn; the batches delete its records meanwhile. Returns
    how many records went."""
    with store.reading() as uow:
        months = uow.retention.record_months()
    if not months:
        return 0  # no monthly partitions (SQLite), or nothing stored yet
    _in_its_own_turn(store, "make_months", lambda uow: uow.retention.make_months_ahead(clock()))
    dropped = 0
    # No policy keeps less than MIN_RETENTION_DAYS: newer months are not even locked.
    for month in months:
        if month.end <= clock() - timedelta(days=MIN_RETENTION_DAYS):
            drop = partial(_drop, month=month, clock=clock)
            dropped += _in_its_own_turn(store, "drop_month", drop)
    return dropped


def _drop(uow: UnitOfWork, month: Month, clock: Clock) -> int:
    dropped = uow.retention.hold_month(month)
    orgs = uow.retention.organizations_in(month)
    if not all(_may_drop(uow, org_id, month, clock) for org_id in orgs):
        return 0
    uow.retention.drop_month(month)
    uow.log.forget_orphans()
    log.info("purged_month", month=f"{month.year}-{month.month:02d}", records=dropped)
    return dropped


def _in_its_own_turn(store: Store, step: str, act: Callable[[UnitOfWork], int | None]) -> int:
    """One step of the partitions' upkeep in its own transaction; a step that cannot have
    its locks soon is put off to the next turn rather than hold up every tenant."""
    try:
        with store.writing() as uow:
            done = act(uow) or 0
            uow.commit()
    except StoreUnavailable as exc:
        log.warning("partition_step_put_off", step=step, reason=exc.message)
        return 0
    return done


def _may_drop(uow: UnitOfWork, org_id: OrgId, month: Month, clock: Clock) -> bool:
    policy = uow.retention.policy(org_id)
    # Without an archiver, an organization that wants archives counts as one to wait for.
    if _reason_to_wait(uow, org_id, policy, archiver=None):
        return False
    return month.end <= purge_cutoff(policy, clock())


def _purge_batch(
    store: Store, clock: Clock, archiver: Archiver | None, org_id: OrgId, batch_size: int
) -> int | None:
    """One batch: None when the organization must wait or has nothing left to purge."""
    with store.reading() as uow:
        policy = uow.retention.policy(org_id)
        if _reason_to_wait(uow, org_id, policy, archiver):
            return None
        archiving = bool(policy and policy.archive_before_delete)
        victims = uow.records.oldest_before(org_id, purge_cutoff(policy, clock()), batch_size)
        org_uuid = uow.keys.organization(org_id).uuid
    if not victims:
        return None
    written = None
    if archiving:
        assert archiver is not None
        assert policy is not None
        lines = [victim.document for victim in victims]
        written = archiver.write(org_id, org_uuid, policy.archive_destination, lines)
    with store.writing(bulk=True) as uow:
        # A purge is one more writer of the organization: taking turns with the others, it
        # never deadlocks with one finalizing a record it deletes (the soak run saw that).
        uow.records.lock_for_write(org_id)
        # Read the policy again: a hold set since the batch was chosen wins.
        if _reason_to_wait(uow, org_id, uow.retention.policy(org_id), archiver):
            return None
        if written is not None:
            uow.retention.add_archive(written)
        gone = uow.records.delete(org_id, victims)
        # The log keeps every hash (its checkpoints stay valid); the content goes.
        uow.log.forget(org_id, [victim.id for victim in victims])
        uow.commit()
    return gone


def _reason_to_wait(
    uow: UnitOfWork, org_id: OrgId, policy: RetentionPolicy | None, archiver: Archiver | None
) -> str | None:
    if policy is not None and policy.legal_hold_enabled:
        return "legal_hold"
    if policy is not None and policy.archive_before_delete and archiver is None:
        return "no_archiver"
    if uow.exports.active_count(org_id):
        return "export_running"
    return None


def _policy(uow: UnitOfWork, org_id: OrgId, clock: Clock) -> RetentionPolicy:
    """The organization's policy, made with the defaults if it has none yet. It stays locked
    until the unit of work ends: concurrent changes take turns, each raising the version."""
    policy = uow.retention.policy(org_id, lock=True)
    if policy is None:
        now = clock()
        policy = RetentionPolicy(
            id=str(uuid.uuid4()),
            org_id=org_id,
            retention_days=DEFAULT_RETENTION_DAYS,
            legal_hold_enabled=False,
            archive_before_delete=False,
            policy_version=1,
            created_at=now,
            updated_at=now,
        )
        uow.retention.add_policy(policy)
    return policy


def _view(uow: UnitOfWork, policy: RetentionPolicy) -> dict[str, Any]:
    org = uow.keys.organization(policy.org_id)
    return {
        **policy.as_dict(),
        "organization_id": org.uuid,
        "policy_version": str(policy.policy_version),
    }


def _plain(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value

"""Writing records: idempotent by id, with the two-phase write rules.

A record may arrive as ``intent_recorded`` and later be finalized or marked
``finalize_failed`` by a second write of the same id. Writes only move forward
(``intent_recorded`` < ``finalize_failed`` < ``finalized``); a finalized record never changes,
and ``created_at`` and ``ref`` are fixed at first write.

A record's ``created_at`` must lie where the organization keeps records: not before its
retention (the purge would delete it at once, and on PostgreSQL each such write made the
month's partition again for the purge to drop again, every tenant's queries queueing behind
both) unless a legal hold is on, and not more than a day ahead of the server's clock.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from kbaudit.document import RecordDocument, document_of
from kbaudit.domain import AUDIT_WRITE_STATUSES, OrgId, RecordIn, id_named_by
from kbaudit.errors import InvalidRequest, OutsideRetention, RecordConflict
from kbaudit.services.clock import Clock
from kbaudit.services.log import Write, append_writes
from kbaudit.store.models import RetentionPolicy, purge_cutoff
from kbaudit.store.records import StoredRecord
from kbaudit.store.unit_of_work import Store

# How far ahead of the server a writer's clock may run. A day lets a clock set to local time
# but labelled UTC through; a record further ahead describes nothing that has happened yet.
CLOCK_SKEW = timedelta(days=1)

_PROGRESS: dict[str, int] = {status: rank for rank, status in enumerate(AUDIT_WRITE_STATUSES)}


class Outcome(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    CONFLICT = "conflict"
    REFUSED = "refused"  # outside retention; only when conflicts do not reject the batch


@dataclass(frozen=True, slots=True)
class RecordOutcome:
    id: str
    ref: str
    outcome: Outcome
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class IngestResult:
    outcomes: list[RecordOutcome]

    def count(self, outcome: Outcome) -> int:
        return sum(1 for item in self.outcomes if item.outcome is outcome)


def ingest_records(
    store: Store,
    clock: Clock,
    org_id: OrgId,
    records: Sequence[RecordIn],
    *,
    reject_conflicts: bool = True,
) -> IngestResult:
    """Write a batch in one transaction.

    With ``reject_conflicts`` a single conflicting record, or one outside retention, rejects
    the whole batch and nothing is written; without it, such records are reported and the
    rest are written.
    """
    return write_documents(store, clock, org_id, documents_of(records), reject_conflicts)


def documents_of(records: Sequence[RecordIn]) -> list[Written]:
    return [Written(record, document_of(record)) for record in records]


@dataclass(frozen=True, slots=True)
class Written:
    """A record as sent, and its document (with the ref it would have if it were new)."""

    record: RecordIn
    document: RecordDocument


def write_documents(
    store: Store, clock: Clock, org_id: OrgId, writes: Sequence[Written], reject_conflicts: bool
) -> IngestResult:
    """``ingest_records`` for records already encoded: the importer encodes each line as it
    reads it."""
    _refuse_duplicate_ids(writes)
    with store.writing() as uow:
        uow.records.lock_for_write(org_id)
        kept = KeptWindow.of(uow.retention.policy(org_id), clock())
        refused = {index: why for index, w in enumerate(writes) if (why := kept.refusal(w))}
        if refused and reject_conflicts:
            index, reason = next(iter(refused.items()))
            raise OutsideRetention(
                f"{len(refused)} record(s) lie outside what this organization keeps; nothing "
                f"was written. First: {reason}",
                field=("body", "items", index, "created_at"),
            )
        outcomes = [_refused(writes[index], why) for index, why in refused.items()]
        writes = [w for index, w in enumerate(writes) if index not in refused]
        existing = uow.records.stored(org_id, [w.record.id for w in writes])
        chosen = [w.record.ref for w in writes if w.record.ref]
        ref_owners = uow.records.owners_of_refs(org_id, chosen)
        plan = _plan(writes, existing, ref_owners)
        conflicts = [item for item in plan.outcomes if item.outcome is Outcome.CONFLICT]
        if conflicts and reject_conflicts:
            first = conflicts[0]
            raise RecordConflict(
                f"{len(conflicts)} record(s) conflict with what is stored; nothing was written. "
                f"First: {first.id}: {first.reason}"
            )
        leaves = append_writes(uow, org_id, plan.accepted)
        numbered = list(zip(plan.accepted, leaves, strict=True))
        uow.records.insert(org_id, [(doc, leaf) for (old, doc), leaf in numbered if old is None])
        uow.records.replace(org_id, [(old, doc, leaf) for (old, doc), leaf in numbered if old])
        uow.commit()
    return IngestResult(outcomes + plan.outcomes)


@dataclass(frozen=True, slots=True)
class KeptWindow:
    """The ``created_at`` instants an organization keeps records for: from its purge cutoff
    (none under a legal hold) to a day ahead of now."""

    since: datetime | None
    until: datetime

    @classmethod
    def of(cls, policy: RetentionPolicy | None, now: datetime) -> KeptWindow:
        held = policy is not None and policy.legal_hold_enabled
        return cls(None if held else purge_cutoff(policy, now), now + CLOCK_SKEW)

    def refusal(self, write: Written) -> str | None:
        created_at = write.record.created_at
        if self.since is not None and created_at < self.since:
            return (
                f"{write.document.id_text}: created_at {created_at.isoformat()} is older than "
                f"this organization's retention keeps (records created before "
                f"{self.since.isoformat()} are purged); raise retention_days or set a legal "
                f"hold to keep older records"
            )
        if created_at > self.until:
            return (
                f"{write.document.id_text}: created_at {created_at.isoformat()} is more than a "
                f"day ahead of the server's clock ({self.until.isoformat()} at the latest)"
            )
        return None


def _refused(write: Written, reason: str) -> RecordOutcome:
    return RecordOutcome(write.document.id_text, write.document.ref, Outcome.REFUSED, reason)


def _refuse_duplicate_ids(writes: Sequence[Written]) -> None:
    counts = Counter(w.record.id for w in writes)
    repeated = [str(record_id) for record_id, n in counts.items() if n > 1]
    if repeated:
        raise InvalidRequest(
            f"a batch may hold each record id once; repeated: {', '.join(repeated[:5])}",
            field=("body", "items"),
        )


@dataclass
class _Plan:
    outcomes: list[RecordOutcome] = field(default_factory=list)
    # The writes to make, in the batch's order: (the record as stored, if it is) and its
    # new document. Each becomes a leaf of the log in this order.
    accepted: list[Write] = field(default_factory=list)


def _plan(
    writes: Sequence[Written],
    existing: dict[uuid.UUID, StoredRecord],
    ref_owners: dict[str, uuid.UUID],
) -> _Plan:
    plan = _Plan()
    claimed_refs: dict[str, uuid.UUID] = {}
    for write in writes:
        old = existing.get(write.record.id)
        doc = write.document
        if old is not None and write.record.ref is None and old.ref != doc.ref:
            doc = document_of(write.record, ref=old.ref)  # a rewrite keeps the record's ref
        owner = ref_owners.get(doc.ref) or claimed_refs.get(doc.ref)
        claimed_refs.setdefault(doc.ref, doc.id)
        reason = _ref_refusal(doc, owner) or _refusal(old, doc)
        record_id = doc.id_text
        if reason:
            plan.outcomes.append(RecordOutcome(record_id, doc.ref, Outcome.CONFLICT, reason))
        elif old is None:
            plan.accepted.append((None, doc))
            plan.outcomes.append(RecordOutcome(record_id, doc.ref, Outcome.CREATED))
        elif old.document == doc.body:
            plan.outcomes.append(RecordOutcome(record_id, doc.ref, Outcome.UNCHANGED))
        else:
            plan.accepted.append((old, doc))
            plan.outcomes.append(RecordOutcome(record_id, doc.ref, Outcome.UPDATED))
    return plan


def _ref_refusal(doc: RecordDocument, owner: uuid.UUID | None) -> str | None:
    """Refs and ids must never name two records: a chosen ref may not look like an id or
    like the ref derived from another record's id."""
    if owner not in (None, doc.id):
        return f"ref {doc.ref!r} already names another record"
    if doc.chosen_ref is None:
        return None
    if id_named_by(doc.ref) is not None:
        return f"ref {doc.ref!r} looks like a record id or a derived ref; choose another"
    return None


def _refusal(old: StoredRecord | None, new: RecordDocument) -> str | None:
    if old is None or old.document == new.body:
        return None
    if new.created_at != old.created_at:
        return "created_at is fixed at first write"
    if new.ref != old.ref:
        return "ref is fixed at first write"
    if old.audit_write_status == "finalized":
        return "a finalized record cannot change"
    if _PROGRESS[new.audit_write_status] < _PROGRESS[old.audit_write_status]:
        return f"audit_write_status cannot go back from {old.audit_write_status}"
    return None

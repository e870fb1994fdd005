"""Writing records: idempotent by id, with the two-phase write rules.

A record may arrive as ``intent_recorded`` and later be finalized or marked
``finalize_failed`` by a second write of the same id. Writes only move forward
(``intent_recorded`` < ``finalize_failed`` < ``finalized``); a finalized record never changes,
and ``created_at`` and ``ref`` are fixed at first write.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

from kbaudit.domain import AUDIT_WRITE_STATUSES, OrgId, RecordIn, default_ref
from kbaudit.errors import InvalidRequest, RecordConflict
from kbaudit.store.records import StoredForm, stored_form
from kbaudit.store.unit_of_work import Store

_PROGRESS = {status: rank for rank, status in enumerate(AUDIT_WRITE_STATUSES)}


class Outcome(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    CONFLICT = "conflict"


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
    store: Store, org_id: OrgId, records: Sequence[RecordIn], *, reject_conflicts: bool = True
) -> IngestResult:
    """Write a batch in one transaction.

    With ``reject_conflicts`` a single conflicting record rejects the whole batch and nothing is
    written; without it, conflicting records are reported and the rest are written.
    """
    return write_forms(store, org_id, [stored_form(record) for record in records], reject_conflicts)


def write_forms(
    store: Store, org_id: OrgId, forms: Sequence[StoredForm], reject_conflicts: bool
) -> IngestResult:
    """``ingest_records`` for records already in storage form. The shaping is pure CPU work
    and the write mostly SQLite's, so callers can shape the next batch while this one writes."""
    _refuse_duplicate_ids(forms)
    refs = [form.ref or default_ref(form.id) for form in forms]
    with store.writing() as uow:
        uow.records.lock_for_write(org_id)
        existing = uow.records.stored_forms(org_id, [form.id for form in forms])
        ref_owners = uow.records.owners_of_refs(org_id, refs)
        outcomes, new, changed = _plan(forms, existing, ref_owners)
        conflicts = [item for item in outcomes if item.outcome is Outcome.CONFLICT]
        if conflicts and reject_conflicts:
            first = conflicts[0]
            raise RecordConflict(
                f"{len(conflicts)} record(s) conflict with what is stored; nothing was written. "
                f"First: {first.id}: {first.reason}"
            )
        uow.records.insert(org_id, new)
        uow.records.replace(org_id, changed)
        uow.commit()
    return IngestResult(outcomes)


def _refuse_duplicate_ids(forms: Sequence[StoredForm]) -> None:
    repeated = [record_id for record_id, n in Counter(f.id for f in forms).items() if n > 1]
    if repeated:
        raise InvalidRequest(
            f"a batch may hold each record id once; repeated: {', '.join(repeated[:5])}",
            field=("body", "items"),
        )


def _plan(
    forms: Sequence[StoredForm],
    existing: dict[str, StoredForm],
    ref_owners: dict[str, str],
) -> tuple[list[RecordOutcome], list[StoredForm], list[StoredForm]]:
    outcomes: list[RecordOutcome] = []
    new: list[StoredForm] = []
    changed: list[StoredForm] = []
    claimed_refs: dict[str, str] = {}
    for form in forms:
        old = existing.get(form.id)
        ref = form.ref or (old.ref if old is not None else None) or default_ref(form.id)
        form = replace(form, ref=ref)
        owner = ref_owners.get(ref) or claimed_refs.get(ref)
        claimed_refs.setdefault(ref, form.id)
        reason = (
            f"ref {ref!r} already names another record"
            if owner not in (None, form.id)
            else _refusal(old, form)
        )
        if reason:
            outcomes.append(RecordOutcome(form.id, ref, Outcome.CONFLICT, reason))
        elif old is None:
            new.append(form)
            outcomes.append(RecordOutcome(form.id, ref, Outcome.CREATED))
        elif old == form:
            outcomes.append(RecordOutcome(form.id, ref, Outcome.UNCHANGED))
        else:
            changed.append(form)
            outcomes.append(RecordOutcome(form.id, ref, Outcome.UPDATED))
    return outcomes, new, changed


def _refusal(old: StoredForm | None, new: StoredForm) -> str | None:
    if old is None or old == new:
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

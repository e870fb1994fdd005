"""The retention policy routes and the purge that applies them."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from kbaudit.domain import SCOPES, Caller, KeyId, OrgId
from kbaudit.services.keys import organization_named
from kbaudit.services.retention import principal_uuid, purge, update_policy
from kbaudit.store.tables import record_kbs
from tests.conftest import WINDOW, Api, ManualClock
from tests.helpers import RECORDS, record

POLICY = "/v1/knowledge-base/retention-policy"


def ids_of(api: Api, key: dict[str, str]) -> set[str]:
    rows = api.client.get(RECORDS, params={**WINDOW, "limit": 200}, headers=key).json()["items"]
    return {row["id"] for row in rows}


def detail(api: Api, key: dict[str, str], ref: str) -> dict[str, Any]:
    response = api.client.get(f"{RECORDS}/{ref}", headers=key)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def seed_ages(api: Api, key: dict[str, str], clock: ManualClock, days: list[float]) -> list[str]:
    """One record ``d`` days old per entry, each written when it was made (a record older
    than retention is refused); returns their ids in the same order."""
    now, ids = clock.now, []
    for d in days:
        clock.now = now - timedelta(days=d)
        item = record(created_at=clock.now.isoformat().replace("+00:00", "Z"))
        assert api.client.post(RECORDS, json={"items": [item]}, headers=key).status_code == 200
        ids.append(item["id"])
    clock.now = now
    return ids


def kb_rows(api: Api) -> int:
    """Rows of record_kbs, the one table beside the records."""
    with api.container.store.reading() as uow:
        count = select(func.count()).select_from(record_kbs)
        return int(uow.connection.execute(count).scalar_one())


def test_get_creates_the_defaults(api: Api) -> None:
    policy = api.client.get(POLICY, headers=api.key()).json()
    assert policy["retention_days"] == 365
    assert policy["legal_hold_enabled"] is False
    assert policy["archive_before_delete"] is False
    assert policy["policy_version"] == "1"
    assert api.client.get(POLICY, headers=api.key()).json()["id"] == policy["id"]


def test_policy_needs_the_admin_scope(api: Api) -> None:
    reader = api.key(scopes=("kb_audit:read", "kb_audit:export"))
    assert api.client.get(POLICY, headers=reader).status_code == 403
    assert api.client.put(POLICY, json={"retention_days": 100}, headers=reader).status_code == 403


def test_put_changes_only_the_given_fields_and_records_who_set_a_hold(api: Api) -> None:
    key = api.key()
    api.client.put(POLICY, json={"retention_days": 120}, headers=key)
    held = api.client.put(
        POLICY, json={"legal_hold_enabled": True, "legal_hold_reason": "case 42"}, headers=key
    ).json()
    assert held["retention_days"] == 120
    assert held["legal_hold_reason"] == "case 42"
    assert held["legal_hold_set_by"] == principal_uuid(key["x-api-key"].split("_")[1])
    assert held["legal_hold_set_at"] == "2026-06-01T12:00:00Z"
    assert held["policy_version"] == "3"
    same = api.client.put(POLICY, json={"retention_days": 120}, headers=key).json()
    assert same["policy_version"] == "3"  # nothing changed, no new version
    released = api.client.put(POLICY, json={"legal_hold_enabled": False}, headers=key).json()
    assert (released["legal_hold_set_by"], released["legal_hold_set_at"]) == (None, None)


def test_concurrent_changes_take_turns_and_none_is_lost(api: Api) -> None:
    """Each change reads the policy and writes it back whole: two at once must not both start
    from the same version (PostgreSQL locks the row; SQLite's writers take turns)."""
    key = api.key()
    api.client.get(POLICY, headers=key)
    with api.container.store.reading() as uow:
        org = uow.keys.organization_by_name("acme")
    assert org is not None
    caller = Caller(org.id, KeyId(key["x-api-key"].split("_")[1]), frozenset(SCOPES))
    container = api.container
    rounds = 8

    def change(field: str, values: list[Any]) -> None:
        for value in values:
            update_policy(container.store, container.clock, caller, {field: value})

    days = [100 + n for n in range(rounds)]
    reasons = [f"case {n}" for n in range(rounds)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [
            pool.submit(change, "retention_days", days),
            pool.submit(change, "legal_hold_reason", reasons),
        ]
        for future in futures:
            future.result()
    policy = api.client.get(POLICY, headers=key).json()
    assert policy["retention_days"] == days[-1]
    assert policy["legal_hold_reason"] == reasons[-1]
    assert policy["policy_version"] == str(1 + 2 * rounds)


def test_every_change_is_in_the_access_log_with_old_and_new(api: Api) -> None:
    key = api.key("acme")
    api.client.put(POLICY, json={"retention_days": 200, "archive_before_delete": True}, headers=key)
    api.container.store.flush_access()
    with api.container.store.reading() as uow:
        [entry] = [e for e in uow.access_log.entries(OrgId(1)) if e.action.startswith("retention")]
    assert entry.details["old"] == {"archive_before_delete": False, "retention_days": 365}
    assert entry.details["new"] == {"archive_before_delete": True, "retention_days": 200}


BAD: dict[str, Any] = {
    "below 90 days": {"retention_days": 89},
    "over 100 years": {"retention_days": 36_501},
    "unknown field": {"retention_days": 100, "delete_everything": True},
    "wrong type": {"legal_hold_enabled": "yes"},
    "days as text": {"retention_days": "ninety"},
    "long reason": {"legal_hold_reason": "x" * 501},
    "long destination": {"archive_destination": "a" * 256},
    "destination with tricks": {"archive_destination": "../../etc"},
    "not an object": [1, 2],
}


@pytest.mark.parametrize("body", BAD.values(), ids=BAD.keys())
def test_bad_updates_are_a_422_and_change_nothing(api: Api, body: Any) -> None:
    key = api.key()
    before = api.client.get(POLICY, headers=key).json()
    response = api.client.put(POLICY, json=body, headers=key)
    assert response.status_code == 422, response.text
    assert api.client.get(POLICY, headers=key).json() == before


def test_purge_deletes_what_aged_past_retention_with_its_children(
    api: Api, clock: ManualClock
) -> None:
    key = api.key("acme")
    api.client.put(POLICY, json={"retention_days": 90}, headers=key)
    _old, young = seed_ages(api, key, clock, [120, 10])
    assert kb_rows(api) == 2
    assert purge(api.container.store, clock, api.container.archiver) == 1
    assert ids_of(api, key) == {young}
    assert kb_rows(api) == 1
    clock.now += timedelta(days=81)
    assert purge(api.container.store, clock, api.container.archiver) == 1
    assert ids_of(api, key) == set()


def test_a_purge_batch_takes_turns_with_the_organizations_writers(
    api: Api, clock: ManualClock
) -> None:
    """On PostgreSQL a purge batch deleting a record deadlocked with a writer finalizing it
    (the soak run): the purge now waits for the organization's writer lock, as writers do."""
    key = api.key("acme")
    api.client.put(POLICY, json={"retention_days": 90}, headers=key)
    seed_ages(api, key, clock, [91])  # in a month not yet past retention: purged in batches
    store = api.container.store
    org_id = organization_named(store, "acme").id
    with ThreadPoolExecutor(1) as pool:
        with store.writing() as writer:
            writer.records.lock_for_write(org_id)
            purging = pool.submit(purge, store, clock, api.container.archiver)
            time.sleep(1.0)
            assert not purging.done()
        assert purging.result(timeout=60) == 1
    assert ids_of(api, key) == set()


def test_a_legal_hold_keeps_everything(api: Api, clock: ManualClock) -> None:
    key = api.key()
    api.client.put(POLICY, json={"retention_days": 90, "legal_hold_enabled": True}, headers=key)
    seeded = seed_ages(api, key, clock, [400, 200])
    assert purge(api.container.store, clock, api.container.archiver) == 0
    assert ids_of(api, key) == set(seeded)


def test_archived_records_come_back_identical_through_restore(api: Api, clock: ManualClock) -> None:
    key = api.key("acme")
    api.client.put(POLICY, json={"retention_days": 90, "archive_before_delete": True}, headers=key)
    old = seed_ages(api, key, clock, [400, 300, 200])
    before = {ref: detail(api, key, ref) for ref in old}
    seed_ages(api, key, clock, [5])
    assert purge(api.container.store, clock, api.container.archiver, batch_size=2) == 3
    assert not set(old) & ids_of(api, key)
    with api.container.store.reading() as uow:
        archives = uow.retention.archives(OrgId(1))
    assert [a.record_count for a in archives] == [2, 1]
    blobs = api.container.exports.blobs
    stored_keys = blobs.keys("archives")
    for archive in archives:
        assert any(k.endswith(f"{archive.id}/manifest.json") for k in stored_keys)
        [data] = [k for k in stored_keys if k.endswith(f"{archive.id}/records.ndjson.zst.tink")]
        assert b"retrieval_status" not in b"".join(blobs.read(data))
    restored = api.key("restored")
    # Past the target's retention (365 days), a restored record would only be purged again:
    # the one 400 days old is refused, the one 300 days old comes back.
    first = api.container.archiver.restore(api.container.store, archives[0].id, "restored")
    assert sorted(o.outcome.value for o in first.outcomes) == ["created", "refused"]
    [refused] = [o for o in first.outcomes if o.outcome.value == "refused"]
    assert refused.id == old[0]
    assert "older than this organization's retention" in (refused.reason or "")
    api.client.put(POLICY, json={"legal_hold_enabled": True}, headers=restored)
    for archive in archives:
        api.container.archiver.restore(api.container.store, archive.id, "restored")
        again = api.container.archiver.restore(api.container.store, archive.id, "restored")
        assert {o.outcome.value for o in again.outcomes} == {"unchanged"}
    for ref, original in before.items():
        assert detail(api, restored, ref) == original


def test_purge_without_an_archiver_keeps_records_that_need_archiving(
    api: Api, clock: ManualClock
) -> None:
    key = api.key()
    api.client.put(POLICY, json={"retention_days": 90, "archive_before_delete": True}, headers=key)
    seeded = seed_ages(api, key, clock, [400])
    assert purge(api.container.store, clock, None) == 0
    assert ids_of(api, key) == set(seeded)


def test_one_orgs_policy_never_purges_another(api: Api, clock: ManualClock) -> None:
    short, long = api.key("short"), api.key("long")
    api.client.put(POLICY, json={"retention_days": 90}, headers=short)
    api.client.put(POLICY, json={"retention_days": 3650}, headers=long)
    seed_ages(api, short, clock, [100])
    kept = seed_ages(api, long, clock, [100, 1000])
    assert purge(api.container.store, clock, api.container.archiver) == 1
    assert ids_of(api, long) == set(kept)


def test_a_hold_set_during_a_purge_stops_it_before_the_next_batch(
    api: Api, clock: ManualClock
) -> None:
    key = api.key()
    api.client.put(POLICY, json={"retention_days": 90}, headers=key)
    # All in early March, which is not yet wholly past retention: on PostgreSQL a month that
    # is would go in one drop, without batches to stop between.
    seed_ages(api, key, clock, [90.5 + step / 8 for step in range(10)])

    def hold_after_first(org_id: OrgId, deleted: int) -> None:
        api.client.put(POLICY, json={"legal_hold_enabled": True}, headers=key)

    assert (
        purge(
            api.container.store,
            clock,
            api.container.archiver,
            batch_size=3,
            on_batch=hold_after_first,
        )
        == 3
    )
    assert len(ids_of(api, key)) == 7


def test_purge_waits_while_an_export_is_active(api: Api, clock: ManualClock) -> None:
    key = api.key()
    api.client.put(POLICY, json={"retention_days": 90}, headers=key)
    seeded = seed_ages(api, key, clock, [100])

    class Holding:
        def plan_export(self, job_id: str) -> None: ...
        def run_part(self, job_id: str, part_no: int) -> None: ...

    api.container.exports.dispatcher = Holding()
    api.client.post(
        "/v1/knowledge-base/audit/exports",
        json={"start": "2026-01-01T00:00:00Z", "end": "2026-06-02T00:00:00Z"},
        headers=key,
    )
    assert purge(api.container.store, clock, api.container.archiver) == 0
    assert ids_of(api, key) == set(seeded)


def months_stored(api: Api) -> list[str]:
    with api.container.store.reading() as uow:
        return [f"{m.year}-{m.month:02d}" for m in uow.retention.record_months()]


def test_a_month_past_everyones_retention_goes_whole_and_a_shared_one_stays(
    api: Api, clock: ManualClock
) -> None:
    """On PostgreSQL whole monthly partitions are dropped; on SQLite the batches do the same
    work. Either way, what each organization keeps is the same."""
    short, held = api.key("short"), api.key("held")
    api.client.put(POLICY, json={"retention_days": 90}, headers=short)
    api.client.put(POLICY, json={"retention_days": 90, "legal_hold_enabled": True}, headers=held)
    # clock.now is 2026-06-01: January and February 2026 lie wholly past 90 days.
    january = seed_ages(api, short, clock, [140, 145, 150])
    february = seed_ages(api, short, clock, [110])
    held_february = seed_ages(api, held, clock, [111])
    young = seed_ages(api, short, clock, [5])
    postgres = api.container.store.engine.dialect.name == "postgresql"
    if postgres:
        assert {"2026-01", "2026-02", "2026-05"} <= set(months_stored(api))

    gone = purge(api.container.store, clock, api.container.archiver)

    assert gone == len(january) + len(february)
    assert ids_of(api, short) == set(young)
    assert ids_of(api, held) == set(held_february)
    if postgres:
        assert "2026-01" not in months_stored(api), "January was dropped whole"
        assert "2026-02" in months_stored(api), "the held organization keeps February"


@pytest.mark.scaleout  # monthly partitions are PostgreSQL's
def test_partition_changes_give_up_behind_a_long_scan_instead_of_stalling_everyone(
    api: Api, clock: ManualClock
) -> None:
    """Making or dropping a partition locks all of ``records``, and every query after it
    queues behind: in the soak run writes stalled for up to 34 s behind a drop waiting for
    an export's scan. Now the writer gets a 503 to retry, and the purge leaves the month to
    its batches and drops it on a later turn."""
    short, backfilling = api.key("short"), api.key("backfilling")
    api.client.put(POLICY, json={"retention_days": 90}, headers=short)
    january = seed_ages(api, short, clock, [140])  # 2026-01, past retention
    store = api.container.store
    with store.reading() as scan:  # an export's long read holds records as a SELECT does
        scan.connection.exec_driver_sql("LOCK TABLE records IN ACCESS SHARE MODE")

        # A month nobody has written into (2025-09) needs a partition: refused, not queued.
        backfill = record(created_at="2025-09-15T00:00:00Z")
        answer = api.client.post(RECORDS, json={"items": [backfill]}, headers=backfilling)
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"] == "store_unavailable"
        assert answer.headers["retry-after"]

        assert purge(store, clock, api.container.archiver) == len(january)  # by the batches
        assert "2026-01" in months_stored(api), "the drop was put off, not waited for"
        assert "2026-07" not in months_stored(api), "making months ahead was put off too"
    written = api.client.post(RECORDS, json={"items": [backfill]}, headers=backfilling)
    assert written.status_code == 200
    purge(store, clock, api.container.archiver)
    assert "2026-01" not in months_stored(api)
    assert {"2026-06", "2026-07"} <= set(months_stored(api)), "this month and the next, ahead"
    assert ids_of(api, short) == set()
    assert ids_of(api, backfilling) == {backfill["id"]}

"""The write route: idempotency by id and the two-phase write rules."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

from kbaudit.services.importer import import_lines
from kbaudit.services.keys import organization_named
from tests.conftest import WINDOW, Api, ManualClock
from tests.helpers import RECORDS, record

POLICY = "/v1/knowledge-base/retention-policy"


def write(api: Api, headers: dict[str, str], *items: dict[str, Any]) -> Any:
    return api.client.post(RECORDS, json={"items": list(items)}, headers=headers)


def detail(api: Api, headers: dict[str, str], ref: str) -> dict[str, Any]:
    response = api.client.get(f"{RECORDS}/{ref}", headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_new_records_are_created_and_get_a_ref(api: Api) -> None:
    key = api.key()
    first, second = record(), record(ref="writer-ref_1")
    response = write(api, key, first, second)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["created"] == 2
    assert [item["outcome"] for item in body["items"]] == ["created", "created"]
    assert body["items"][1]["ref"] == "writer-ref_1"
    assert detail(api, key, body["items"][0]["ref"])["log"]["id"] == first["id"]
    assert detail(api, key, "writer-ref_1")["log"]["id"] == second["id"]


def test_resending_the_same_record_is_unchanged(api: Api) -> None:
    key = api.key()
    item = record()
    write(api, key, item)
    again = write(api, key, item).json()
    assert again["unchanged"] == 1
    assert again["created"] == 0


def test_intent_is_finalized_by_a_second_write(api: Api) -> None:
    key = api.key()
    intent = record(audit_write_status="intent_recorded", refs=[], result_count=None)
    write(api, key, intent)
    final = {
        **intent,
        "audit_write_status": "finalized",
        "result_count": 1,
        "finalized_at": "2026-05-01T10:00:01Z",
        "refs": [{"rank": 1, "score": 0.5, "citation_ref": "[1]"}],
    }
    assert write(api, key, final).json()["items"][0]["outcome"] == "updated"
    stored = detail(api, key, intent["id"])
    assert stored["log"]["audit_write_status"] == "finalized"
    assert stored["log"]["result_count"] == 1
    assert stored["refs"][0]["citation_ref"] == "[1]"


def test_intent_can_be_marked_finalize_failed_then_finalized(api: Api) -> None:
    key = api.key()
    intent = record(audit_write_status="intent_recorded")
    write(api, key, intent)
    failed = {**intent, "audit_write_status": "finalize_failed"}
    assert write(api, key, failed).json()["updated"] == 1
    assert write(api, key, {**intent, "audit_write_status": "finalized"}).json()["updated"] == 1


def test_finalized_record_cannot_go_back_or_change(api: Api) -> None:
    key = api.key()
    final = record(audit_write_status="finalized", duration_ms=5)
    write(api, key, final)
    for change in ({"audit_write_status": "intent_recorded"}, {"duration_ms": 6}):
        response = write(api, key, {**final, **change})
        assert response.status_code == 409
        assert response.json()["error"] == "record_conflict"
    assert detail(api, key, final["id"])["log"]["duration_ms"] == 5


def test_created_at_and_ref_are_fixed_at_first_write(api: Api) -> None:
    key = api.key()
    intent = record(audit_write_status="intent_recorded", ref="fixed")
    write(api, key, intent)
    moved = write(api, key, {**intent, "created_at": "2026-05-02T10:00:00Z"})
    renamed = write(api, key, {**intent, "ref": "other"})
    assert (moved.status_code, renamed.status_code) == (409, 409)
    omitted = {key_: value for key_, value in intent.items() if key_ != "ref"}
    assert write(api, key, omitted).json()["items"][0]["ref"] == "fixed"


def test_a_conflict_rejects_the_whole_batch(api: Api) -> None:
    key = api.key()
    final = record()
    write(api, key, final)
    fresh = record()
    response = write(api, key, fresh, {**final, "duration_ms": 99})
    assert response.status_code == 409
    missing = api.client.get(f"{RECORDS}/{fresh['id']}", headers=key)
    assert missing.status_code == 404


def test_a_ref_taken_by_another_record_is_a_conflict(api: Api) -> None:
    key = api.key()
    write(api, key, record(ref="shared"))
    response = write(api, key, record(ref="shared"))
    assert response.status_code == 409
    assert "already names another record" in response.json()["message"]


def test_write_needs_the_write_scope(api: Api) -> None:
    reader = api.key(scopes=("kb_audit:read",))
    response = write(api, reader, record())
    assert response.status_code == 403
    assert response.json()["error"] == "insufficient_scope"
    everything = api.client.get(RECORDS, params=WINDOW, headers=reader)
    assert everything.json()["items"] == []


def test_writers_racing_on_the_same_records_each_get_a_clean_answer(api: Api) -> None:
    """Retries often arrive twice at once. Every copy must answer 200, the records exist
    once, and exactly one writer created each of them."""
    key = api.key()
    batch = [record(created_at=f"2026-05-0{1 + i % 3}T10:00:00Z") for i in range(200)]
    with ThreadPoolExecutor(6) as pool:
        responses = list(pool.map(lambda _: write(api, key, *batch), range(6)))
    assert [r.status_code for r in responses] == [200] * 6, [r.text for r in responses]
    assert sum(r.json()["created"] for r in responses) == len(batch)
    listed = api.client.get(RECORDS, params={**WINDOW, "limit": 200}, headers=key).json()
    assert {item["id"] for item in listed["items"]} == {item["id"] for item in batch}


def test_a_ref_that_looks_like_an_id_is_refused(api: Api) -> None:
    key = api.key()
    victim = record()
    write(api, key, victim)
    for ref in (victim["id"], victim["id"].replace("-", ""), "r" + victim["id"].replace("-", "")):
        response = write(api, key, record(ref=ref))
        assert response.status_code == 409, (ref, response.text)
        assert "looks like a record id" in response.json()["message"]
    assert detail(api, key, victim["id"])["log"]["id"] == victim["id"]


def test_a_record_may_name_its_own_derived_ref(api: Api) -> None:
    key = api.key()
    item = record()
    own = "r" + item["id"].replace("-", "")
    assert write(api, key, {**item, "ref": own}).json()["items"][0]["ref"] == own
    assert write(api, key, item).json()["unchanged"] == 1


def test_a_ref_with_a_trailing_newline_is_refused(api: Api) -> None:
    response = write(api, api.key(), record(ref="abc\n"))
    assert response.status_code == 422, response.text


def test_a_rewrite_without_a_ref_keeps_the_chosen_one(api: Api) -> None:
    key = api.key()
    intent = record(ref="chosen-1", audit_write_status="intent_recorded")
    write(api, key, intent)
    final = {key_: value for key_, value in intent.items() if key_ != "ref"}
    response = write(api, key, {**final, "audit_write_status": "finalized"})
    assert response.json()["items"][0] == {
        "id": intent["id"],
        "ref": "chosen-1",
        "outcome": "updated",
    }
    assert detail(api, key, "chosen-1")["log"]["audit_write_status"] == "finalized"


def _at(instant: datetime) -> str:
    return instant.isoformat().replace("+00:00", "Z")


def _months(api: Api) -> list[Any]:
    with api.container.store.reading() as uow:
        return uow.retention.record_months()


def test_a_record_retention_would_purge_at_once_is_refused_unless_held(
    api: Api, clock: ManualClock
) -> None:
    """Accepted, such a record was deleted by the next purge; on PostgreSQL each write made
    its month's partition again for the purge to drop again, and every tenant's reads and
    writes queued behind both (the soak run)."""
    key = api.key()
    api.client.put(POLICY, json={"retention_days": 90}, headers=key)
    months = _months(api)
    fresh, old = record(), record(created_at=_at(clock.now - timedelta(days=91)))
    response = write(api, key, fresh, old)
    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["type"] == "outside_retention"
    assert error["loc"] == ["body", "items", 1, "created_at"]
    assert "older than this organization's retention" in error["msg"]
    assert api.client.get(f"{RECORDS}/{fresh['id']}", headers=key).status_code == 404
    assert _months(api) == months  # no partition was made for it
    api.client.put(POLICY, json={"legal_hold_enabled": True}, headers=key)
    assert write(api, key, fresh, old).json()["created"] == 2


def test_a_record_from_more_than_a_day_ahead_is_refused(api: Api, clock: ManualClock) -> None:
    key = api.key()
    ahead = record(created_at=_at(clock.now + timedelta(hours=25)))
    response = write(api, key, ahead)
    assert response.status_code == 422
    assert "ahead of the server's clock" in response.json()["detail"][0]["msg"]
    skewed = record(created_at=_at(clock.now + timedelta(hours=23)))
    assert write(api, key, skewed).json()["created"] == 1


def test_the_importer_reports_each_refused_line_and_loads_the_rest(
    api: Api, clock: ManualClock
) -> None:
    api.key("acme")
    org_id = organization_named(api.container.store, "acme").id
    lines = [
        json.dumps(record()).encode(),
        json.dumps(record(created_at=_at(clock.now - timedelta(days=400)))).encode(),
    ]
    report = import_lines(api.container.store, api.container.clock, org_id, lines)
    assert report.counts["created"] == 1
    [(line, message)] = report.errors
    assert line == 2
    assert message.startswith("refused: ")
    assert "retention" in message

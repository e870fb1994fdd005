"""Two organizations side by side: no route shows one the other's records."""

from __future__ import annotations

from typing import Any

from tests.conftest import WINDOW, Api
from tests.helpers import RECORDS, record


def seed(api: Api, org: str, count: int) -> tuple[dict[str, str], list[dict[str, Any]]]:
    key = api.key(org)
    items = [record(created_at=f"2026-05-01T10:00:{i:02d}Z") for i in range(count)]
    response = api.client.post(RECORDS, json={"items": items}, headers=key)
    assert response.status_code == 200
    return key, items


def test_query_sees_only_the_callers_records(api: Api) -> None:
    key_a, items_a = seed(api, "org-a", 3)
    key_b, items_b = seed(api, "org-b", 2)
    seen_a = {
        row["id"] for row in api.client.get(RECORDS, params=WINDOW, headers=key_a).json()["items"]
    }
    seen_b = {
        row["id"] for row in api.client.get(RECORDS, params=WINDOW, headers=key_b).json()["items"]
    }
    assert seen_a == {item["id"] for item in items_a}
    assert seen_b == {item["id"] for item in items_b}


def test_another_orgs_record_is_a_404_by_id_and_by_ref(api: Api) -> None:
    key_a, items_a = seed(api, "org-a", 1)
    key_b, _ = seed(api, "org-b", 1)
    own = api.client.get(f"{RECORDS}/{items_a[0]['id']}", headers=key_a).json()
    for ref in (items_a[0]["id"], own["log"]["ref"]):
        response = api.client.get(f"{RECORDS}/{ref}", headers=key_b)
        assert response.status_code == 404
        assert response.json()["error"] == "not_found"


def test_same_record_id_in_two_orgs_stays_two_records(api: Api) -> None:
    key_a, items_a = seed(api, "org-a", 1)
    key_b = api.key("org-b")
    twin = {**items_a[0], "duration_ms": 1234}
    response = api.client.post(RECORDS, json={"items": [twin]}, headers=key_b)
    assert response.json()["items"][0]["outcome"] == "created"
    mine = api.client.get(f"{RECORDS}/{twin['id']}", headers=key_a).json()
    theirs = api.client.get(f"{RECORDS}/{twin['id']}", headers=key_b).json()
    assert mine["log"]["duration_ms"] != 1234
    assert theirs["log"]["duration_ms"] == 1234


def test_a_cursor_cannot_be_used_by_another_org(api: Api) -> None:
    key_a, _ = seed(api, "org-a", 5)
    key_b, _ = seed(api, "org-b", 5)
    page = api.client.get(RECORDS, params={**WINDOW, "limit": 2}, headers=key_a).json()
    assert page["has_more"]
    stolen = api.client.get(
        RECORDS, params={**WINDOW, "limit": 2, "cursor": page["next_cursor"]}, headers=key_b
    )
    assert stolen.status_code == 400
    assert stolen.json()["error"] == "invalid_cursor"

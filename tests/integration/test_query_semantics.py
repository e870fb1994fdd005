"""The query route against a brute-force filter of the same records, with paging."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Api
from tests.helpers import RECORDS

KBS = [str(uuid.UUID(int=i + 1)) for i in range(4)]
ACTORS = [str(uuid.UUID(int=100 + i)) for i in range(3)]
SESSIONS = [str(uuid.UUID(int=200 + i)) for i in range(3)]
STATUSES = ["hit", "miss", "blocked", "error"]
EPOCH = datetime(2026, 5, 1, tzinfo=UTC)
# Few distinct instants, some whole seconds and some not, so that ties and the
# text-ordering trap (``...06Z`` against ``...06.5Z``) both come up.
INSTANTS = [EPOCH + timedelta(seconds=s, microseconds=us) for s in range(4) for us in (0, 500_000)]
orgs = itertools.count()


def text(instant: datetime) -> str:
    return instant.isoformat().replace("+00:00", "Z")


records = st.lists(
    st.fixed_dictionaries(
        {
            "id": st.uuids(version=4).map(str),
            "created_at": st.sampled_from(INSTANTS),
            "retrieval_status": st.sampled_from(STATUSES),
            "actor_user_id": st.sampled_from(ACTORS),
            "session_id": st.sampled_from(SESSIONS),
            "kbs": st.lists(st.sampled_from(KBS), max_size=3, unique=True),
        }
    ),
    max_size=30,
    unique_by=lambda r: r["id"],
)
filters = st.fixed_dictionaries(
    {
        "start": st.sampled_from(INSTANTS[:4]),
        "span": st.sampled_from(
            [timedelta(microseconds=1), timedelta(seconds=1), timedelta(days=1)]
        ),
        "kb_ids": st.lists(st.sampled_from(KBS), max_size=2, unique=True),
        "statuses": st.lists(st.sampled_from(STATUSES), max_size=2, unique=True),
        "actor_user_id": st.none() | st.sampled_from(ACTORS),
        "session_id": st.none() | st.sampled_from(SESSIONS),
    }
)


def expected(rows: list[dict[str, Any]], f: dict[str, Any]) -> list[str]:
    end = f["start"] + f["span"]
    kept = [
        r
        for r in rows
        if f["start"] <= r["created_at"] < end
        and (not f["kb_ids"] or set(f["kb_ids"]) & set(r["kbs"]))
        and (not f["statuses"] or r["retrieval_status"] in f["statuses"])
        and f["actor_user_id"] in (None, r["actor_user_id"])
        and f["session_id"] in (None, r["session_id"])
    ]
    kept.sort(key=lambda r: (r["created_at"], r["id"]), reverse=True)
    return [r["id"] for r in kept]


def params_for(f: dict[str, Any], limit: int) -> dict[str, Any]:
    params: dict[str, Any] = {
        "start": text(f["start"]),
        "end": text(f["start"] + f["span"]),
        "limit": limit,
    }
    for name in ("kb_ids", "statuses", "actor_user_id", "session_id"):
        if f[name]:
            params[name] = f[name]
    return params


def walk(api: Api, key: dict[str, str], params: dict[str, Any]) -> list[str]:
    seen: list[str] = []
    cursor = None
    for _ in range(100):
        page = api.client.get(RECORDS, params={**params, "cursor": cursor}, headers=key)
        assert page.status_code == 200, page.text
        body = page.json()
        assert len(body["items"]) <= params["limit"]
        seen += [item["id"] for item in body["items"]]
        cursor = body["next_cursor"]
        assert body["has_more"] == (cursor is not None)
        if cursor is None:
            return seen
    raise AssertionError("paging did not end")


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=records, f=filters)
def test_pages_concatenate_to_the_brute_force_answer(
    api: Api, rows: list[dict[str, Any]], f: dict[str, Any]
) -> None:
    key = api.key(f"org-{next(orgs)}")
    if rows:
        items = [
            {
                "id": r["id"],
                "created_at": text(r["created_at"]),
                "retrieval_status": r["retrieval_status"],
                "actor_user_id": r["actor_user_id"],
                "session_id": r["session_id"],
                "scopes": [{"knowledge_base_id": kb, "requested": True} for kb in r["kbs"]],
            }
            for r in rows
        ]
        assert api.client.post(RECORDS, json={"items": items}, headers=key).status_code == 200
    want = expected(rows, f)
    for limit in (1, 2, 3, 7, 200):
        assert walk(api, key, params_for(f, limit)) == want


def test_cursor_used_with_other_filters_is_a_mismatch(api: Api) -> None:
    key = api.key()
    items = [
        {"id": str(uuid.uuid4()), "created_at": text(instant), "retrieval_status": "hit"}
        for instant in INSTANTS
    ]
    api.client.post(RECORDS, json={"items": items}, headers=key)
    base = {"start": text(INSTANTS[0]), "end": text(INSTANTS[-1] + timedelta(days=1)), "limit": 2}
    cursor = api.client.get(RECORDS, params=base, headers=key).json()["next_cursor"]
    for change in ({"statuses": ["hit"]}, {"end": text(INSTANTS[-1] + timedelta(days=2))}):
        response = api.client.get(RECORDS, params={**base, **change, "cursor": cursor}, headers=key)
        assert response.status_code == 400
        assert response.json()["error"] == "cursor_mismatch"
    same = api.client.get(RECORDS, params={**base, "limit": 5, "cursor": cursor}, headers=key)
    assert same.status_code == 200

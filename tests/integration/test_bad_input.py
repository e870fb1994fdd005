"""Every malformed request answers a specific 4xx, and nothing stored changes."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.conftest import WINDOW, Api
from tests.helpers import EXPORTS, RECORDS, record


@pytest.fixture
def seeded(api: Api) -> tuple[Api, dict[str, str], list[dict[str, Any]]]:
    key = api.key()
    items = [record(created_at=f"2026-05-01T10:00:0{i}Z") for i in range(3)]
    assert api.client.post(RECORDS, json={"items": items}, headers=key).status_code == 200
    return api, key, items


def stored_rows(api: Api, key: dict[str, str]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = api.client.get(
        RECORDS, params={**WINDOW, "limit": 200}, headers=key
    ).json()["items"]
    return rows


QUERY_CASES = {
    "start without timezone": {"start": "2026-01-01T00:00:00", "end": "2026-02-01T00:00:00Z"},
    "end without timezone": {"start": "2026-01-01T00:00:00Z", "end": "2026-02-01T00:00:00"},
    "start equals end": {"start": "2026-01-01T00:00:00Z", "end": "2026-01-01T00:00:00Z"},
    "start after end": {"start": "2026-02-01T00:00:00Z", "end": "2026-01-01T00:00:00Z"},
    "missing start": {"end": "2026-02-01T00:00:00Z"},
    "garbage time": {"start": "yesterday", "end": "2026-02-01T00:00:00Z"},
    "unknown status": {**WINDOW, "statuses": ["hit", "maybe"]},
    "limit zero": {**WINDOW, "limit": 0},
    "limit too big": {**WINDOW, "limit": 201},
    "limit not a number": {**WINDOW, "limit": "ten"},
    "bad kb uuid": {**WINDOW, "kb_ids": ["not-a-uuid"]},
    "bad actor uuid": {**WINDOW, "actor_user_id": "42"},
    "bad session uuid": {**WINDOW, "session_id": "x"},
    "too many kb ids": {**WINDOW, "kb_ids": [str(uuid.uuid4()) for _ in range(101)]},
    "start before year 1 in UTC": {"start": "0001-01-01T00:00:00+14:00", "end": WINDOW["end"]},
    "end after year 9999 in UTC": {"start": WINDOW["start"], "end": "9999-12-31T23:59:59-01:00"},
    "start before 1970": {"start": "1969-12-31T23:59:59Z", "end": WINDOW["end"]},
    "start as seconds": {"start": "1790000000", "end": "1800000000"},
}


@pytest.mark.parametrize("params", QUERY_CASES.values(), ids=QUERY_CASES.keys())
def test_malformed_query_is_a_422(api: Api, params: dict[str, Any]) -> None:
    response = api.client.get(RECORDS, params=params, headers=api.key())
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"][0] == "query"


def test_unknown_status_lists_the_allowed_ones(api: Api) -> None:
    response = api.client.get(RECORDS, params={**WINDOW, "statuses": "maybe"}, headers=api.key())
    message = response.json()["detail"][0]["msg"]
    assert all(status in message for status in ("hit", "miss", "blocked", "error"))


@pytest.mark.parametrize("cursor", ["garbage", "a.b", "é.é", "x" * 600, "eyJ9.AAAA"])
def test_garbage_cursor_is_a_400(api: Api, cursor: str) -> None:
    response = api.client.get(RECORDS, params={**WINDOW, "cursor": cursor}, headers=api.key())
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_cursor"


def _too_many() -> dict[str, Any]:
    return {"items": [record() for _ in range(1001)]}


def _duplicate_ids() -> dict[str, Any]:
    twin = record()
    return {"items": [twin, {**twin, "duration_ms": 1}]}


WRITE_CASES: dict[str, Any] = {
    "naive created_at": {"items": [record(created_at="2026-05-01T10:00:00")]},
    "missing id": {"items": [{k: v for k, v in record().items() if k != "id"}]},
    "bad id": {"items": [record(id="nope")]},
    "unknown status": {"items": [record(retrieval_status="maybe")]},
    "unknown write status": {"items": [record(audit_write_status="done")]},
    "oversized string": {"items": [record(caller="x" * 129)]},
    "oversized hash": {"items": [record(query_hash="f" * 257)]},
    "negative count": {"items": [record(duration_ms=-1)]},
    "huge count": {"items": [record(duration_ms=2**40)]},
    "unknown field": {"items": [record(query_text="secret question")]},
    "bad ref characters": {"items": [record(ref="../etc/passwd")]},
    "bad scope uuid": {"items": [record(scopes=[{"knowledge_base_id": "kb-1"}])]},
    "wrong type": {"items": [record(reranked="yes")]},
    "empty batch": {"items": []},
    "not a list": {"items": {"id": 1}},
    "too many records": _too_many(),
    "duplicate ids": _duplicate_ids(),
    "nul in string": {"items": [record(caller="a\u0000b")]},
    "too many counts": {
        "items": [record(ineligible_counts_by_reason={str(i): 1 for i in range(65)})]
    },
    "created_at before year 1 in UTC": {"items": [record(created_at="0001-01-01T00:00:00+14:00")]},
    "intent after year 9999 in UTC": {
        "items": [record(intent_recorded_at="9999-12-31T23:59:59-01:00")]
    },
    "created_at in 2200": {"items": [record(created_at="2200-01-01T00:00:00Z")]},
}


@pytest.mark.parametrize("body", WRITE_CASES.values(), ids=WRITE_CASES.keys())
def test_malformed_write_is_a_422_and_changes_nothing(
    seeded: tuple[Api, dict[str, str], list[dict[str, Any]]], body: Any
) -> None:
    api, key, _ = seeded
    before = stored_rows(api, key)
    response = api.client.post(RECORDS, json=body, headers=key)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["msg"]
    assert stored_rows(api, key) == before


@pytest.mark.parametrize(
    "raw", [b"not json", b"{", b"", b"[]", b'{"items": [}', "\ufeff{}".encode()]
)
def test_non_json_write_is_a_422(
    seeded: tuple[Api, dict[str, str], list[dict[str, Any]]], raw: bytes
) -> None:
    api, key, _ = seeded
    before = stored_rows(api, key)
    response = api.client.post(
        RECORDS, content=raw, headers={**key, "content-type": "application/json"}
    )
    assert response.status_code == 422
    assert stored_rows(api, key) == before


def test_oversized_body_is_a_413(seeded: tuple[Api, dict[str, str], list[dict[str, Any]]]) -> None:
    api, key, _ = seeded
    limit = api.container.settings.max_body_bytes
    response = api.client.post(
        RECORDS, content=b" " * (limit + 1), headers={**key, "content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"


@pytest.mark.parametrize("header", [None, "", "kba_x_y", "nonsense", "kba_" + "a" * 300])
def test_missing_or_wrong_key_is_a_401(api: Api, header: str | None) -> None:
    api.key()
    headers = {} if header is None else {"x-api-key": header}
    for response in (
        api.client.get(RECORDS, params=WINDOW, headers=headers),
        api.client.get(f"{RECORDS}/{uuid.uuid4()}", headers=headers),
        api.client.post(RECORDS, json={"items": [record()]}, headers=headers),
    ):
        assert response.status_code == 401
        assert response.json()["error"] == "authentication_required"


def test_a_key_with_a_wrong_secret_is_a_401(api: Api) -> None:
    good = api.key()["x-api-key"]
    forged = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    response = api.client.get(RECORDS, params=WINDOW, headers={"x-api-key": forged})
    assert response.status_code == 401


def test_unknown_route_is_a_404_error_response(api: Api) -> None:
    response = api.client.get("/v1/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


EXPORT_CASES: dict[str, Any] = {
    "misspelt filter": {**WINDOW, "status": ["blocked"]},
    "unknown field": {**WINDOW, "kb_id": str(uuid.uuid4())},
    "window past year 9999": {"start": WINDOW["start"], "end": "9999-12-31T23:59:59-01:00"},
    "start as seconds": {"start": 1790000000, "end": WINDOW["end"]},
}


@pytest.mark.parametrize("body", EXPORT_CASES.values(), ids=EXPORT_CASES.keys())
def test_malformed_export_request_is_a_422_naming_the_field(api: Api, body: Any) -> None:
    key = api.key()
    response = api.client.post(EXPORTS, json=body, headers=key)
    assert response.status_code == 422, response.text
    [problem] = response.json()["detail"]
    assert problem["loc"][0] == "body"
    assert problem["loc"][-1] in body
    assert api.client.get(EXPORTS, headers=key).json()["items"] == []


def test_after_a_bad_instant_the_connection_still_serves(api: Api) -> None:
    key = api.key()
    params = {"start": "0001-01-01T00:00:00+14:00", "end": WINDOW["end"]}
    assert api.client.get(RECORDS, params=params, headers=key).status_code == 422
    assert api.client.get(RECORDS, params=WINDOW, headers=key).status_code == 200


def send_raw(api: Api, method: str, route: str, raw: bytes) -> tuple[Any, dict[str, str]]:
    """``raw`` sent as a JSON body with a good key; the answer, and the headers to read back
    with."""
    headers = {**api.key(), "content-type": "application/json"}
    return api.client.request(method, route, content=raw, headers=headers), headers


RAW_BODIES = {
    "invalid UTF-8 in a write": ("post", RECORDS, b'{"items":[{"caller":"a\xff\xfeb"}]}'),
    "a lone surrogate in a write": ("post", RECORDS, b'{"items":[{"caller":"a\\ud800b"}]}'),
    "a lone surrogate in export statuses": (
        "post",
        EXPORTS,
        b'{"start":"2026-01-01T00:00:00Z","end":"2026-02-01T00:00:00Z","statuses":["\\ud800"]}',
    ),
    "a lone surrogate in a policy": (
        "put",
        "/v1/knowledge-base/retention-policy",
        b'{"retention_days":"\\ud800"}',
    ),
}


@pytest.mark.parametrize(("method", "route", "raw"), RAW_BODIES.values(), ids=RAW_BODIES.keys())
def test_text_json_cannot_carry_is_a_422(api: Api, method: str, route: str, raw: bytes) -> None:
    response, _ = send_raw(api, method, route, raw)
    assert response.status_code == 422, response.text
    assert "truncated" not in response.text


DUPLICATE_KEYS = {
    "a record field twice": (
        "post",
        RECORDS,
        b'{"items":[{"id":"%s","created_at":"2026-05-01T10:00:00Z",'
        b'"retrieval_status":"hit","retrieval_status":"miss"}]}' % str(uuid.uuid4()).encode(),
        "retrieval_status",
    ),
    "items twice": ("post", RECORDS, b'{"items":[],"items":[]}', "items"),
    "an export filter twice": (
        "post",
        EXPORTS,
        b'{"start":"2026-01-01T00:00:00Z","end":"2026-02-01T00:00:00Z",'
        b'"statuses":["hit"],"statuses":["miss"]}',
        "statuses",
    ),
    "a policy field twice": (
        "put",
        "/v1/knowledge-base/retention-policy",
        b'{"retention_days":100,"retention_days":36500}',
        "retention_days",
    ),
}


@pytest.mark.parametrize(
    ("method", "route", "raw", "key"), DUPLICATE_KEYS.values(), ids=DUPLICATE_KEYS.keys()
)
def test_a_key_given_twice_is_a_422_naming_it(
    api: Api, method: str, route: str, raw: bytes, key: str
) -> None:
    response, headers = send_raw(api, method, route, raw)
    assert response.status_code == 422, response.text
    assert f"the key '{key}' appears twice" in response.text
    assert api.client.get(RECORDS, params=WINDOW, headers=headers).json()["items"] == []
    policy = api.client.get("/v1/knowledge-base/retention-policy", headers=headers).json()
    assert policy["retention_days"] == 365


POLICY = "/v1/knowledge-base/retention-policy"
HOOKS = "/v1/knowledge-base/audit/webhooks"
NUMBERS = {"NaN": b"NaN", "Infinity": b"-Infinity", "an overflowing float": b"1e999"}
NUMBER_BODIES = {
    f"{name} in {where}": (method, route, template % number)
    for name, number in NUMBERS.items()
    for where, method, route, template in (
        ("an export", "post", EXPORTS, b'{"start":"2026-01-01T00:00:00Z","end":%s}'),
        ("a policy", "put", POLICY, b'{"retention_days":%s}'),
        ("a webhook", "post", HOOKS, b'{"url":"https://example.com/","events":%s}'),
        ("a write", "post", RECORDS, b'{"items":[{"duration_ms":%s}]}'),
    )
}
NUMBER_BODIES["a 5,000-digit integer in a write"] = (
    "post",
    RECORDS,
    b'{"items":[{"id":"%s","created_at":"2026-05-01T10:00:00Z","retrieval_status":"hit",'
    b'"duration_ms":%s}]}' % (str(uuid.uuid4()).encode(), b"9" * 5000),
)
NUMBER_BODIES["a 5,000-digit integer in a policy"] = (
    "put",
    POLICY,
    b'{"retention_days":%s}' % (b"9" * 5000),
)


@pytest.mark.parametrize(
    ("method", "route", "raw"), NUMBER_BODIES.values(), ids=NUMBER_BODIES.keys()
)
def test_numbers_no_column_holds_are_a_422(api: Api, method: str, route: str, raw: bytes) -> None:
    response, headers = send_raw(api, method, route, raw)
    assert response.status_code == 422, response.text
    assert api.client.get(RECORDS, params=WINDOW, headers=headers).json()["items"] == []
    assert api.client.get(POLICY, headers=headers).json()["retention_days"] == 365


NUL_BODIES = {
    "a legal hold reason": (
        "put",
        POLICY,
        b'{"legal_hold_enabled":true,"legal_hold_reason":"case\\u0000 1"}',
    ),
    "a webhook description": (
        "post",
        HOOKS,
        b'{"url":"https://example.com/","description":"a\\u0000b"}',
    ),
    "an export filter": (
        "post",
        EXPORTS,
        b'{"start":"2026-01-01T00:00:00Z","end":"2026-02-01T00:00:00Z","statuses":["\\\\\\u0000"]}',
    ),
}


@pytest.mark.parametrize(("method", "route", "raw"), NUL_BODIES.values(), ids=NUL_BODIES.keys())
def test_nul_in_any_json_body_is_a_422(api: Api, method: str, route: str, raw: bytes) -> None:
    response, headers = send_raw(api, method, route, raw)
    assert response.status_code == 422, response.text
    assert "NUL" in response.text
    assert api.client.get(POLICY, headers=headers).json()["legal_hold_enabled"] is False


def test_a_backslash_before_u0000_is_text_not_nul(api: Api) -> None:
    key = api.key()
    sent = record(request_id="C:\\u0000")  # JSON: "C:\\\\u0000", a backslash and u0000
    response = api.client.post(RECORDS, json={"items": [sent]}, headers=key)
    assert response.status_code == 200, response.text
    [stored] = stored_rows(api, key)
    assert stored["request_id"] == "C:\\u0000"


@pytest.mark.parametrize(
    "path",
    [
        f"{RECORDS}/a%00b",
        f"{RECORDS}/a%00b/proof",
        f"{RECORDS}?start=2026-01-01T00:00:00Z%00&end=2026-02-01T00:00:00Z",
        "/console/records/a%00b",
        "/console/records?actor_user_id=%00",
    ],
)
def test_nul_in_a_url_is_a_400(api: Api, path: str) -> None:
    response = api.client.get(path, headers=api.key())
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_request"


@pytest.mark.parametrize(
    "url",
    ["https://[::1/hook", "https://example.com:99999/", "https://example.com:0/", "https://h:-1/"],
)
def test_a_webhook_url_that_does_not_parse_is_a_422(api: Api, url: str) -> None:
    key = api.key()
    response = api.client.post(HOOKS, json={"url": url}, headers=key)
    assert response.status_code == 422, response.text
    assert api.client.get(HOOKS, headers=key).json() == []


def test_a_failure_closes_its_connection(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    from fastapi.testclient import TestClient

    from kbaudit.api import retrievals
    from kbaudit.api.app import create_app

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(retrievals, "query_records", broken)
    client = TestClient(create_app(api.container, run_workers=False), raise_server_exceptions=False)
    response = client.get(RECORDS, params=WINDOW, headers=api.key())
    assert response.status_code == 500
    assert response.headers["connection"] == "close"
    assert "a bug" not in response.text


def test_a_client_that_keeps_sending_wrong_keys_is_throttled(api: Api) -> None:
    good = api.key()
    for n in range(20):
        wrong = {"x-api-key": f"kba_guess{n}_nothing"}
        assert api.client.get(RECORDS, params=WINDOW, headers=wrong).status_code == 401
    throttled = api.client.get(RECORDS, params=WINDOW, headers=good)
    assert throttled.status_code == 429
    assert throttled.json()["error"] == "too_many_attempts"
    assert 0 < int(throttled.headers["retry-after"]) <= 60
    signing_in = api.client.post("/console/sign-in", data={"api_key": good["x-api-key"]})
    assert signing_in.status_code == 429
    assert "try again in" in signing_in.text
    metrics = api.client.get("/metrics").text
    assert 'kbaudit_refused_keys_total{outcome="refused"} 20.0' in metrics


def test_a_trailing_slash_is_a_404_not_a_redirect_elsewhere(api: Api) -> None:
    response = api.client.get(
        f"{EXPORTS}/?token=secret",
        headers={**api.key(), "host": "evil.example"},
        follow_redirects=False,
    )
    assert response.status_code == 404
    assert "location" not in response.headers

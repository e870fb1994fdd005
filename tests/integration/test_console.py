"""The console's security and its pages' numbers, through the HTTP stack (the browser tests
are in tests/acceptance/test_console_browser.py)."""

from __future__ import annotations

import base64
import hashlib
import io
import re
from typing import Any

import pytest
import zstandard
from fastapi.testclient import TestClient

from kbaudit.api.app import create_app
from kbaudit.api.console.session import COOKIE, SessionSeal
from kbaudit.crypto.keyring import Keyring
from tests.conftest import Api
from tests.helpers import (
    DEMO_WINDOW,
    EXPORTS,
    RECORDS,
    csrf_of,
    record,
    seed_demo,
    sign_in,
    start_export,
    view_export,
)

POLICY = "/v1/knowledge-base/retention-policy"


def test_the_session_cookie_is_sealed_and_locked_down(api: Api) -> None:
    key = api.key("acme")
    client = TestClient(create_app(api.container, run_workers=False), follow_redirects=False)
    response = client.post("/console/sign-in", data={"api_key": key["x-api-key"]})
    cookie = response.headers["set-cookie"]
    for flag in ("HttpOnly", "SameSite=strict", "Path=/console", "Max-Age=28800"):
        assert flag.lower() in cookie.lower(), cookie
    assert "secure" not in cookie.lower()  # plain http here; see the next test
    value = client.cookies[COOKIE]
    secret = key["x-api-key"].split("_", 2)[2]
    assert secret not in value
    assert secret.encode() not in base64.urlsafe_b64decode(value + "==")


def test_the_cookie_is_secure_behind_https(api: Api) -> None:
    key = api.key("acme")
    client = TestClient(
        create_app(api.container, run_workers=False),
        base_url="https://testserver",
        follow_redirects=False,
    )
    response = client.post("/console/sign-in", data={"api_key": key["x-api-key"]})
    assert "secure" in response.headers["set-cookie"].lower()


def test_a_wrong_key_signs_nobody_in(api: Api) -> None:
    client = TestClient(create_app(api.container, run_workers=False), follow_redirects=False)
    response = client.post("/console/sign-in", data={"api_key": "kba_nope_nothing"})
    assert response.status_code == 401
    assert "not accepted" in response.text
    assert "set-cookie" not in response.headers
    assert client.get("/console").headers["location"] == "/console/sign-in"


def test_a_forged_or_expired_session_is_no_session(api: Api) -> None:
    client = sign_in(api, api.key("acme"))
    forged = client.cookies[COOKIE][:-4] + "AAAA"
    client.cookies.clear()
    client.cookies.set(COOKIE, forged)
    assert client.get("/console/records").status_code == 303
    keyring = Keyring({1: bytes(32)})
    late = SessionSeal(keyring, now=lambda: 1e10)
    sealed = SessionSeal(keyring, now=lambda: 0).seal(SessionSeal(keyring).new("kba_x_y"))
    assert SessionSeal(keyring).open(sealed) is not None
    assert late.open(sealed) is None
    assert SessionSeal(Keyring({1: b"\x01" * 32})).open(sealed) is None


def test_signing_out_ends_the_session(api: Api) -> None:
    client = sign_in(api, api.key("acme"))
    page = client.get("/console/records")
    response = client.post("/console/sign-out", data={"csrf_token": csrf_of(page.text)})
    assert response.status_code == 303
    assert COOKIE not in client.cookies
    assert client.get("/console/records").status_code == 303


def test_pages_carry_a_strict_content_security_policy(api: Api) -> None:
    client = sign_in(api, api.key("acme"))
    for path in ("/console", "/console/records", "/console/exports", "/console/sign-in"):
        policy = client.get(path).headers["content-security-policy"]
        assert "script-src 'self'" in policy
        assert "unsafe-inline" not in policy
        assert "unsafe-eval" not in policy


def test_a_form_without_its_csrf_token_changes_nothing(api: Api) -> None:
    key = api.key("acme")
    client = sign_in(api, key)
    form = {**DEMO_WINDOW, "export_format": "csv"}
    refused = [
        client.post("/console/exports", data=form),
        client.post("/console/exports", data={**form, "csrf_token": "guess"}),
        client.post(
            "/console/exports",
            data={**form, "csrf_token": csrf_of(client.get("/console/exports").text)},
            headers={"origin": "https://evil.example"},
        ),
        client.post("/console/retention", data={"retention_days": "401"}),
    ]
    assert [response.status_code for response in refused] == [403, 403, 403, 403]
    assert api.client.get(EXPORTS, headers=key).json()["items"] == []
    assert api.client.get(POLICY, headers=key).json()["retention_days"] != 401


def test_a_key_sees_and_does_only_what_its_scopes_allow(api: Api) -> None:
    admin = api.key("acme")
    reader = sign_in(api, api.key("acme", scopes=("kb_audit:read",)))
    overview = reader.get("/console").text
    assert 'href="/console/records"' in overview
    assert 'href="/console/retention"' not in overview
    assert 'href="/console/access"' not in overview
    assert "Request export" not in reader.get("/console/exports").text
    assert reader.get("/console/retention").status_code == 403
    assert reader.get("/console/access").status_code == 403
    token = csrf_of(overview)
    changed = reader.post("/console/retention", data={"csrf_token": token, "retention_days": "401"})
    assert changed.status_code == 403
    requested = reader.post(
        "/console/exports", data={**DEMO_WINDOW, "export_format": "csv", "csrf_token": token}
    )
    assert requested.status_code == 403
    assert api.client.get(POLICY, headers=admin).json()["retention_days"] != 401
    assert api.client.get(EXPORTS, headers=admin).json()["items"] == []
    writer = TestClient(create_app(api.container, run_workers=False), follow_redirects=False)
    writer.post(
        "/console/sign-in", data={"api_key": api.key("w", ("kb_audit:write",))["x-api-key"]}
    )
    assert writer.get("/console/records").status_code == 403


def test_another_organizations_export_is_not_found(api: Api) -> None:
    theirs = api.key("globex")
    seed_demo(api, theirs, 20)
    job = start_export(api, theirs)
    mine = sign_in(api, api.key("acme"))
    assert mine.get(f"/console/exports/{job['id']}").status_code == 404
    assert mine.get(f"/console/exports/{job['id']}/files/manifest.json").status_code == 404
    assert mine.get("/console/exports/not-a-uuid").status_code == 404


def test_a_file_goes_zstd_coded_to_a_browser_that_accepts_it(api: Api) -> None:
    key = api.key("acme")
    seed_demo(api, key, 20)
    job = view_export(api, key, start_export(api, key)["id"])
    file = job["files"][0]
    browser = sign_in(api, key)
    url = f"/console/exports/{job['id']}/files/{file['name']}"
    plain = browser.get(url, headers={"accept-encoding": "gzip, deflate"})
    coded = browser.get(url, headers={"accept-encoding": "gzip, deflate, br, zstd"})
    assert "content-encoding" not in plain.headers
    assert hashlib.sha256(plain.content).hexdigest() == file["sha256_plaintext"]
    assert coded.headers["content-encoding"] == "zstd"
    assert (
        zstandard.ZstdDecompressor().stream_reader(io.BytesIO(coded.content)).read()
        == plain.content
    )


def test_html_in_record_fields_is_shown_as_text(api: Api) -> None:
    key = api.key("acme")
    hostile = record(caller="<script>alert(1)</script>", ref="xss-1")
    assert api.client.post(RECORDS, json={"items": [hostile]}, headers=key).status_code == 200
    client = sign_in(api, key)
    window = {"start": "2026-04-01T00:00:00Z", "end": "2026-06-01T00:00:00Z"}
    listed = client.get("/console/records", params=window).text
    assert 'href="/console/records/xss-1"' in listed
    detail = client.get("/console/records/xss-1").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in detail
    assert "<script>alert" not in detail


def test_the_records_page_lists_what_the_api_returns(api: Api) -> None:
    key = api.key("acme")
    seed_demo(api, key, 300)
    client = sign_in(api, key)
    params: dict[str, Any] = {**DEMO_WINDOW, "statuses": ["miss", "blocked"]}
    api_refs = []
    cursor = None
    while True:
        page = api.client.get(
            RECORDS,
            params={**params, "limit": 50, **({"cursor": cursor} if cursor else {})},
            headers=key,
        ).json()
        api_refs += [item["ref"] for item in page["items"]]
        if not page["has_more"]:
            break
        cursor = page["next_cursor"]
    shown = client.get("/console/records", params=params).text
    refs = re.findall(r'href="/console/records/([^"?]+)"', shown)
    more = re.search(r'hx-get="/console/records/rows\?([^"]+)"', shown)
    while more:
        rows = client.get("/console/records/rows?" + more[1].replace("&amp;", "&")).text
        refs += re.findall(r'href="/console/records/([^"?]+)"', rows)
        more = re.search(r'hx-get="/console/records/rows\?([^"]+)"', rows)
    assert refs == api_refs
    assert len(refs) > 50  # the test went through "Load more"


def test_the_legal_hold_needs_a_confirmation_and_a_reason(api: Api) -> None:
    key = api.key("acme")
    client = sign_in(api, key)
    token = csrf_of(client.get("/console/retention").text)
    form = {"csrf_token": token, "retention_days": "400", "legal_hold_enabled": "on"}
    asked = client.post("/console/retention", data=form)
    assert asked.status_code == 200
    assert "Turn the legal hold on?" in asked.text
    no_reason = client.post("/console/retention", data={**form, "confirm": "yes"})
    assert no_reason.status_code == 400
    assert api.client.get(POLICY, headers=key).json()["legal_hold_enabled"] is False
    done = client.post(
        "/console/retention", data={**form, "confirm": "yes", "legal_hold_reason": "Case 7"}
    )
    assert done.status_code == 303
    policy = api.client.get(POLICY, headers=key).json()
    assert (policy["legal_hold_enabled"], policy["legal_hold_reason"]) == (True, "Case 7")
    assert policy["retention_days"] == 400


def test_the_access_log_page_shows_who_read_what(api: Api) -> None:
    key = api.key("acme")
    api.client.get(RECORDS, params=DEMO_WINDOW, headers=key)
    client = sign_in(api, key)
    page = client.get("/console/access").text
    assert "GET /v1/knowledge-base/audit/retrievals" in page
    assert "testclient" in page  # the client's address


@pytest.mark.parametrize("window", ["24h", "7d", "30d"])
def test_the_overview_counts_what_the_stats_route_counts(api: Api, window: str) -> None:
    key = api.key("acme")
    seed_demo(api, key, 200)
    client = sign_in(api, key)
    page = client.get("/console", params={"window": window}).text
    shown = re.search(r"(\d+) retrievals from (\S+) to (\S+),", page)
    assert shown is not None
    stats = api.client.get(
        "/v1/knowledge-base/audit/stats",
        params={"start": shown[2], "end": shown[3]},
        headers=key,
    ).json()
    assert int(shown[1]) == sum(group["count"] for group in stats["totals"])


def test_a_bad_export_request_is_answered_beside_its_form(api: Api) -> None:
    key = api.key("acme")
    client = sign_in(api, key)
    token = csrf_of(client.get("/console/exports").text)
    wrong = [
        (
            {**DEMO_WINDOW, "export_format": "xlsx"},
            "export_format: Input should be &#39;csv&#39;, &#39;ndjson&#39; or &#39;parquet&#39;",
        ),
        ({"start": "2020-01-01T00:00:00Z", "end": "2026-01-01T00:00:00Z"}, "at most 366 days"),
        (
            {"start": "yesterday", "end": DEMO_WINDOW["end"]},
            "start: Value error, must be an RFC 3339 date-time",
        ),
    ]
    for form, message in wrong:
        response = client.post("/console/exports", data={**form, "csrf_token": token})
        assert response.status_code == 422, response.text
        assert message in response.text
        assert 'value="' + form["start"] + '"' in response.text  # the form keeps what was sent
    assert api.client.get(EXPORTS, headers=key).json()["items"] == []


def test_an_oversized_form_is_refused_before_it_is_read(api: Api) -> None:
    client = TestClient(create_app(api.container, run_workers=False), follow_redirects=False)
    huge = client.post("/console/sign-in", data={"api_key": "x" * 70_000})
    assert huge.status_code == 413
    assert "limited to 65536 bytes" in huge.text


def test_older_exports_are_a_link_away(api: Api) -> None:
    key = api.key("acme")
    seed_demo(api, key, 10)
    made = [start_export(api, key, statuses=[status])["id"] for status in ("hit", "miss") * 14]
    client = sign_in(api, key)
    first = client.get("/console/exports").text
    older = re.search(r'href="/console/exports\?cursor=([^"]+)">Older exports', first)
    assert older is not None
    second = client.get("/console/exports?cursor=" + older[1]).text
    shown = [
        re.findall(r'href="/console/exports/([0-9a-f-]{36})"', page) for page in (first, second)
    ]
    # The test's clock stands still: all were made at one instant, so the id orders them.
    assert len(shown[0]) == 25
    assert shown[0] + shown[1] == sorted(made, reverse=True)
    assert "Older exports" not in second
    assert client.get("/console/exports?cursor=forged").status_code == 400

"""Query and detail reads leave an access log entry: who, what, how many, from where."""

from __future__ import annotations

from kbaudit.domain import OrgId
from kbaudit.store.access_log import AccessEntry
from tests.conftest import WINDOW, Api
from tests.helpers import RECORDS, record


def entries(api: Api, org: str) -> list[AccessEntry]:
    api.container.store.flush_access()
    with api.container.store.reading() as uow:
        found = uow.keys.organization_by_name(org)
        assert found is not None
        return list(uow.access_log.entries(OrgId(found.id)))


def test_query_and_detail_are_logged_with_filters_and_counts(api: Api) -> None:
    key = api.key("acme")
    item = record()
    api.client.post(RECORDS, json={"items": [item]}, headers=key)
    api.client.get(RECORDS, params={**WINDOW, "statuses": ["hit"]}, headers=key)
    api.client.get(f"{RECORDS}/{item['id']}", headers=key)
    api.client.get(f"{RECORDS}/missing-ref", headers=key)
    query, found, missing = entries(api, "acme")
    assert query.action == "query"
    assert query.result_count == 1
    assert query.details["filters"]["statuses"] == ["hit"]
    assert query.key_id in key["x-api-key"]
    assert query.client_address == "testclient"
    assert query.at == api.container.clock()
    assert (found.action, found.outcome, found.result_count) == ("detail", "ok", 1)
    assert (missing.outcome, missing.result_count) == ("not_found", 0)


def test_refused_requests_leave_no_entry_for_the_org(api: Api) -> None:
    api.key("acme")
    writer = api.key("acme", scopes=("kb_audit:write",))
    api.client.get(RECORDS, params=WINDOW, headers=writer)
    assert entries(api, "acme") == []

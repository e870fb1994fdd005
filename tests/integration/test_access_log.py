"""Query and detail reads leave an access log entry: who, what, how many, from where."""

from __future__ import annotations

from kbaudit.domain import OrgId
from kbaudit.store.access_log import AccessEntry
from tests.conftest import WINDOW, Api
from tests.helpers import (
    RECORDS,
    data_files,
    download_all,
    record,
    sign_in,
    start_export,
    view_export,
)


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


def test_an_entry_names_the_edge_and_route_a_read_came_in_by(api: Api) -> None:
    """The services name no routes: the API's reads are logged under the API's routes, the
    console's under the console's own."""
    key = api.key("acme")
    item = record()
    api.client.post(RECORDS, json={"items": [item]}, headers=key)
    api.client.get(f"{RECORDS}/{item['id']}", headers=key)
    console = sign_in(api, key)
    assert console.get(f"/console/records/{item['id']}").status_code == 200
    job = view_export(api, key, start_export(api, key)["id"])
    download_all(api, key, job["id"])
    page = console.get(f"/console/exports/{job['id']}").text
    file_name = data_files(job)[0]["name"]
    assert f"/console/exports/{job['id']}/files/{file_name}" in page
    assert console.get(f"/console/exports/{job['id']}/files/{file_name}").status_code == 200
    logged = [
        (entry.action, entry.edge, entry.route)
        for entry in entries(api, "acme")
        if entry.action in ("detail", "export_downloaded")
    ]
    detail_api = "GET /v1/knowledge-base/audit/retrievals/{ref}"
    download_api = "GET /v1/knowledge-base/audit/exports/{export_id}/download/{file_name}"
    assert logged == [
        ("detail", "api", detail_api),
        ("detail", "console", "GET /console/records/{ref}"),
        *[("export_downloaded", "api", download_api)] * len(data_files(job)),
        ("export_downloaded", "console", "GET /console/exports/{export_id}/files/{file_name}"),
    ]

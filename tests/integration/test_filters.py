"""One declaration of the window and filters (``kbaudit.filters``): the query route, the stats
route, an export's body and the console's two forms refuse the same bad input with the same
message, and read good input the same way."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from markupsafe import escape

from kbaudit.domain import INSTANT_RANGE
from kbaudit.filters import MAX_FILTER_VALUES, RecordFilters
from tests.conftest import Api
from tests.helpers import EXPORTS, RECORDS, csrf_of, sign_in

WINDOW = {"start": "2026-01-01T00:00:00Z", "end": "2026-02-01T00:00:00Z"}
TOO_MANY = [str(uuid.uuid4()) for _ in range(MAX_FILTER_VALUES + 1)]
# Each bad input, and the message every edge gives for it.
BAD = {
    "an unknown status": (
        {"statuses": ["hit", "lost"]},
        "Input should be 'hit' or 'miss' or 'blocked' or 'error'",
    ),
    "an end before the start": ({"end": "2025-12-01T00:00:00Z"}, "end must be later than start"),
    "an instant out of range": (
        {"start": "1960-01-01T00:00:00Z"},
        "instants must lie " + INSTANT_RANGE,
    ),
    "too many values": ({"kb_ids": TOO_MANY}, f"at most {MAX_FILTER_VALUES} values"),
    "an id that is not a UUID": ({"actor_user_id": "nobody"}, "Input should be a valid UUID"),
}
Edge = Callable[[Api, dict[str, str], dict[str, Any]], str]


def api_messages(response: Any) -> str:
    assert response.status_code == 422, response.text
    return " | ".join(error["msg"] for error in response.json()["detail"])


def query_route(api: Api, key: dict[str, str], asked: dict[str, Any]) -> str:
    return api_messages(api.client.get(RECORDS, params=asked, headers=key))


def stats_route(api: Api, key: dict[str, str], asked: dict[str, Any]) -> str:
    stats = "/v1/knowledge-base/audit/stats"
    return api_messages(api.client.get(stats, params=asked, headers=key))


def export_body(api: Api, key: dict[str, str], asked: dict[str, Any]) -> str:
    return api_messages(api.client.post(EXPORTS, json=asked, headers=key))


def as_form(asked: dict[str, Any]) -> dict[str, Any]:
    """The console's fields: several ids in one text field."""
    return {name: " ".join(v) if name == "kb_ids" else v for name, v in asked.items()}


def records_form(api: Api, key: dict[str, str], asked: dict[str, Any]) -> str:
    page = sign_in(api, key).get("/console/records", params=as_form(asked))
    assert page.status_code == 422
    return page.text


def export_form(api: Api, key: dict[str, str], asked: dict[str, Any]) -> str:
    client = sign_in(api, key)
    token = csrf_of(client.get("/console/exports").text)
    page = client.post("/console/exports", data={"csrf_token": token, **as_form(asked)})
    assert page.status_code == 422
    return page.text


EDGES: dict[str, Edge] = {
    "query route": query_route,
    "stats route": stats_route,
    "export body": export_body,
    "records form": records_form,
    "export form": export_form,
}


@pytest.mark.parametrize("edge", EDGES)
@pytest.mark.parametrize("bad", BAD)
def test_every_edge_refuses_bad_filters_with_the_same_message(
    api: Api, edge: str, bad: str
) -> None:
    changed, message = BAD[bad]
    answer = EDGES[edge](api, api.key("acme"), {**WINDOW, **changed})
    assert str(escape(message)) in answer if edge.endswith("form") else message in answer


def test_nothing_was_exported_for_a_refused_form(api: Api) -> None:
    key = api.key("acme")
    export_form(api, key, {**WINDOW, "statuses": ["lost"]})
    assert api.client.get(EXPORTS, headers=key).json()["items"] == []


def test_filters_are_a_set_and_the_window_is_utc() -> None:
    kb_a, kb_b = uuid.UUID(int=1), uuid.UUID(int=2)
    filters = RecordFilters.model_validate(
        {
            "start": "2026-01-01T01:00:00+01:00",
            "end": "2026-02-01T00:00:00Z",
            "kb_ids": [str(kb_b), str(kb_a), str(kb_b)],
            "statuses": [],
        }
    )
    assert filters.start.isoformat() == "2026-01-01T00:00:00+00:00"
    assert filters.kb_ids == (kb_a, kb_b)
    assert filters.statuses is None  # no values, no filter
    assert filters.narrowed_by() == ["kb_ids"]
    assert RecordFilters.of(filters.echo(), filters.start, filters.end) == filters


def test_the_fingerprint_keeps_its_form() -> None:
    """Idempotency keys and page cursors of requests made before an upgrade still match."""
    filters = RecordFilters.model_validate(
        {**WINDOW, "statuses": ["miss", "hit"], "session_id": str(uuid.UUID(int=3))}
    )
    assert filters.fingerprint() == (
        "2026-01-01T00:00:00+00:00|2026-02-01T00:00:00+00:00||hit,miss||"
        "00000000-0000-0000-0000-000000000003"
    )

"""A disk that fills up under the embedded default: writes answer 503 (retryable), nothing
is half-written, and writing goes on once there is room again. SQLite's page limit stands
for the full disk: it answers a write past it exactly as a full disk does (SQLITE_FULL)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import event

from tests.conftest import WINDOW, Api
from tests.helpers import RECORDS, record


def fill_the_disk(api: Api) -> Callable[[], None]:
    """New connections may not grow the database past its size now; returns the undo."""
    engine = api.container.store.engine
    with engine.connect() as connection:
        pages = connection.exec_driver_sql("PRAGMA page_count").scalar_one()

    def limit(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute(f"PRAGMA max_page_count = {pages}")

    event.listen(engine, "connect", limit)
    engine.dispose()  # the pooled connections, opened without the limit

    def undo() -> None:
        event.remove(engine, "connect", limit)
        engine.dispose()

    return undo


def test_a_full_disk_is_a_503_and_loses_nothing(make_api: Callable[..., Api]) -> None:
    api = make_api(database_url=None, blob_url=None, master_key=None)  # the embedded default
    key = api.key()
    kept = [record() for _ in range(3)]
    assert api.client.post(RECORDS, json={"items": kept}, headers=key).status_code == 200
    undo = fill_the_disk(api)
    for _ in range(3):
        big = [record(request_id="x" * 100) for _ in range(200)]
        refused = api.client.post(RECORDS, json={"items": big}, headers=key)
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"] == "store_unavailable"
        assert refused.json()["retryable"] is True
    undo()
    stored = api.client.get(RECORDS, params={**WINDOW, "limit": 200}, headers=key).json()
    assert sorted(item["id"] for item in stored["items"]) == sorted(item["id"] for item in kept)
    later = record()
    assert api.client.post(RECORDS, json={"items": [later]}, headers=key).status_code == 200

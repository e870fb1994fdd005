"""The store when PostgreSQL drops a connection: a retryable 503, and the next request works.

Always on the real PostgreSQL (``./dev.sh test`` runs it once, in the scale-out pass): there
is no way to cut an embedded SQLite database's connection from outside.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import URL, Connection, create_engine

from kbaudit.api.app import create_app
from kbaudit.container import build_container
from kbaudit.errors import StoreUnavailable
from tests.backends import scaleout_settings
from tests.conftest import WINDOW, Api, ManualClock, settings_for_tests
from tests.helpers import RECORDS, record

pytestmark = pytest.mark.scaleout


@pytest.fixture
def pg_api(tmp_path: Path, clock: ManualClock) -> Iterator[Api]:
    settings = settings_for_tests(tmp_path / "data", **scaleout_settings())
    container = build_container(settings, clock=clock)
    with TestClient(create_app(container), raise_server_exceptions=False) as client:
        yield Api(client, container)
    container.close()


def terminate(url: URL, pid: int) -> None:
    killer = create_engine(url, isolation_level="AUTOCOMMIT")
    with killer.connect() as connection:
        connection.exec_driver_sql("SELECT pg_terminate_backend(%s)", (pid,))
    killer.dispose()


def cut(connection: Connection, killer_url: URL) -> None:
    """End the server's side of ``connection``, from another connection at ``killer_url``."""
    terminate(killer_url, connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())


def test_a_connection_cut_mid_unit_of_work_is_store_unavailable(pg_api: Api) -> None:
    key = pg_api.key()
    assert pg_api.client.post(RECORDS, json={"items": [record()]}, headers=key).status_code == 200
    store = pg_api.container.store

    def cut_mid_unit_of_work() -> None:
        with store.reading() as uow:
            cut(uow.connection, store.engine.url)
            uow.connection.exec_driver_sql("SELECT 1")

    with pytest.raises(StoreUnavailable) as raised:
        cut_mid_unit_of_work()

    assert raised.value.retryable
    retried = pg_api.client.get(RECORDS, params=WINDOW, headers=key)
    assert retried.status_code == 200
    assert len(retried.json()["items"]) == 1


def test_a_connection_cut_while_the_server_refuses_new_ones_is_store_unavailable(
    pg_api: Api,
) -> None:
    """A server shutting down cuts the connection and refuses a new one: ending the unit of
    work must not reconnect (it did, to read the connection's info, and answered 500)."""
    key = pg_api.key()
    store = pg_api.container.store
    database = store.engine.url.database
    admin = create_engine(store.engine.url.set(database="postgres"), isolation_level="AUTOCOMMIT")

    def allow_connections(allowed: bool) -> None:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS {allowed}')

    def cut_while_refusing() -> None:
        with store.writing() as uow:
            allow_connections(False)
            cut(uow.connection, store.engine.url.set(database="postgres"))
            uow.connection.exec_driver_sql("SELECT 1")

    try:
        with pytest.raises(StoreUnavailable):
            cut_while_refusing()
        refused = pg_api.client.get(RECORDS, params=WINDOW, headers=key)
    finally:
        allow_connections(True)
        admin.dispose()
    assert refused.status_code == 503, refused.text
    assert refused.headers["retry-after"]
    assert pg_api.client.get(RECORDS, params=WINDOW, headers=key).status_code == 200


def test_a_connection_cut_under_a_driver_call_is_store_unavailable(pg_api: Api) -> None:
    """COPY runs on psycopg's own connection: a restart seen there first raised the driver's
    error, and the rollback that followed failed too (500, in the soak run)."""
    key = pg_api.key()
    store = pg_api.container.store

    def cut_under_copy() -> None:
        with store.writing() as uow:
            cut(uow.connection, store.engine.url)
            driver = uow.connection.connection.driver_connection
            assert driver is not None
            with driver.cursor() as cursor, cursor.copy("COPY (SELECT 1) TO STDOUT") as copy:
                list(copy)

    with pytest.raises(StoreUnavailable):
        cut_under_copy()
    assert pg_api.client.get(RECORDS, params=WINDOW, headers=key).status_code == 200

"""Which mode the suite runs in, and the settings that point kbaudit at it.

``KBAUDIT_TEST_MODE=scaleout`` runs every test on a real PostgreSQL and SeaweedFS (S3), and
the worker tests on Redis, as started by ``scripts/services.sh`` (whose ``env`` file names
them). Without it the suite runs on the embedded default. A missing server fails the run: it
never turns into a skip.
"""

from __future__ import annotations

import atexit
import base64
import os
import uuid

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from kbaudit.store.engine import create_store_engine
from kbaudit.store.migrate import migrate

SCALEOUT = os.environ.get("KBAUDIT_TEST_MODE", "embedded") == "scaleout"
TEMPLATE = "kbaudit_template"
# A fixed master key for the test servers: throwaway data on loopback only.
TEST_MASTER_KEY = "1:" + base64.b64encode(b"kbaudit-scaleout-test-master-key").decode()


def _required(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise RuntimeError(
            f"KBAUDIT_TEST_MODE=scaleout needs {name}: start the servers with "
            "scripts/services.sh start DIR and source DIR/env (./dev.sh test does both)"
        )
    return value


class Databases:
    """A fresh PostgreSQL database per test, cloned from one migrated template."""

    def __init__(self) -> None:
        self._admin_url = make_url(_required("KBAUDIT_TEST_PG_ADMIN_URL"))
        # pre_ping: the restart tests stop PostgreSQL under this engine.
        self._admin = create_engine(
            self._admin_url, isolation_level="AUTOCOMMIT", pool_pre_ping=True
        )
        self._made: list[str] = []
        self._template_ready = False

    def url_of(self, name: str) -> str:
        return self._admin_url.set(database=name).render_as_string(hide_password=False)

    def create(self, *, lasting: bool = False) -> str:
        """A migrated database, dropped after the test that made it; ``lasting``: after the
        whole run (for what a module builds once, at import)."""
        if not self._template_ready:
            self._make_template()
        name = f"kbaudit_t_{uuid.uuid4().hex[:16]}"
        with self._admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}" TEMPLATE {TEMPLATE}'))
        if lasting:
            atexit.register(self._drop, name)
        else:
            self._made.append(name)
        return self.url_of(name)

    def _drop(self, name: str) -> None:
        with self._admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    def create_empty(self) -> str:
        """A database with no schema at all, for tests of the migrations themselves."""
        name = f"kbaudit_t_{uuid.uuid4().hex[:16]}"
        with self._admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        self._made.append(name)
        return self.url_of(name)

    def drop_all(self) -> None:
        made, self._made = self._made, []
        with self._admin.connect() as connection:
            for name in made:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    def _make_template(self) -> None:
        with self._admin.connect() as connection:
            connection.execute(text(f"DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)"))
            connection.execute(text(f"CREATE DATABASE {TEMPLATE}"))
        engine = create_store_engine(self.url_of(TEMPLATE))
        try:
            migrate(engine, lock_dir=None)
        finally:
            engine.dispose()
        self._template_ready = True


_databases: Databases | None = None


def databases() -> Databases:
    global _databases
    if _databases is None:
        _databases = Databases()
    return _databases


def scaleout_settings(*, lasting: bool = False) -> dict[str, str]:
    """KBAUDIT_* settings for one test: its own database and its own prefix in the bucket
    (``lasting``: see ``Databases.create``)."""
    return {
        "database_url": databases().create(lasting=lasting),
        "blob_url": f"s3://kbaudit/t-{uuid.uuid4().hex[:16]}",
        "s3_endpoint": _required("KBAUDIT_TEST_S3_ENDPOINT"),
        "master_key": TEST_MASTER_KEY,
    }


def scaleout_env() -> dict[str, str]:
    """``scaleout_settings`` as the environment of a ``kbaudit`` process."""
    return {f"KBAUDIT_{name.upper()}": value for name, value in scaleout_settings().items()}


def redis_url() -> str:
    return _required("KBAUDIT_TEST_REDIS_URL")


def customer_bucket() -> tuple[str, str, str, str]:
    """A customer's own bucket on the test SeaweedFS: (endpoint, bucket, key id, secret), with
    an identity allowed into that bucket only."""
    bucket, key_id, secret = _required("KBAUDIT_TEST_CUSTOMER_S3").split()
    return _required("KBAUDIT_TEST_S3_ENDPOINT"), bucket, key_id, secret

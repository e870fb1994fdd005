"""Column types whose storage differs by engine, so that services never see the difference:
each is SQLite's form (``store/sqlite/types.py``) with PostgreSQL's native type in its place
there (``store/postgres/types.py``)."""

from __future__ import annotations

from sqlalchemy import String

from kbaudit.store.postgres import types as postgres
from kbaudit.store.sqlite import types as sqlite

Instant = sqlite.InstantText().with_variant(postgres.INSTANT, "postgresql")
UuidText = String(36).with_variant(postgres.UUID_TEXT, "postgresql")
# A JSON object (or list: the events of a webhook, the recipients of an export).
JsonObject = sqlite.JsonText().with_variant(postgres.JSON_OBJECT, "postgresql")

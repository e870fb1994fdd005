"""kbaudit's client for writers and readers of knowledge-base retrieval audit records.

from kbaudit_sdk import AuditWriter

with AuditWriter("http://127.0.0.1:8000", api_key) as audit:
    with audit.retrieval(caller="support-bot", actor_user_id=user_id) as retrieval:
        chunks = knowledge_base.search(question)
        retrieval.served(refs=[{"chunk_id": c.id, "rank": n} for n, c in enumerate(chunks)])
"""

from kbaudit_sdk._reader import AuditReader, IntegrityError
from kbaudit_sdk._sending import AuditError, Retry, Stats
from kbaudit_sdk._writer import AsyncAuditWriter, AuditWriter, Retrieval

__all__ = [
    "AsyncAuditWriter",
    "AuditError",
    "AuditReader",
    "AuditWriter",
    "IntegrityError",
    "Retrieval",
    "Retry",
    "Stats",
]

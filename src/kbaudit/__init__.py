"""kbaudit: knowledge-base retrieval audit records, queries and encrypted exports."""

__version__ = "0.1.0"
